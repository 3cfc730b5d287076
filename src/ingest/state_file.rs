//! Small state files under `DATA/_state/`, replaced whole through
//! [`crate::layout::write_atomic`]: a crash leaves the old content or the
//! new one, never a torn or empty file.

use std::fs;
use std::io;
use std::path::Path;

use super::IngestError;

/// The time (µs) kept in `path`, or `now`, written there first when the
/// file does not exist yet. A file that holds anything else is an error
/// naming it: state is never guessed.
pub fn read_or_init_micros(path: &Path, now: i64) -> Result<i64, IngestError> {
    match fs::read_to_string(path) {
        Ok(s) => s.trim().parse::<i64>().map_err(|_| IngestError::State {
            path: path.to_owned(),
            why: format!(
                "holds {:?}, not a time in µs since 1970 (delete the file to count from this start)",
                crate::reading::truncate(&s, 40)
            ),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            crate::layout::write_atomic(path, now.to_string().as_bytes())?;
            Ok(now)
        }
        Err(source) => Err(IngestError::Io {
            action: "reading",
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
