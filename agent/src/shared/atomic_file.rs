//! Files that other programs read (ecs.config, config.json, the last-use state) are
//! replaced atomically: a `tempfile` in the same directory created with the final
//! mode and owned by this process's effective uid/gid, write, fsync, rename over the
//! target, fsync the directory. A failed write leaves the old file untouched and no
//! temp file behind. Two-phase for callers that replace several files as one
//! transaction: [`prepare`] every file, then [`Prepared::commit`] each, keeping a
//! [`Backup`] (a hard link to the old inode) to put back if a later commit fails.
//! Temp files a killed run left behind share a prefix and are removed by
//! [`remove_leftovers`].

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// Atomically replace `path` with `contents`, final mode `mode` (e.g. 0o600).
pub fn atomic_write(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    prepare(path, contents, mode)?.commit()
}

/// `contents` written and fsynced into a temp file beside `target`; nothing is
/// visible at `target` until [`Prepared::commit`]. Dropping it removes the temp file.
#[derive(Debug)]
pub struct Prepared {
    tmp: NamedTempFile,
    target: PathBuf,
}

/// The old content of a target, kept as a hard link (same inode: owner and mode
/// too) under a temp name, or the fact that there was none. Dropping it removes the
/// link; [`Backup::restore`] puts it back.
#[derive(Debug)]
pub struct Backup {
    link: Option<NamedTempFile<()>>,
    target: PathBuf,
}

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `.NAME.shipshape-`: the prefix of every temp file (and backup) for `path`.
fn temp_prefix(path: &Path) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(path.file_name().unwrap_or_else(|| "file".as_ref()));
    prefix.push(".shipshape-");
    prefix
}

const TEMP_SUFFIX: &str = ".tmp";

/// The effective uid and gid of this process: the owner every file we write gets
/// (root:root for the units, which run as root).
pub fn effective_owner() -> (u32, u32) {
    (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    )
}

/// Write `contents` to a new temp file beside `path` with exactly `mode`, owned by
/// [`effective_owner`] (a setgid directory would otherwise hand down its group).
pub fn prepare(path: &Path, contents: &[u8], mode: u32) -> io::Result<Prepared> {
    // Created with `mode` so the content is never readable by more than it will be.
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(path))
        .suffix(TEMP_SUFFIX)
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir_of(path))?;
    // A new file is already ours; only a setgid directory hands down another group.
    // fchown only then: the units' seccomp filter (~@privileged) refuses chown calls
    // with EPERM, even those that would change nothing.
    let (uid, gid) = effective_owner();
    let created = tmp.as_file().metadata()?;
    if created.uid() != uid || created.gid() != gid {
        std::os::unix::fs::fchown(tmp.as_file(), Some(uid), Some(gid))?;
    }
    // The umask may have narrowed the mode at creation; set it exactly.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    Ok(Prepared {
        tmp,
        target: path.to_path_buf(),
    })
}

impl Prepared {
    /// Rename the temp file over the target (a symlink there is replaced, never
    /// followed) and make the rename durable. On error the temp file is removed.
    pub fn commit(self) -> io::Result<()> {
        let dir = dir_of(&self.target).to_path_buf();
        self.tmp.persist(&self.target).map_err(|e| e.error)?;
        // The rename is durable only once the directory entry is on disk.
        File::open(dir)?.sync_all()
    }
}

/// Keep the current `path` (if any) so that it can be put back: a hard link under a
/// temp name in the same directory. Links the entry itself, never a symlink's target.
pub fn backup(path: &Path) -> io::Result<Backup> {
    let exists = match fs::symlink_metadata(path) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    let link = if exists {
        Some(
            tempfile::Builder::new()
                .prefix(&temp_prefix(path))
                .suffix(TEMP_SUFFIX)
                .make_in(dir_of(path), |p| fs::hard_link(path, p))?,
        )
    } else {
        None
    };
    Ok(Backup {
        link,
        target: path.to_path_buf(),
    })
}

impl Backup {
    /// Put the old content back at the target (or remove the target when there was
    /// none), durably.
    pub fn restore(self) -> io::Result<()> {
        let dir = dir_of(&self.target).to_path_buf();
        match self.link {
            Some(link) => link.persist(&self.target).map(drop).map_err(|e| e.error)?,
            None => match fs::remove_file(&self.target) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
        }
        File::open(dir)?.sync_all()
    }
}

/// Remove the temp files (and backups) a killed run left beside `path`: regular
/// files named `.NAME.shipshape-*.tmp`. Returns how many were removed. A missing
/// directory has none.
pub fn remove_leftovers(path: &Path) -> io::Result<usize> {
    let prefix = temp_prefix(path);
    let prefix = prefix.as_encoded_bytes();
    let entries = match fs::read_dir(dir_of(path)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let bytes = name.as_encoded_bytes();
        if !(bytes.starts_with(prefix) && bytes.ends_with(TEMP_SUFFIX.as_bytes())) {
            continue;
        }
        // Never a directory or a link someone named like ours.
        if !entry.file_type()?.is_file() {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// Whether the regular file at `path` (not followed if a link) already has `mode`
/// and is owned by [`effective_owner`].
pub fn has_mode_and_owner(meta: &fs::Metadata, mode: u32) -> bool {
    let (uid, gid) = effective_owner();
    meta.file_type().is_file()
        && meta.permissions().mode() & 0o7777 == mode
        && meta.uid() == uid
        && meta.gid() == gid
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

    #[test]
    fn leftovers_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ecs.config");
        fs::write(&p, "keep").unwrap();
        fs::write(dir.path().join(".ecs.config.shipshape-abc.tmp"), "pw").unwrap();
        fs::write(dir.path().join(".ecs.config.shipshape-def.tmp"), "pw").unwrap();
        fs::write(dir.path().join(".other.shipshape-abc.tmp"), "x").unwrap();
        fs::write(dir.path().join(".ecs.config.shipshape-abc.keep"), "x").unwrap();
        fs::create_dir(dir.path().join(".ecs.config.shipshape-dir.tmp")).unwrap();
        assert_eq!(remove_leftovers(&p).unwrap(), 2);
        assert_eq!(
            names(dir.path()),
            [
                ".ecs.config.shipshape-abc.keep",
                ".ecs.config.shipshape-dir.tmp",
                ".other.shipshape-abc.tmp",
                "ecs.config"
            ]
        );
        assert_eq!(remove_leftovers(&dir.path().join("none/x")).unwrap(), 0);
    }

    #[test]
    fn backup_restores_the_old_inode_or_removes_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ecs.config");
        fs::write(&p, "old").unwrap();
        let b = backup(&p).unwrap();
        atomic_write(&p, b"new", 0o600).unwrap();
        b.restore().unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "old");
        assert_eq!(names(dir.path()), ["ecs.config"]);

        let q = dir.path().join("config.json");
        let b = backup(&q).unwrap();
        atomic_write(&q, b"new", 0o600).unwrap();
        b.restore().unwrap();
        assert!(!q.exists());

        // Dropped (the transaction went through): the link goes, the file stays.
        let b = backup(&p).unwrap();
        drop(b);
        assert_eq!(names(dir.path()), ["ecs.config"]);
    }

    #[test]
    fn prepared_is_invisible_until_committed_and_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ecs.config");
        let prepared = prepare(&p, b"x", 0o600).unwrap();
        assert!(!p.exists());
        drop(prepared);
        assert!(names(dir.path()).is_empty());
        prepare(&p, b"x", 0o600).unwrap().commit().unwrap();
        let meta = fs::symlink_metadata(&p).unwrap();
        assert!(has_mode_and_owner(&meta, 0o600));
    }

    #[test]
    fn commit_replaces_a_symlink_not_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real");
        fs::write(&target, "real").unwrap();
        let link = dir.path().join("ecs.config");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        atomic_write(&link, b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "real");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_file());
    }
}
