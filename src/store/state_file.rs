//! Small state files under `DATA/_state/`, replaced whole: written to a
//! temporary file beside them, fsynced, renamed over the old one, and the
//! directory fsynced, so a crash leaves the old content or the new one,
//! never a torn or empty file.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use super::StoreError;

/// Replaces `path` with `bytes` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// [`write_atomic`], with the writing of the content a parameter: the seam
/// through which tests fail a write halfway.
fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let written = File::create(&tmp).and_then(|mut f| {
        write(&mut f)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

/// The time (µs) kept in `path`, or `now`, written there first when the
/// file does not exist yet. A file that holds anything else is an error
/// naming it: state is never guessed.
pub fn read_or_init_micros(path: &Path, now: i64) -> Result<i64, StoreError> {
    match fs::read_to_string(path) {
        Ok(s) => s.trim().parse::<i64>().map_err(|_| StoreError::Read {
            path: path.to_owned(),
            why: format!(
                "holds {:?}, not a time in µs since 1970 (delete the file to count from this start)",
                crate::reading::truncate(&s, 40)
            ),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            write_atomic(path, now.to_string().as_bytes()).map_err(|source| StoreError::Io {
                path: path.to_owned(),
                source,
            })?;
            Ok(now)
        }
        Err(source) => Err(StoreError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_content_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts_since");
        write_atomic(&path, b"1").unwrap();
        write_atomic(&path, b"1658361600000000").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "1658361600000000");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["alerts_since"], "no temporary left behind");
    }

    /// The in-place `fs::write` this replaced truncated the file first: a
    /// crash (or a full disk) in the middle left it empty or torn.
    #[test]
    fn a_write_failing_halfway_leaves_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts_since");
        write_atomic(&path, b"1658361600000000").unwrap();
        let err = write_atomic_with(&path, |f| {
            f.write_all(b"17")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(fs::read_to_string(&path).unwrap(), "1658361600000000");
        assert!(!dir.path().join(".alerts_since.tmp").exists());
        // A temporary left by a crash is overwritten, never read.
        fs::write(dir.path().join(".alerts_since.tmp"), b"garbage").unwrap();
        write_atomic(&path, b"5").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "5");
    }

    #[test]
    fn the_kept_time_is_read_written_once_and_never_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts_since");
        assert_eq!(read_or_init_micros(&path, 42).unwrap(), 42);
        assert_eq!(
            read_or_init_micros(&path, 99).unwrap(),
            42,
            "first start kept"
        );
        // What an in-place write torn by a crash left: an error naming the
        // file (it was silently taken as "now" before).
        fs::write(&path, b"").unwrap();
        let e = read_or_init_micros(&path, 99).unwrap_err().to_string();
        assert!(
            e.contains("alerts_since") && e.contains("not a time"),
            "{e}"
        );
        fs::write(&path, b"16583616").unwrap();
        assert_eq!(read_or_init_micros(&path, 99).unwrap(), 16583616);
    }
}
