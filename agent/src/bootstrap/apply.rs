//! The file side of bootstrap: read the current bytes before planning (a symlink is
//! refused, never followed), and carry a plan out as one transaction: ecs.config and
//! config.json are both prepared (temp file written and fsynced) before either is
//! renamed, and a failed second rename puts the first back. A file is rewritten when
//! its bytes differ, or when its owner or mode is not ours (root:root 0600 for the
//! units), so a second identical run leaves a correct file (and its mtime) alone.
//! Temp files a killed run left are removed first.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::plan::{FileChange, Plan};
use super::BootstrapError;
use crate::shared::atomic_file::{self, Backup, Prepared};

/// Files holding credentials are readable by their owner only.
pub const MODE: u32 = 0o600;

/// ecs.config's parent directory, when it has to be created (ecs-init reads it).
const ECS_CONFIG_DIR_MODE: u32 = 0o755;
/// config.json's parent (`~/.docker`), when it has to be created: private.
const DOCKER_CONFIG_DIR_MODE: u32 = 0o700;

/// Write what the plan changes, both files or neither (see the module doc).
pub fn apply(plan: &Plan) -> Result<(), BootstrapError> {
    let mut targets = vec![(&plan.ecs_config.file, ECS_CONFIG_DIR_MODE)];
    if let Some(docker) = &plan.docker_config {
        targets.push((&docker.file, DOCKER_CONFIG_DIR_MODE));
    }
    let written = transaction(&targets)?;
    if let Some(docker) = &plan.docker_config {
        let changed = written.contains(&docker.file.path);
        tracing::info!(path = %docker.file.path.display(), changed, "docker config");
    }
    Ok(())
}

fn write_error(path: &Path) -> impl FnOnce(io::Error) -> BootstrapError + '_ {
    move |source| BootstrapError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Replace every file of `targets` that needs it, all or none; returns the paths
/// written (content or owner/mode).
pub fn transaction(targets: &[(&FileChange, u32)]) -> Result<Vec<PathBuf>, BootstrapError> {
    transaction_with(targets, Prepared::commit)
}

/// [`transaction`] with the rename step given, so tests can make a rename fail.
fn transaction_with(
    targets: &[(&FileChange, u32)],
    mut commit: impl FnMut(Prepared) -> io::Result<()>,
) -> Result<Vec<PathBuf>, BootstrapError> {
    for (change, _) in targets {
        let removed =
            atomic_file::remove_leftovers(&change.path).map_err(write_error(&change.path))?;
        if removed > 0 {
            tracing::warn!(path = %change.path.display(), removed, "removed temp files an interrupted run left behind");
        }
    }
    // Phase 1: everything that can fail slowly (disk full, read-only, permissions)
    // happens here, before anything is visible.
    let mut pending: Vec<(PathBuf, Prepared)> = Vec::new();
    for (change, dir_mode) in targets {
        if !needs_write(change).map_err(write_error(&change.path))? {
            continue;
        }
        let path = &change.path;
        create_parent(path, *dir_mode).map_err(write_error(path))?;
        let prepared = atomic_file::prepare(path, &change.new, MODE).map_err(write_error(path))?;
        if !change.changed() {
            tracing::info!(path = %path.display(), "content unchanged; owner or mode corrected");
        }
        pending.push((path.clone(), prepared));
    }
    // Every file but the last renamed may have to be put back: keep its old inode.
    let mut backups = Vec::new();
    for (path, _) in pending.iter().take(pending.len().saturating_sub(1)) {
        backups.push(atomic_file::backup(path).map_err(write_error(path))?);
    }
    let mut backups = backups.into_iter();
    // Phase 2: the renames. A failure puts back what was already renamed.
    let mut done: Vec<(PathBuf, Backup)> = Vec::new();
    let mut written = Vec::new();
    for (path, prepared) in pending {
        if let Err(source) = commit(prepared) {
            return Err(roll_back(path, source, done));
        }
        written.push(path.clone());
        if let Some(backup) = backups.next() {
            done.push((path, backup));
        }
    }
    Ok(written)
}

fn roll_back(failed: PathBuf, source: io::Error, done: Vec<(PathBuf, Backup)>) -> BootstrapError {
    let Some((restored, _)) = done.first() else {
        return BootstrapError::Write {
            path: failed,
            source,
        };
    };
    let restored = restored.clone();
    for (path, backup) in done.into_iter().rev() {
        if let Err(restore_error) = backup.restore() {
            return BootstrapError::RollbackFailed {
                path: failed,
                source,
                other: path,
                restore_error,
            };
        }
    }
    BootstrapError::RolledBack {
        path: failed,
        source,
        restored,
    }
}

/// The content differs, or the file is not a regular file with our owner and
/// [`MODE`] (checked without following a link).
fn needs_write(change: &FileChange) -> io::Result<bool> {
    if change.changed() {
        return Ok(true);
    }
    let meta = fs::symlink_metadata(&change.path)?;
    Ok(!atomic_file::has_mode_and_owner(&meta, MODE))
}

fn create_parent(path: &Path, dir_mode: u32) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(dir_mode)
                .create(parent)?;
        }
    }
    Ok(())
}

/// The current content, or None when the file does not exist. A symbolic link is
/// refused: the files hold credentials, and following a link would write them (or
/// change the mode) wherever it points.
pub fn read_existing(path: &Path) -> Result<Option<Vec<u8>>, BootstrapError> {
    let read_error = |source| BootstrapError::Read {
        path: path.to_path_buf(),
        source,
    };
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(BootstrapError::Symlink {
                path: path.to_path_buf(),
            })
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(read_error(source)),
    }
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(read_error(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, SystemTime};

    /// Replace `path` with `new` unless it already holds exactly that with our owner
    /// and mode; `Ok(true)` when written. One file, one transaction.
    fn write_if_changed(
        path: &Path,
        existing: Option<&[u8]>,
        new: &[u8],
        dir_mode: u32,
    ) -> Result<bool, BootstrapError> {
        let change = FileChange {
            path: path.to_path_buf(),
            existing: existing.map(<[u8]>::to_vec),
            new: new.to_vec(),
        };
        Ok(!transaction(&[(&change, dir_mode)])?.is_empty())
    }

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
        // Rewritten (a new inode with our owner and mode), never chmod-ed in place.
        assert!(write_if_changed(&p, Some(b"A=1\n"), b"A=1\n", 0o755).unwrap());
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_to_string(&p).unwrap(), "A=1\n");
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
        let err = transaction(&[(&change, 0o755)]).unwrap_err();
        assert!(err.to_string().contains("left as it was"), "{err}");
        assert_eq!(fs::read_to_string(&blocker).unwrap(), "x");
    }

    fn change(path: &Path, existing: Option<&str>, new: &str) -> FileChange {
        FileChange {
            path: path.to_path_buf(),
            existing: existing.map(|e| e.as_bytes().to_vec()),
            new: new.as_bytes().to_vec(),
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_failed_second_rename_puts_the_first_file_back() {
        let dir = tempfile::tempdir().unwrap();
        let ecs = dir.path().join("ecs.config");
        let docker = dir.path().join("config.json");
        fs::write(&ecs, "A=old\n").unwrap();
        fs::write(&docker, "{}").unwrap();
        let a = change(&ecs, Some("A=old\n"), "A=new\n");
        let b = change(&docker, Some("{}"), "{\"auths\":{}}");
        let mut calls = 0;
        let err = transaction_with(&[(&a, 0o755), (&b, 0o700)], |p| {
            calls += 1;
            if calls == 2 {
                return Err(io::Error::other("injected rename failure"));
            }
            p.commit()
        })
        .unwrap_err();
        assert!(matches!(err, BootstrapError::RolledBack { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("config.json") && msg.contains("was put back"),
            "{msg}"
        );
        assert_eq!(fs::read_to_string(&ecs).unwrap(), "A=old\n");
        assert_eq!(fs::read_to_string(&docker).unwrap(), "{}");
        assert_eq!(names(dir.path()), ["config.json", "ecs.config"]);
    }

    #[test]
    fn a_failed_second_rename_removes_a_first_file_that_was_new() {
        let dir = tempfile::tempdir().unwrap();
        let ecs = dir.path().join("ecs.config");
        let docker = dir.path().join("config.json");
        let a = change(&ecs, None, "A=new\n");
        let b = change(&docker, None, "{}");
        let mut calls = 0;
        transaction_with(&[(&a, 0o755), (&b, 0o700)], |p| {
            calls += 1;
            if calls == 2 {
                return Err(io::Error::other("injected"));
            }
            p.commit()
        })
        .unwrap_err();
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_second_prepare_renames_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ecs = dir.path().join("ecs.config");
        fs::write(&ecs, "A=old\n").unwrap();
        // config.json's parent is a file: its temp file cannot be created.
        let blocker = dir.path().join("docker");
        fs::write(&blocker, "x").unwrap();
        let a = change(&ecs, Some("A=old\n"), "A=new\n");
        let b = change(&blocker.join("config.json"), None, "{}");
        let err = transaction(&[(&a, 0o755), (&b, 0o700)]).unwrap_err();
        assert!(matches!(err, BootstrapError::Write { .. }), "{err}");
        assert_eq!(fs::read_to_string(&ecs).unwrap(), "A=old\n");
        assert_eq!(names(dir.path()), ["docker", "ecs.config"]);
    }

    #[test]
    fn leftover_temp_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let ecs = dir.path().join("ecs.config");
        fs::write(dir.path().join(".ecs.config.shipshape-x1.tmp"), "pw").unwrap();
        assert!(write_if_changed(&ecs, None, b"A=1\n", 0o755).unwrap());
        assert_eq!(names(dir.path()), ["ecs.config"]);
    }

    #[test]
    fn unchanged_content_with_wrong_owner_is_rewritten_as_ours() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ecs.config");
        fs::write(&p, "A=1\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        let (uid, gid) = atomic_file::effective_owner();
        if uid == 0 {
            std::os::unix::fs::chown(&p, Some(1000), Some(1000)).unwrap();
            assert!(write_if_changed(&p, Some(b"A=1\n"), b"A=1\n", 0o755).unwrap());
            let meta = fs::metadata(&p).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (0, 0));
        } else {
            // Not root: a file we own with the right mode is left alone.
            assert!(!write_if_changed(&p, Some(b"A=1\n"), b"A=1\n", 0o755).unwrap());
            let meta = fs::metadata(&p).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (uid, gid));
        }
        assert_eq!(fs::read_to_string(&p).unwrap(), "A=1\n");
    }

    #[test]
    fn a_symlink_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real");
        fs::write(&target, "A=1\n").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("ecs.config");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = read_existing(&link).unwrap_err();
        assert!(matches!(err, BootstrapError::Symlink { .. }), "{err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }
}
