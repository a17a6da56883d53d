//! The config file, stage one: raw serde structs mirroring `shipshape.toml`.
//!
//! Unknown keys are errors naming the key and line. Stage two (typed, validated
//! settings with flags merged over the file) lives next to each command:
//! `bootstrap::settings`, `image_gc::settings`, `ecr_prune::settings`, `daemon::settings`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::cli::{AuthType, DEFAULT_CONFIG_PATH};

/// Errors of loading or validating configuration. All map to exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value that parsed but is not acceptable; `key` is `section.key` or `--flag`.
    #[error("invalid {key}: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The whole file. Every section is optional.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub bootstrap: RawBootstrap,
    #[serde(default)]
    pub gc: RawGc,
    #[serde(default)]
    pub ecr: RawEcr,
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default)]
    pub metrics: RawMetrics,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBootstrap {
    pub ecs_config: Option<PathBuf>,
    pub cluster: Option<String>,
    /// Extra ecs.config keys, in file order.
    #[serde(default)]
    pub set: OrderedMap,
    /// Registry → secret id, in file order.
    #[serde(default)]
    pub registry_secret: OrderedMap,
    #[serde(default)]
    pub auth_secret: Vec<String>,
    #[serde(default)]
    pub from_s3: Vec<String>,
    pub auth_type: Option<AuthType>,
    pub docker_config: Option<PathBuf>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawGc {
    pub min_age: Option<String>,
    pub keep_per_repo: Option<u32>,
    #[serde(default)]
    pub exclude: Vec<String>,
    pub exclude_file: Option<PathBuf>,
    pub high_water: Option<String>,
    pub low_water: Option<String>,
    pub containers: Option<bool>,
    pub container_grace: Option<String>,
    pub volumes: Option<bool>,
    pub build_cache: Option<bool>,
    pub max_deletions: Option<u32>,
    pub state: Option<PathBuf>,
    /// Set to false to let GC remove ECS agent images (protected by default).
    pub protect_ecs_agent: Option<bool>,
    /// Set to true to let `--containers` remove ECS-managed containers too.
    pub remove_ecs_containers: Option<bool>,
    /// Concurrent delete requests.
    pub concurrency: Option<usize>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEcr {
    #[serde(default)]
    pub repository: Vec<String>,
    pub policy: Option<PathBuf>,
    /// Lifecycle-policy rules written in TOML, same shape as the policy JSON's `rules`.
    pub rules: Option<Vec<serde_json::Value>>,
    pub keep_last: Option<u32>,
    pub expire_untagged_after: Option<String>,
    /// A number or "auto".
    pub max_images: Option<MaxImages>,
    #[serde(default)]
    pub protect_ecs_cluster: Vec<String>,
    #[serde(default)]
    pub protect_tag: Vec<String>,
    pub min_age: Option<String>,
    pub max_delete_percent: Option<u8>,
    pub force: Option<bool>,
    pub shard: Option<String>,
    pub concurrency: Option<usize>,
    pub apply: Option<bool>,
}

/// `max_images = 5000` or `max_images = "auto"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum MaxImages {
    Count(u32),
    Text(String),
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub state: Option<PathBuf>,
    pub disk_check_interval: Option<String>,
    /// How often last-use state is reconciled against a full image listing.
    pub reconcile_interval: Option<String>,
    /// Bound on draining the in-flight chunk at SIGTERM.
    pub shutdown_timeout: Option<String>,
    #[serde(default)]
    pub jobs: RawJobs,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawJobs {
    pub gc: Option<RawJob>,
    pub ecr_prune: Option<RawJob>,
    pub refresh_auth: Option<RawJob>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    pub schedule: Option<String>,
    pub jitter: Option<String>,
    /// ecr_prune: delete (true) or only plan.
    pub apply: Option<bool>,
    /// refresh_auth: argv run when ecs.config changed (no shell).
    pub on_change: Option<Vec<String>>,
    /// Set false to disable a job without deleting its table.
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<String>,
}

/// A TOML table whose entry order is kept (sources apply "in the order given").
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct OrderedMap(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderedMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedMap, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    entries.push((k, v));
                }
                Ok(OrderedMap(entries))
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// Where the config came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    Defaults,
    File(PathBuf),
}

/// Load the raw config. `explicit` is `--config`: a missing file named there is an
/// error; a missing default file means built-in defaults.
pub fn load(explicit: Option<&Path>) -> Result<(RawConfig, ConfigSource), ConfigError> {
    let (path, must_exist) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path).map(|raw| (raw, ConfigSource::File(path))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
            Ok((RawConfig::default(), ConfigSource::Defaults))
        }
        Err(source) => Err(ConfigError::Read { path, source }),
    }
}

/// Parse config text; the error message names key, line and column.
pub fn parse(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: describe_toml_error(text, &e),
    })
}

fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_owned();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let snippet = text[span.start.min(text.len())..span.end.min(text.len())].trim();
            if snippet.is_empty() || snippet.len() > 60 {
                format!("line {line}: {msg}")
            } else {
                format!("line {line}: {msg} (at `{snippet}`)")
            }
        }
        None => msg,
    }
}

/// Keys in `set`-style maps whose values are redacted when shown.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    ["AUTH", "PASSWORD", "SECRET", "TOKEN", "CREDENTIAL"]
        .iter()
        .any(|s| k.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_parses() {
        let text = r#"
[bootstrap]
cluster = "prod"
registry_secret = { "registry.gitlab.com" = "prod/gitlab-registry", "docker.io" = "hub" }
from_s3 = ["s3://my-config/ecs/base.config"]
set = { ECS_ENABLE_TASK_IAM_ROLE = "true" }

[gc]
min_age = "1h"
keep_per_repo = 1
exclude = ["redis:*"]
high_water = "85%"
low_water = "75%"

[ecr]
max_images = "auto"

[daemon.jobs.gc]
schedule = "*/30 * * * *"
jitter = "2m"

[daemon.jobs.refresh_auth]
schedule = "0 * * * *"
on_change = ["systemctl", "restart", "ecs"]

[metrics]
listen = "127.0.0.1:9101"
"#;
        let raw = parse(text, Path::new("x.toml")).expect("parses");
        assert_eq!(raw.bootstrap.cluster.as_deref(), Some("prod"));
        assert_eq!(raw.bootstrap.registry_secret.0[0].0, "registry.gitlab.com");
        assert_eq!(raw.bootstrap.registry_secret.0[1].0, "docker.io");
        assert_eq!(raw.ecr.max_images, Some(MaxImages::Text("auto".into())));
        assert_eq!(raw.gc.keep_per_repo, Some(1));
        assert!(raw.daemon.jobs.refresh_auth.is_some());
    }

    #[test]
    fn unknown_key_is_named_with_line() {
        let text = "[gc]\nmin_age = \"1h\"\nmin_agee = \"2h\"\n";
        let err = parse(text, Path::new("/etc/shipshape/shipshape.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("min_agee"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("/etc/shipshape/shipshape.toml"), "{err}");
    }

    #[test]
    fn unknown_section_is_an_error() {
        let err = parse("[gcc]\n", Path::new("x")).unwrap_err().to_string();
        assert!(err.contains("gcc"), "{err}");
    }

    #[test]
    fn missing_default_is_defaults_but_missing_explicit_is_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.toml");
        let err = load(Some(&missing)).unwrap_err().to_string();
        assert!(err.contains("nope.toml"), "{err}");
    }
}
