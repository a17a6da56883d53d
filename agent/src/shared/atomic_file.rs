//! Files that other programs read (ecs.config, config.json, the last-use state) are
//! replaced atomically: a `tempfile` in the same directory created with the final
//! mode, write, fsync, rename over the target, fsync the directory. A failed write
//! leaves the old file untouched and no temp file behind.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Atomically replace `path` with `contents`, final mode `mode` (e.g. 0o600).
pub fn atomic_write(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let prefix = format!(".{name}.shipshape-");
    // Created with `mode` so the content is never readable by more than it will be.
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    // The umask may have narrowed the mode at creation; set it exactly.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    // On error the returned temp file is dropped, which removes it.
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable only once the directory entry is on disk.
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_with_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ecs.config");
        fs::write(&p, "old").unwrap();
        atomic_write(&p, b"new\n", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new\n");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(names(dir.path()), ["ecs.config"]);
    }

    #[test]
    fn mode_is_exact_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        atomic_write(&p, b"{}\n", 0o644).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }

    #[test]
    fn failure_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir").join("f");
        assert!(atomic_write(&missing, b"x", 0o600).is_err());
    }

    #[test]
    fn failed_rename_leaves_old_content_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory at the target: the rename fails after the temp
        // file was written.
        let target = dir.path().join("ecs.config");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), "old").unwrap();
        assert!(atomic_write(&target, b"new", 0o600).is_err());
        assert_eq!(names(dir.path()), ["ecs.config"]);
        assert_eq!(fs::read_to_string(target.join("keep")).unwrap(), "old");
    }
}
