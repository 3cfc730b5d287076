//! The data directory as the service holds it: its lock, and the MQTT
//! client id it keeps.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{ServiceError, STATE_DIR};

/// Holds the data directory's lock for the life of the service.
pub(crate) struct DataDir {
    pub path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates the directory if needed, checks it is writable, and takes an
    /// exclusive lock so two services cannot write the same data.
    pub fn open(path: &Path) -> Result<DataDir, ServiceError> {
        let err = |action| {
            move |source| ServiceError::DataDir {
                path: path.to_owned(),
                action,
                source,
            }
        };
        fs::create_dir_all(path.join(STATE_DIR)).map_err(err("creating it"))?;
        let probe = path.join(STATE_DIR).join(".write-probe");
        File::create(&probe)
            .and_then(|mut f| f.write_all(b"ok"))
            .map_err(err("writing a probe file"))?;
        let _ = fs::remove_file(&probe);
        let lock_path = path.join(STATE_DIR).join(crate::layout::LOCK_FILE);
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(err("opening its lock file"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                // The holder wrote who it is after taking the lock.
                let holder = fs::read_to_string(&lock_path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "holder unknown".into());
                return Err(ServiceError::Locked {
                    path: path.to_owned(),
                    holder,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(err("locking it")(e)),
        }
        // Name the holder for a second process that finds the lock taken.
        let host = fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown host".into());
        let holder = format!(
            "pid {} on {host}, since {}",
            std::process::id(),
            crate::time::format_micros(crate::time::now_micros())
        );
        lock.set_len(0)
            .and_then(|()| lock.write_all(holder.as_bytes()))
            .map_err(err("naming the lock's holder"))?;
        Ok(DataDir {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// The MQTT client id of this data directory: created once, then reused,
    /// so a restart resumes the same persistent session at the broker.
    pub(crate) fn client_id(&self) -> Result<String, ServiceError> {
        let path = self
            .path
            .join(STATE_DIR)
            .join(crate::layout::CLIENT_ID_FILE);
        let err = |action| {
            let path = path.clone();
            move |source| ServiceError::DataDir {
                path,
                action,
                source,
            }
        };
        match fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err("reading its client id")(e)),
        }
        let canonical = fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let seed = format!(
            "{}|{}|{}",
            canonical.display(),
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        let id = format!(
            "gapless-{}",
            &hex::encode(Sha256::digest(seed.as_bytes()))[..16]
        );
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, &id).map_err(err("writing its client id"))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(err("syncing its client id"))?;
        fs::rename(&tmp, &path).map_err(err("renaming its client id into place"))?;
        Ok(id)
    }
}
