//! Writing ecs.config and config.json: read the current bytes, and replace the file
//! atomically with mode 0600 only when the new bytes differ, so a second identical
//! run leaves the file (and its mtime) alone.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use crate::fsutil::atomic_write;

/// Files holding credentials are readable by root only.
pub const MODE: u32 = 0o600;

/// The current content, or None when the file does not exist.
pub fn read_existing(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replace `path` with `new` unless it already holds exactly that; `Ok(true)` when
/// written. An unchanged file only gets its mode corrected (no rewrite).
pub fn write_if_changed(
    path: &Path,
    existing: Option<&[u8]>,
    new: &[u8],
    dir_mode: u32,
) -> io::Result<bool> {
    if existing == Some(new) {
        let meta = fs::metadata(path)?;
        if meta.permissions().mode() & 0o777 != MODE {
            fs::set_permissions(path, fs::Permissions::from_mode(MODE))?;
        }
        return Ok(false);
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(dir_mode)
                .create(parent)?;
        }
    }
    atomic_write(path, new, MODE)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn unchanged_content_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ecs.config");
        assert!(write_if_changed(&p, None, b"A=1\n", 0o755).unwrap());
        let old = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let existing = read_existing(&p).unwrap();
        assert!(!write_if_changed(&p, existing.as_deref(), b"A=1\n", 0o755).unwrap());
        assert_eq!(fs::metadata(&p).unwrap().modified().unwrap(), old);
    }

    #[test]
    fn unchanged_content_gets_mode_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ecs.config");
        fs::write(&p, "A=1\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!write_if_changed(&p, Some(b"A=1\n"), b"A=1\n", 0o755).unwrap());
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn missing_parent_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".docker").join("config.json");
        assert!(write_if_changed(&p, None, b"{}\n", 0o700).unwrap());
        let meta = fs::metadata(dir.path().join(".docker")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn missing_file_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_existing(&dir.path().join("x")).unwrap(), None);
    }
}
