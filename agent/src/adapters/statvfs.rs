//! The disk adapter: `Statvfs` implements the `Disk` port with statvfs(2), the one
//! measure `gc` and the daemon's disk-pressure check share (used = total - free,
//! bytes and inodes).

use std::path::Path;

use crate::ports::disk::{Disk, DiskError, FsUsage};

/// statvfs of the filesystem holding a path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Statvfs;

impl Disk for Statvfs {
    fn usage(&self, path: &Path) -> Result<FsUsage, DiskError> {
        let st = nix::sys::statvfs::statvfs(path).map_err(|e| DiskError {
            path: path.to_owned(),
            source: std::io::Error::from(e),
        })?;
        let frag = st.fragment_size() as u64;
        let total_bytes = (st.blocks() as u64).saturating_mul(frag);
        let free_bytes = (st.blocks_free() as u64).saturating_mul(frag);
        let total_inodes = st.files() as u64;
        Ok(FsUsage {
            total_bytes,
            used_bytes: total_bytes.saturating_sub(free_bytes),
            total_inodes,
            used_inodes: total_inodes.saturating_sub(st.files_free() as u64),
        })
    }

    /// One directory read per container (two with the local driver), one `stat`
    /// per log file.
    fn container_log_bytes(&self, root_dir: &Path) -> Option<u64> {
        let files = |dir: &Path| -> Vec<std::fs::DirEntry> {
            std::fs::read_dir(dir)
                .map(|d| d.flatten().collect())
                .unwrap_or_default()
        };
        let len = |f: &std::fs::DirEntry| f.metadata().map_or(0, |m| m.len());
        let containers = std::fs::read_dir(root_dir.join("containers")).ok()?;
        let mut total = 0;
        for container in containers.flatten() {
            for f in files(&container.path()) {
                let name = f.file_name();
                let name = name.to_string_lossy();
                if name.contains("-json.log") {
                    total += len(&f);
                } else if name == "local-logs" {
                    total += files(&f.path()).iter().map(len).sum::<u64>();
                }
            }
        }
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_reads_a_real_filesystem() {
        let u = Statvfs.usage(Path::new("/")).unwrap();
        assert!(u.total_bytes > 0);
        assert!(u.used_bytes <= u.total_bytes);
        assert!((0.0..=1.0).contains(&u.bytes_ratio()));
    }

    #[test]
    fn container_logs_of_both_drivers_are_counted_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let c = root.path().join("containers/abc");
        std::fs::create_dir_all(c.join("local-logs")).unwrap();
        std::fs::write(c.join("abc-json.log"), [0u8; 100]).unwrap();
        std::fs::write(c.join("abc-json.log.1"), [0u8; 10]).unwrap();
        std::fs::write(c.join("local-logs/container.log"), [0u8; 1]).unwrap();
        std::fs::write(c.join("config.v2.json"), [0u8; 1000]).unwrap();
        assert_eq!(Statvfs.container_log_bytes(root.path()), Some(111));
        assert_eq!(Statvfs.container_log_bytes(&root.path().join("none")), None);
    }

    #[test]
    fn a_missing_path_is_an_error_naming_it() {
        let e = Statvfs
            .usage(Path::new("/nonexistent/shipshape"))
            .unwrap_err();
        assert_eq!(e.path, Path::new("/nonexistent/shipshape"));
        assert!(e.to_string().contains("/nonexistent/shipshape"), "{e}");
    }
}
