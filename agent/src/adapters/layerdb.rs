//! moby's overlay2 layer store as files, for `Statvfs`'s `layer_store` and
//! `tree_usage` (the `Disk` port). The layout (moby `daemon/internal/layer/filestore.go`,
//! `daemon/graphdriver/overlay2/overlay.go`, `builder-next/adapters/snapshot`):
//!
//! - `image/overlay2/layerdb/sha256/<chain>/` per layer: `cache-id` (its directory
//!   under `overlay2/`), `parent` (chain ID), `diff`, `size`, `tar-split.json.gz`.
//!   A layer being removed is renamed `<chain>-<random>-removing` first: skipped, so
//!   its directory counts as unaccounted until the engine's next start cleans it.
//! - `image/overlay2/layerdb/mounts/<container>/`: `mount-id`, `init-id`, `parent`.
//! - `image/overlay2/imagedb/content/sha256/<id>`: the image config, whose
//!   `rootfs.diff_ids` give the chain IDs (`chain(0) = diff(0)`,
//!   `chain(n) = sha256(chain(n-1) + " " + diff(n))`); `imagedb/metadata/sha256/<id>/`.
//! - `overlay2/<dir>/` with a `link` file naming its `overlay2/l/<link>` symlink.
//! - BuildKit's snapshots are graphdriver directories named by its own keys, kept
//!   in the bolt database `buildkit/snapshots.db` (bucket names, stored as raw bytes):
//!   a directory whose name occurs in that file is BuildKit's.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::ports::disk::{LayerStore, StoredImage, StoredLayer, StoredMount, TreeUsage};

fn read_trimmed(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn entries(dir: &Path) -> Vec<std::fs::DirEntry> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().collect())
        .unwrap_or_default()
}

fn is_hex64(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `sha256:` + hex of the SHA-256 of `text`.
fn sha256_id(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The chain IDs of `diff_ids`, base first.
pub(super) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let id = match chain.last() {
            None => diff.clone(),
            Some(below) => sha256_id(&format!("{below} {diff}")),
        };
        chain.push(id);
    }
    chain
}

/// Read the store under `root` (overlay2 only); `None` when `layerdb` is missing.
pub(super) fn read(root: &Path, with_images: bool) -> Option<LayerStore> {
    let store = root.join("image/overlay2");
    let layerdb = store.join("layerdb");
    let driver = root.join("overlay2");
    let layer_dirs = std::fs::read_dir(layerdb.join("sha256")).ok()?;
    let mut layers = HashMap::new();
    for entry in layer_dirs.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_hex64(&name) {
            continue;
        }
        let dir = entry.path();
        let Some(cache_id) = read_trimmed(&dir.join("cache-id")) else {
            continue;
        };
        let mut paths = vec![driver.join(&cache_id)];
        if let Some(link) = read_trimmed(&driver.join(&cache_id).join("link")) {
            paths.push(driver.join("l").join(link));
        }
        paths.push(dir.clone());
        layers.insert(
            format!("sha256:{name}"),
            StoredLayer {
                cache_id,
                parent: read_trimmed(&dir.join("parent")),
                paths,
            },
        );
    }
    let mounts: Vec<StoredMount> = entries(&layerdb.join("mounts"))
        .into_iter()
        .filter_map(|m| {
            let dir = m.path();
            Some(StoredMount {
                mount_id: read_trimmed(&dir.join("mount-id"))?,
                init_id: read_trimmed(&dir.join("init-id")),
                parent: read_trimmed(&dir.join("parent")),
            })
        })
        .collect();
    let driver_dirs: Vec<(String, PathBuf)> = entries(&driver)
        .into_iter()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| name != "l")
        .collect();
    // The database is searched only for directories no layer or mount names (a
    // byte search per name: few names, and the file is read once).
    let named: HashSet<&str> = layers
        .values()
        .map(|l: &StoredLayer| l.cache_id.as_str())
        .chain(mounts.iter().flat_map(|m: &StoredMount| {
            std::iter::once(m.mount_id.as_str()).chain(m.init_id.as_deref())
        }))
        .collect();
    let buildkit_dirs = match std::fs::read(root.join("buildkit/snapshots.db")) {
        Ok(db) => driver_dirs
            .iter()
            .filter(|(name, _)| !named.contains(name.as_str()) && contains(&db, name.as_bytes()))
            .map(|(name, _)| name.clone())
            .collect(),
        Err(_) => HashSet::new(),
    };
    let images = if with_images {
        read_images(&store.join("imagedb"))
    } else {
        HashMap::new()
    };
    Some(LayerStore {
        layers,
        images,
        mounts,
        driver_dirs,
        buildkit_dirs,
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn read_images(imagedb: &Path) -> HashMap<String, StoredImage> {
    let mut images = HashMap::new();
    for entry in entries(&imagedb.join("content/sha256")) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        let Ok(config) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().map(str::to_owned))
            .collect();
        images.insert(
            format!("sha256:{name}"),
            StoredImage {
                chain: chain_ids(&diff_ids),
                paths: vec![entry.path(), imagedb.join("metadata/sha256").join(&name)],
            },
        );
    }
    images
}

/// Walk `paths` (absent ones count nothing); `None` past `max_entries` entries.
pub(super) fn tree_usage(paths: &[PathBuf], max_entries: u64) -> Option<TreeUsage> {
    let mut usage = TreeUsage::default();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    let mut visited = 0u64;
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        visited += 1;
        if visited > max_entries {
            return None;
        }
        if seen.insert((meta.dev(), meta.ino())) {
            usage.inodes += 1;
            usage.bytes += meta.blocks() * 512;
        }
        if meta.is_dir() {
            stack.extend(entries(&path).into_iter().map(|e| e.path()));
        }
    }
    Some(usage)
}
