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
    fn a_missing_path_is_an_error_naming_it() {
        let e = Statvfs
            .usage(Path::new("/nonexistent/shipshape"))
            .unwrap_err();
        assert_eq!(e.path, Path::new("/nonexistent/shipshape"));
        assert!(e.to_string().contains("/nonexistent/shipshape"), "{e}");
    }
}
