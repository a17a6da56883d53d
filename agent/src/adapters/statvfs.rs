//! The disk adapter: `Statvfs` implements the `Disk` port with statvfs(2), the one
//! measure `gc` and the daemon's disk-pressure check share (used = total - free,
//! bytes and inodes).

use std::path::Path;

use std::path::PathBuf;

use super::layerdb;
use crate::ports::disk::{Disk, DiskError, FsUsage, LayerStore, TreeUsage};

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

    /// A few small files per layer (and per image with `images`), one directory
    /// listing of `overlay2/`; see `layerdb` for the layout.
    fn layer_store(&self, root_dir: &Path, images: bool) -> Option<LayerStore> {
        layerdb::read(root_dir, images)
    }

    fn tree_usage(&self, paths: &[PathBuf], max_entries: u64) -> Option<TreeUsage> {
        layerdb::tree_usage(paths, max_entries)
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

    /// A root laid out as moby's overlay2 store: one image of two layers, a
    /// container, a BuildKit snapshot, a leaked directory.
    fn moby_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let w = |p: &str, text: &str| {
            let p = r.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        let (d0, d1) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        );
        let chain = layerdb::chain_ids(&[d0.clone(), d1.clone()]);
        let hex = |id: &str| id.trim_start_matches("sha256:").to_owned();
        w(
            &format!("image/overlay2/layerdb/sha256/{}/cache-id", hex(&chain[0])),
            "c0",
        );
        w(
            &format!("image/overlay2/layerdb/sha256/{}/cache-id", hex(&chain[1])),
            "c1",
        );
        w(
            &format!("image/overlay2/layerdb/sha256/{}/parent", hex(&chain[1])),
            &chain[0],
        );
        w(
            &format!(
                "image/overlay2/layerdb/sha256/{}-x-removing/cache-id",
                hex(&chain[1])
            ),
            "gone",
        );
        w("image/overlay2/layerdb/mounts/ctr/mount-id", "m1");
        w("image/overlay2/layerdb/mounts/ctr/init-id", "m1-init");
        w("image/overlay2/layerdb/mounts/ctr/parent", &chain[1]);
        let config = serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [d0, d1]}});
        w(
            &format!("image/overlay2/imagedb/content/sha256/{}", "f".repeat(64)),
            &config.to_string(),
        );
        for dir in ["c0", "c1", "m1", "m1-init", "bk1key", "gone", "leaked"] {
            w(&format!("overlay2/{dir}/diff/file"), "x");
        }
        w("overlay2/c0/link", "LINK0");
        std::fs::create_dir_all(r.join("overlay2/l")).unwrap();
        std::os::unix::fs::symlink("../c0/diff", r.join("overlay2/l/LINK0")).unwrap();
        w("buildkit/snapshots.db", "\0\0bk1key\0\0");
        root
    }

    #[test]
    fn the_layer_store_is_read_as_moby_lays_it_out() {
        let root = moby_root();
        let r = root.path();
        let store = Statvfs.layer_store(r, true).unwrap();
        let d0 = format!("sha256:{}", "a".repeat(64));
        let top =
            layerdb::chain_ids(&[d0.clone(), format!("sha256:{}", "b".repeat(64))])[1].clone();
        assert_eq!(store.layers.len(), 2, "the -removing layer is skipped");
        assert_eq!(store.layers[&d0].cache_id, "c0");
        assert_eq!(store.layers[&top].parent.as_deref(), Some(d0.as_str()));
        assert_eq!(
            store.layers[&d0].paths,
            vec![
                r.join("overlay2/c0"),
                r.join("overlay2/l/LINK0"),
                r.join(format!("image/overlay2/layerdb/sha256/{}", "a".repeat(64)))
            ]
        );
        let image = &store.images[&format!("sha256:{}", "f".repeat(64))];
        assert_eq!(image.chain, vec![d0.clone(), top.clone()]);
        assert_eq!(store.mounts.len(), 1);
        assert_eq!(store.mounts[0].init_id.as_deref(), Some("m1-init"));
        let mut dirs: Vec<&str> = store.driver_dirs.iter().map(|(n, _)| n.as_str()).collect();
        dirs.sort_unstable();
        assert_eq!(
            dirs,
            ["bk1key", "c0", "c1", "gone", "leaked", "m1", "m1-init"]
        );
        assert_eq!(store.buildkit_dirs.len(), 1);
        assert!(store.buildkit_dirs.contains("bk1key"));
        assert!(Statvfs.layer_store(r, false).unwrap().images.is_empty());
        assert_eq!(Statvfs.layer_store(&r.join("none"), true), None);
    }

    #[test]
    fn a_tree_walk_counts_entries_once_and_stops_at_its_bound() {
        let root = moby_root();
        let r = root.path();
        // The directory, diff/, diff/file, link; the symlink itself, not its target.
        let paths = [
            r.join("overlay2/c0"),
            r.join("overlay2/l/LINK0"),
            r.join("absent"),
        ];
        let usage = Statvfs.tree_usage(&paths, 100).unwrap();
        assert_eq!(usage.inodes, 5);
        assert!(usage.bytes > 0);
        assert_eq!(Statvfs.tree_usage(&paths, 4), None);
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
