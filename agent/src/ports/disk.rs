//! The disk port: how full a filesystem is (bytes and inodes). `gc` measures
//! Docker's root directory through it, and so does the daemon's disk-pressure check,
//! so both act on the same figure. The adapter is `crate::adapters::statvfs`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::config::value::Watermark;

/// Usage of one filesystem: bytes and inodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FsUsage {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub total_inodes: u64,
    pub used_inodes: u64,
}

impl FsUsage {
    /// Share of bytes in use (0..1).
    pub fn bytes_ratio(&self) -> f64 {
        if self.total_bytes == 0 {
            0.0
        } else {
            self.used_bytes as f64 / self.total_bytes as f64
        }
    }

    pub fn free_bytes(&self) -> u64 {
        self.total_bytes.saturating_sub(self.used_bytes)
    }

    pub fn free_inodes(&self) -> u64 {
        self.total_inodes.saturating_sub(self.used_inodes)
    }

    /// Is usage above `mark`? Percentages apply to bytes and to inodes; a size
    /// mark is about bytes only.
    pub fn above(&self, mark: &Watermark) -> bool {
        mark.exceeded_by(self.used_bytes, self.total_bytes)
            || matches!(mark, Watermark::Percent(_))
                && mark.exceeded_by(self.used_inodes, self.total_inodes)
    }
}

/// A filesystem that could not be measured.
#[derive(Debug, thiserror::Error)]
#[error("cannot measure the filesystem at {} (statvfs: {source})", path.display())]
pub struct DiskError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Measures filesystems. Blocking but quick (one syscall).
pub trait Disk: Send + Sync {
    /// Usage of the filesystem holding `path`.
    fn usage(&self, path: &Path) -> Result<FsUsage, DiskError>;
    /// Bytes of the container log files under Docker's root directory
    /// (`containers/<id>/<id>-json.log*` of the json-file driver,
    /// `containers/<id>/local-logs/*` of the local one): space gc does not free but
    /// a full disk is often made of. `None` when not measured.
    fn container_log_bytes(&self, _root_dir: &Path) -> Option<u64> {
        None
    }
    /// The overlay2 layer store under Docker's root directory, as moby's files say
    /// (`image/overlay2/layerdb`, `overlay2/`, `buildkit/snapshots.db`); with
    /// `images`, every image's layer chain too (`image/overlay2/imagedb`). `None`
    /// when it cannot be read (not overlay2, not on this host, no permission).
    fn layer_store(&self, _root_dir: &Path, _images: bool) -> Option<LayerStore> {
        None
    }
    /// Bytes (allocated blocks) and inodes (one per file, directory or symlink; a hard
    /// link counted once) of everything under `paths`, symlinks not followed. A bounded
    /// walk: `None` when it would visit more than `max_entries` entries, or cannot
    /// read a path.
    fn tree_usage(&self, _paths: &[PathBuf], _max_entries: u64) -> Option<TreeUsage> {
        None
    }
}

/// What a walk of some directories found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeUsage {
    pub bytes: u64,
    pub inodes: u64,
}

/// moby's layer store on disk (overlay2), as facts: which directory belongs to
/// what. What counts as accounted for, or freed by a deletion, is the cores' call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerStore {
    /// Chain ID (`sha256:…`) → the layer (`layerdb/sha256/<chain>/`).
    pub layers: HashMap<String, StoredLayer>,
    /// Image ID → the image, when asked for (`imagedb/content/sha256/<id>`).
    pub images: HashMap<String, StoredImage>,
    /// Containers' read-write layers (`layerdb/mounts/<container>/`).
    pub mounts: Vec<StoredMount>,
    /// The directories under `<root>/overlay2/` (its `l` link directory left out).
    pub driver_dirs: Vec<(String, PathBuf)>,
    /// Those of `driver_dirs` no layer or mount names that BuildKit's snapshot
    /// database names.
    pub buildkit_dirs: HashSet<String>,
}

/// One layer of the layer store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredLayer {
    /// Its directory under `<root>/overlay2/` (`cache-id`).
    pub cache_id: String,
    /// The chain ID of the layer below (`parent`).
    pub parent: Option<String>,
    /// What deleting it removes: its driver directory, its `l/` link, its layerdb
    /// directory.
    pub paths: Vec<PathBuf>,
}

/// One image of the image store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredImage {
    /// Chain IDs of its layers, base first (from `rootfs.diff_ids`).
    pub chain: Vec<String>,
    /// What deleting it removes besides layers: its config and metadata.
    pub paths: Vec<PathBuf>,
}

/// A container's layers (`mount-id`, `init-id`, `parent` chain ID).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredMount {
    pub mount_id: String,
    pub init_id: Option<String>,
    pub parent: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(used: u64, cap: u64, iu: u64, ic: u64) -> FsUsage {
        FsUsage {
            used_bytes: used,
            total_bytes: cap,
            used_inodes: iu,
            total_inodes: ic,
        }
    }

    #[test]
    fn above_counts_bytes_and_inodes_for_percentages() {
        let high = Watermark::Percent(85.0);
        assert!(!usage(80, 100, 10, 100).above(&high));
        assert!(usage(86, 100, 10, 100).above(&high));
        assert!(usage(10, 100, 90, 100).above(&high), "inodes exhausted");
        let bytes = Watermark::Bytes(50);
        assert!(usage(51, 100, 0, 0).above(&bytes));
        assert!(
            !usage(50, 100, 99, 100).above(&bytes),
            "a size mark is about bytes"
        );
    }

    #[test]
    fn bytes_ratio_of_an_empty_filesystem_is_zero() {
        assert_eq!(usage(0, 0, 0, 0).bytes_ratio(), 0.0);
        assert_eq!(usage(1, 4, 0, 0).bytes_ratio(), 0.25);
    }
}
