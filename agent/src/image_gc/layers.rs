//! What moby's layer store (read through the `Disk` port) says about space that the
//! Engine API does not: the inodes a planned deletion frees (the API has no inode
//! figure for an image: `/system/df` and the listing give bytes only), and the
//! driver directories no layer, container or BuildKit snapshot names (leaked
//! layers: space the engine's accounting never shows, that no prune frees).
//! overlay2 only: other drivers keep other layouts.
//!
//! Inodes are estimated by walking what each deletion removes, in plan order: the
//! image's config and metadata and every layer it was the last image to hold (a
//! layer shared with another image, or under a container, stays). Where it falls
//! short: an image missing from the image store (or a store unread) has no estimate,
//! and then the estimate stops there (the dry run treats an inode goal as not
//! reached, as before); files the engine rewrites (`repositories.json`) and the
//! filesystem's own metadata are not counted; a walk is bounded
//! ([`WALK_LIMIT`] entries in all), past it there is no estimate.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::ports::disk::{Disk, LayerStore, StoredLayer};

/// Entries one pass may visit for its estimates, and again for leaked directories:
/// a few seconds of `lstat` at most.
pub const WALK_LIMIT: u64 = 2_000_000;

/// The storage driver whose layout this module knows.
pub const OVERLAY2: &str = "overlay2";

/// For each of `deletions` (image IDs, in execution order): the layers its deletion
/// frees, or `None` when the store does not know the image.
pub fn freed_layers<'a>(
    store: &'a LayerStore,
    deletions: &[&str],
) -> Vec<Option<Vec<&'a StoredLayer>>> {
    // How many images hold each layer; a layer under a container never goes.
    let mut holders: HashMap<&str, usize> = HashMap::new();
    for image in store.images.values() {
        for chain in &image.chain {
            *holders.entry(chain.as_str()).or_default() += 1;
        }
    }
    let mut pinned: HashSet<&str> = HashSet::new();
    for mount in &store.mounts {
        let mut next = mount.parent.as_deref();
        while let Some(chain) = next {
            if !pinned.insert(chain) {
                break;
            }
            next = store.layers.get(chain).and_then(|l| l.parent.as_deref());
        }
    }
    deletions
        .iter()
        .map(|id| {
            let image = store.images.get(*id)?;
            let mut freed = Vec::new();
            for chain in &image.chain {
                let left = holders.entry(chain.as_str()).or_default();
                *left = left.saturating_sub(1);
                if *left == 0 && !pinned.contains(chain.as_str()) {
                    freed.extend(store.layers.get(chain.as_str()));
                }
            }
            Some(freed)
        })
        .collect()
}

/// Image ID → inodes its deletion frees, for `deletions` in execution order, until
/// the first that cannot be estimated (see the module's notes).
pub fn inode_estimates(
    disk: &dyn Disk,
    store: &LayerStore,
    deletions: &[&str],
) -> HashMap<String, u64> {
    let mut estimates = HashMap::new();
    let mut budget = WALK_LIMIT;
    for (id, freed) in deletions.iter().zip(freed_layers(store, deletions)) {
        let (Some(freed), Some(image)) = (freed, store.images.get(*id)) else {
            break;
        };
        let paths: Vec<PathBuf> = image
            .paths
            .iter()
            .chain(freed.iter().flat_map(|l| &l.paths))
            .cloned()
            .collect();
        let Some(usage) = disk.tree_usage(&paths, budget) else {
            break;
        };
        budget = budget.saturating_sub(usage.inodes);
        estimates.insert((*id).to_owned(), usage.inodes);
    }
    estimates
}

/// The driver directories nothing accounts for: not a layer's `cache-id`, not a
/// container's `mount-id` or `init-id`, not a BuildKit snapshot.
pub fn unaccounted_dirs(store: &LayerStore) -> Vec<&Path> {
    let named: HashSet<&str> = store
        .layers
        .values()
        .map(|l| l.cache_id.as_str())
        .chain(
            store
                .mounts
                .iter()
                .flat_map(|m| std::iter::once(m.mount_id.as_str()).chain(m.init_id.as_deref())),
        )
        .collect();
    store
        .driver_dirs
        .iter()
        .filter(|(name, _)| !named.contains(name.as_str()) && !store.buildkit_dirs.contains(name))
        .map(|(_, path)| path.as_path())
        .collect()
}

/// Bytes under Docker's root directory the engine does not account for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unaccounted {
    /// `dirs` driver directories nothing names, holding `bytes`.
    Measured { bytes: u64, dirs: usize },
    /// Another storage driver (named): its layout is not read.
    OtherDriver(String),
    /// The layer store cannot be read (a remote engine, no permission).
    Unreadable,
    /// The leaked directories hold more than [`WALK_LIMIT`] entries.
    TooLarge,
}

impl Unaccounted {
    pub fn bytes(&self) -> Option<u64> {
        match self {
            Self::Measured { bytes, .. } => Some(*bytes),
            _ => None,
        }
    }
}

/// Measure the leaked directories of `store` (read from an overlay2 root).
pub fn unaccounted(
    disk: &dyn Disk,
    store: Option<&LayerStore>,
    driver: Option<&str>,
) -> Unaccounted {
    if let Some(driver) = driver.filter(|d| *d != OVERLAY2) {
        return Unaccounted::OtherDriver(driver.to_owned());
    }
    let Some(store) = store else {
        return Unaccounted::Unreadable;
    };
    let dirs: Vec<PathBuf> = unaccounted_dirs(store)
        .into_iter()
        .map(Path::to_path_buf)
        .collect();
    match disk.tree_usage(&dirs, WALK_LIMIT) {
        Some(usage) => Unaccounted::Measured {
            bytes: usage.bytes,
            dirs: dirs.len(),
        },
        None => Unaccounted::TooLarge,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::disk::{DiskError, FsUsage, StoredImage, StoredMount, TreeUsage};

    /// Counts one inode per path and remembers what it was asked to walk.
    #[derive(Default)]
    struct CountingDisk {
        walked: std::sync::Mutex<Vec<PathBuf>>,
    }

    impl Disk for CountingDisk {
        fn usage(&self, path: &Path) -> Result<FsUsage, DiskError> {
            Err(DiskError {
                path: path.to_owned(),
                source: std::io::Error::other("not measured"),
            })
        }
        fn tree_usage(&self, paths: &[PathBuf], max_entries: u64) -> Option<TreeUsage> {
            self.walked.lock().unwrap().extend(paths.iter().cloned());
            let n = paths.len() as u64;
            (n <= max_entries).then_some(TreeUsage {
                bytes: n * 4096,
                inodes: n,
            })
        }
    }

    fn layer(cache: &str, parent: Option<&str>) -> StoredLayer {
        StoredLayer {
            cache_id: cache.to_owned(),
            parent: parent.map(str::to_owned),
            paths: vec![PathBuf::from(format!("/d/overlay2/{cache}"))],
        }
    }

    /// base ← a (image A), base ← b (image B), base ← c (image C, under a container).
    fn store() -> LayerStore {
        let layers = [
            ("base", layer("cb", None)),
            ("a", layer("ca", Some("base"))),
            ("b", layer("cb2", Some("base"))),
            ("c", layer("cc", Some("base"))),
        ];
        let image = |top: &str| StoredImage {
            chain: vec!["base".to_owned(), top.to_owned()],
            paths: vec![PathBuf::from(format!("/d/image/{top}"))],
        };
        LayerStore {
            layers: layers.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            images: [("A", image("a")), ("B", image("b")), ("C", image("c"))]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            mounts: vec![StoredMount {
                mount_id: "m1".to_owned(),
                init_id: Some("m1-init".to_owned()),
                parent: Some("c".to_owned()),
            }],
            driver_dirs: ["cb", "ca", "cb2", "cc", "m1", "m1-init", "bk", "leak"]
                .into_iter()
                .map(|n| (n.to_owned(), PathBuf::from(format!("/d/overlay2/{n}"))))
                .collect(),
            buildkit_dirs: HashSet::from(["bk".to_owned()]),
        }
    }

    fn caches(freed: &Option<Vec<&StoredLayer>>) -> Vec<String> {
        freed
            .as_ref()
            .map(|f| f.iter().map(|l| l.cache_id.clone()).collect())
            .unwrap_or_else(|| vec!["unknown".to_owned()])
    }

    #[test]
    fn a_shared_layer_goes_with_its_last_image_and_never_from_under_a_container() {
        let s = store();
        let freed = freed_layers(&s, &["A", "B", "X"]);
        assert_eq!(caches(&freed[0]), ["ca"], "base is still B's and C's");
        assert_eq!(caches(&freed[1]), ["cb2"], "base is still C's");
        assert_eq!(caches(&freed[2]), ["unknown"]);
        let mut only_c = s.clone();
        only_c.mounts.clear();
        let freed = freed_layers(&only_c, &["A", "B", "C"]);
        assert_eq!(
            caches(&freed[2]),
            ["cb", "cc"],
            "the last holder frees the base"
        );
    }

    #[test]
    fn inode_estimates_walk_what_each_deletion_frees_and_stop_at_the_first_unknown() {
        let s = store();
        let disk = CountingDisk::default();
        let est = inode_estimates(&disk, &s, &["A", "X", "B"]);
        assert_eq!(
            est,
            HashMap::from([("A".to_owned(), 2)]),
            "image file + its own layer"
        );
        assert_eq!(
            *disk.walked.lock().unwrap(),
            [PathBuf::from("/d/image/a"), PathBuf::from("/d/overlay2/ca")]
        );
    }

    #[test]
    fn leaked_dirs_are_those_no_layer_mount_or_buildkit_snapshot_names() {
        let s = store();
        assert_eq!(unaccounted_dirs(&s), [Path::new("/d/overlay2/leak")]);
        let disk = CountingDisk::default();
        assert_eq!(
            unaccounted(&disk, Some(&s), Some("overlay2")),
            Unaccounted::Measured {
                bytes: 4096,
                dirs: 1
            }
        );
        assert_eq!(
            unaccounted(&disk, Some(&s), Some("vfs")),
            Unaccounted::OtherDriver("vfs".to_owned())
        );
        assert_eq!(
            unaccounted(&disk, None, Some("overlay2")),
            Unaccounted::Unreadable
        );
        let mut clean = s.clone();
        clean.driver_dirs.retain(|(n, _)| n != "leak");
        assert_eq!(
            unaccounted(&disk, Some(&clean), None),
            Unaccounted::Measured { bytes: 0, dirs: 0 }
        );
    }
}
