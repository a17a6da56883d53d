//! Generates `docker save`-format archives (manifest.json, repositories, config JSON with a
//! chosen `created` time, one small unique layer per image) and loads them with one streamed
//! `docker load`, so thousands of distinct images appear in seconds. Also a runnable busybox
//! image (Debian's static `/bin/busybox`) and container helpers.

use crate::dockerd::Dockerd;
use chrono::{DateTime, TimeZone, Utc};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

static NONCE: AtomicU64 = AtomicU64::new(0);

/// One image to generate.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// `repo:tag` names; empty = a dangling (untagged) image.
    pub repo_tags: Vec<String>,
    /// The image's `Created` time.
    pub created: DateTime<Utc>,
    /// Size of the unique file in the image's own layer.
    pub payload_bytes: usize,
    /// Image labels (`Config.Labels`).
    pub labels: BTreeMap<String, String>,
    /// Index (into the same `load` call's specs, earlier entry) of an image whose layers
    /// this image stacks its own layer on, so the two share a parent layer.
    pub shares_base_with: Option<usize>,
    /// `true` (default): the image gets its own layer with `payload_bytes` of unique data,
    /// so deleting it frees real space. `false` ([`ImageSpec::light`]): it shares one layer
    /// with the other light images of the same `load` call and is made unique by its config
    /// only. Layer registration costs ~150 ms each on overlay2 here, so use light images
    /// for thousands of images.
    pub own_layer: bool,
    /// With `shares_base_with`: the manifest names that image as this one's `Parent`,
    /// as the legacy builder records it (the engine then refuses to delete the parent
    /// while this child exists).
    pub child_of_base: bool,
    /// Empty files added to the image's own layer (one inode each), for inode pressure.
    pub files: usize,
}

impl ImageSpec {
    /// An image tagged `tag` created at `created_unix` seconds, with a 64-byte payload.
    pub fn new(tag: &str, created_unix: i64) -> ImageSpec {
        ImageSpec {
            repo_tags: vec![tag.to_string()],
            created: unix(created_unix),
            payload_bytes: 64,
            labels: BTreeMap::new(),
            shares_base_with: None,
            own_layer: true,
            child_of_base: false,
            files: 0,
        }
    }

    /// An image stacked on the earlier spec `base` with that image as its legacy
    /// `Parent`.
    pub fn child(tag: &str, created_unix: i64, base: usize) -> ImageSpec {
        let mut spec = ImageSpec::new(tag, created_unix);
        if tag.is_empty() {
            spec.repo_tags.clear();
        }
        spec.shares_base_with = Some(base);
        spec.child_of_base = true;
        spec
    }

    /// A fast image: shares one layer with the other light images of the same load call
    /// (distinct image ID via its config). 5,000 of these load in seconds.
    pub fn light(tag: &str, created_unix: i64) -> ImageSpec {
        ImageSpec {
            own_layer: false,
            ..ImageSpec::new(tag, created_unix)
        }
    }

    /// An untagged image created at `created_unix`.
    pub fn dangling(created_unix: i64) -> ImageSpec {
        ImageSpec {
            repo_tags: Vec::new(),
            ..ImageSpec::new("x", created_unix)
        }
    }

    /// Sets the payload size.
    pub fn payload(mut self, bytes: usize) -> ImageSpec {
        self.payload_bytes = bytes;
        self
    }

    /// Adds `count` empty files to the image's own layer.
    pub fn files(mut self, count: usize) -> ImageSpec {
        self.files = count;
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> ImageSpec {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }
}

/// `DateTime<Utc>` from unix seconds (clamped to the epoch when out of range).
pub fn unix(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

fn sha_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// An uncompressed layer tar holding `entries` (path, mode, content or symlink target).
fn layer_tar(entries: &[(String, u32, LayerEntry)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, mode, entry) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(*mode);
        header.set_mtime(1_600_000_000);
        header.set_uid(0);
        header.set_gid(0);
        match entry {
            LayerEntry::File(data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                append(&mut builder, &mut header, path, &data[..]);
            }
            LayerEntry::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                append(&mut builder, &mut header, path, &[][..]);
            }
            LayerEntry::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder
                    .append_link(&mut header, path, target)
                    .unwrap_or_else(|e| panic!("cannot add symlink {path} to a layer: {e}"));
            }
        }
    }
    builder
        .into_inner()
        .unwrap_or_else(|e| panic!("cannot finish a layer tar: {e}"))
}

fn append<W: Write>(b: &mut tar::Builder<W>, h: &mut tar::Header, path: &str, data: &[u8]) {
    b.append_data(h, path, data)
        .unwrap_or_else(|e| panic!("cannot add {path} to a tar: {e}"));
}

enum LayerEntry {
    File(Vec<u8>),
    Dir,
    Symlink(String),
}

/// A generated image before it is written: its layers (diff id hex, tar bytes) and config.
struct Built {
    layers: Vec<(String, Vec<u8>)>,
    config: Vec<u8>,
    repo_tags: Vec<String>,
    /// Index of the built image recorded as `Parent`.
    parent: Option<usize>,
}

fn config_json(
    created: DateTime<Utc>,
    diff_ids: &[String],
    labels: &BTreeMap<String, String>,
    cmd: &[&str],
    nonce: &str,
) -> Vec<u8> {
    let created = created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": cmd,
            "Labels": labels,
        },
        "comment": nonce,
        "rootfs": {
            "type": "layers",
            "diff_ids": diff_ids.iter().map(|d| format!("sha256:{d}")).collect::<Vec<_>>(),
        },
        "history": diff_ids.iter().map(|_| serde_json::json!({"created": created, "created_by": "shipshape-tests"})).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&config).unwrap_or_else(|e| panic!("cannot encode a config: {e}"))
}

fn build_specs(specs: &[ImageSpec]) -> Vec<Built> {
    let run = format!(
        "{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let mut built: Vec<Built> = Vec::with_capacity(specs.len());
    // The one layer light images share; its bytes are written with the first user.
    let shared_nonce = NONCE.fetch_add(1, Ordering::Relaxed);
    let shared = layer_tar(&[(
        format!("shared-{shared_nonce}"),
        0o644,
        LayerEntry::File(format!("shipshape-test-shared {run} {shared_nonce}\n").into_bytes()),
    )]);
    let shared_diff = sha_hex(&shared);
    let mut shared_written = false;
    for (i, spec) in specs.iter().enumerate() {
        let nonce = NONCE.fetch_add(1, Ordering::Relaxed);
        let unique = format!("shipshape-test-image {run} {nonce} {i}");
        if !spec.own_layer {
            let bytes = if shared_written {
                Vec::new()
            } else {
                shared.clone()
            };
            shared_written = true;
            let diff_ids = std::slice::from_ref(&shared_diff);
            let config = config_json(spec.created, diff_ids, &spec.labels, &["sh"], &unique);
            built.push(Built {
                layers: vec![(shared_diff.clone(), bytes)],
                config,
                repo_tags: spec.repo_tags.clone(),
                parent: None,
            });
            continue;
        }
        let mut payload = format!("{unique}\n").into_bytes();
        payload.resize(spec.payload_bytes.max(payload.len()), b'.');
        let mut entries = vec![(format!("payload-{nonce}"), 0o644, LayerEntry::File(payload))];
        entries.extend((0..spec.files).map(|k| {
            (
                format!("f-{nonce}-{k}"),
                0o644,
                LayerEntry::File(Vec::new()),
            )
        }));
        let layer = layer_tar(&entries);
        let mut layers = match spec.shares_base_with {
            Some(base) if base < built.len() => built[base]
                .layers
                .iter()
                .map(|(d, _)| (d.clone(), Vec::new()))
                .collect(),
            Some(base) => panic!("shares_base_with {base} must name an earlier spec than {i}"),
            None => Vec::new(),
        };
        layers.push((sha_hex(&layer), layer));
        let diff_ids: Vec<String> = layers.iter().map(|(d, _)| d.clone()).collect();
        let config = config_json(spec.created, &diff_ids, &spec.labels, &["sh"], &unique);
        built.push(Built {
            layers,
            config,
            repo_tags: spec.repo_tags.clone(),
            parent: spec.shares_base_with.filter(|_| spec.child_of_base),
        });
    }
    built
}

/// Streams `images` as one `docker save` archive into `docker load`; returns image IDs.
fn load_built(d: &Dockerd, images: &[Built]) -> Vec<String> {
    let mut cmd = d.docker();
    cmd.args(["load", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run docker load: {e}"));
    let stdin = child
        .stdin
        .take()
        .unwrap_or_else(|| panic!("docker load has no stdin"));
    let mut ids = Vec::with_capacity(images.len());
    let write_result = (|| -> std::io::Result<()> {
        let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, stdin));
        let mut manifest = Vec::with_capacity(images.len());
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let config_ids: Vec<String> = images.iter().map(|i| sha_hex(&i.config)).collect();
        for image in images {
            for (diff, bytes) in &image.layers {
                // Shared layers are written once, by the image that owns the bytes.
                if !bytes.is_empty() {
                    file(&mut tar, &format!("{diff}/layer.tar"), bytes)?;
                }
            }
            let id = sha_hex(&image.config);
            file(&mut tar, &format!("{id}.json"), &image.config)?;
            for tag in &image.repo_tags {
                if let Some((repo, t)) = tag.rsplit_once(':') {
                    repositories
                        .entry(repo.to_string())
                        .or_default()
                        .insert(t.to_string(), id.clone());
                }
            }
            let mut item = serde_json::json!({
                "Config": format!("{id}.json"),
                "RepoTags": if image.repo_tags.is_empty() { serde_json::Value::Null } else { serde_json::json!(image.repo_tags) },
                "Layers": image.layers.iter().map(|(d, _)| format!("{d}/layer.tar")).collect::<Vec<_>>(),
            });
            if let Some(parent) = image.parent {
                item["Parent"] = serde_json::json!(format!("sha256:{}", config_ids[parent]));
            }
            manifest.push(item);
            ids.push(format!("sha256:{id}"));
        }
        file(&mut tar, "manifest.json", &serde_json::to_vec(&manifest)?)?;
        file(
            &mut tar,
            "repositories",
            &serde_json::to_vec(&repositories)?,
        )?;
        tar.into_inner()?.flush()
    })();
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("docker load did not finish: {e}"));
    assert!(
        out.status.success() && write_result.is_ok(),
        "docker load failed ({:?}, write: {write_result:?}): {}\nDaemon log tail:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        d.log_tail(20)
    );
    ids
}

fn file<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_mtime(1_600_000_000);
    header.set_size(bytes.len() as u64);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, bytes)
}

/// Loads generated images into `d` in one streamed archive; returns their IDs
/// (`sha256:…`) in the order of `specs`. Every image ID is distinct, also across calls.
pub fn load(d: &Dockerd, specs: &[ImageSpec]) -> Vec<String> {
    if specs.is_empty() {
        return Vec::new();
    }
    load_built(d, &build_specs(specs))
}

/// Loads a runnable image tagged `tag`: Debian's static `/bin/busybox` plus `/bin/sh`,
/// `/bin/sleep`, … symlinks, `PATH=/bin`. Returns its ID.
pub fn busybox_image(d: &Dockerd, tag: &str) -> String {
    let busybox = std::fs::read("/bin/busybox").unwrap_or_else(|e| {
        panic!(
            "cannot read /bin/busybox ({e}) — run `bash scripts/test.sh` (installs busybox-static)"
        )
    });
    let mut entries = vec![
        ("bin/".to_string(), 0o755, LayerEntry::Dir),
        ("tmp/".to_string(), 0o1777, LayerEntry::Dir),
        ("bin/busybox".to_string(), 0o755, LayerEntry::File(busybox)),
    ];
    for applet in [
        "sh", "sleep", "true", "false", "echo", "cat", "ls", "touch", "rm", "mkdir", "dd", "id",
    ] {
        entries.push((
            format!("bin/{applet}"),
            0o777,
            LayerEntry::Symlink("busybox".to_string()),
        ));
    }
    let layer = layer_tar(&entries);
    let diff = sha_hex(&layer);
    let config = config_json(
        Utc::now(),
        std::slice::from_ref(&diff),
        &BTreeMap::new(),
        &["sh"],
        "busybox",
    );
    let built = Built {
        layers: vec![(diff, layer)],
        config,
        repo_tags: vec![tag.to_string()],
        parent: None,
    };
    load_built(d, std::slice::from_ref(&built))
        .pop()
        .unwrap_or_default()
}

fn container(d: &Dockerd, verb: &str, image: &str, name: &str, args: &[&str]) -> String {
    let mut argv = vec![verb];
    if verb == "run" {
        argv.push("-d");
    }
    argv.extend(["--network", "none", "--name", name, image]);
    argv.extend(args);
    d.docker_ok(argv).trim().to_string()
}

/// `docker run -d --network none --name <name> <image> <args…>`; returns the container ID.
pub fn run_container(d: &Dockerd, image: &str, name: &str, args: &[&str]) -> String {
    container(d, "run", image, name, args)
}

/// `docker create --network none --name <name> <image> <args…>`; returns the container ID.
pub fn create_container(d: &Dockerd, image: &str, name: &str, args: &[&str]) -> String {
    container(d, "create", image, name, args)
}
