//! The file side of bootstrap: read the current bytes before planning, and carry a
//! plan out by replacing each file atomically with mode 0600 only when its bytes
//! differ, so a second identical run leaves the file (and its mtime) alone.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use super::plan::{FileChange, Plan};
use super::BootstrapError;
use crate::shared::atomic_file::atomic_write;

/// Files holding credentials are readable by root only.
pub const MODE: u32 = 0o600;

/// ecs.config's parent directory, when it has to be created (ecs-init reads it).
const ECS_CONFIG_DIR_MODE: u32 = 0o755;
/// config.json's parent (`~/.docker`), when it has to be created: private.
const DOCKER_CONFIG_DIR_MODE: u32 = 0o700;

/// Write what the plan changes: ecs.config first, then config.json. Each file is
/// replaced atomically; an unchanged one is left alone (its mode corrected).
pub fn apply(plan: &Plan) -> Result<(), BootstrapError> {
    write(&plan.ecs_config.file, ECS_CONFIG_DIR_MODE)?;
    if let Some(docker) = &plan.docker_config {
        let written = write(&docker.file, DOCKER_CONFIG_DIR_MODE)?;
        tracing::info!(path = %docker.file.path.display(), changed = written, "docker config");
    }
    Ok(())
}

fn write(change: &FileChange, dir_mode: u32) -> Result<bool, BootstrapError> {
    write_if_changed(
        &change.path,
        change.existing.as_deref(),
        &change.new,
        dir_mode,
    )
    .map_err(|source| BootstrapError::Write {
        path: change.path.clone(),
        source,
    })
}

/// The current content, or None when the file does not exist.
pub fn read_existing(path: &Path) -> Result<Option<Vec<u8>>, BootstrapError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(BootstrapError::Read {
            path: path.to_path_buf(),
            source,
        }),
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
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
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

    #[test]
    fn unreadable_path_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        // A directory cannot be read as a file.
        let err = read_existing(dir.path()).unwrap_err();
        assert!(matches!(err, BootstrapError::Read { .. }), "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()));
    }

    #[test]
    fn failed_write_names_the_path_and_keeps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // The parent "directory" is a file: nothing can be created below it.
        let blocker = dir.path().join("etc");
        fs::write(&blocker, "x").unwrap();
        let change = FileChange {
            path: blocker.join("ecs.config"),
            existing: None,
            new: b"A=1\n".to_vec(),
        };
        let err = write(&change, 0o755).unwrap_err();
        assert!(err.to_string().contains("left as it was"), "{err}");
        assert_eq!(fs::read_to_string(&blocker).unwrap(), "x");
    }
}
