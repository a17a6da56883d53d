//! The config file: one options struct per section (each defined beside its command,
//! filled by serde here and by clap in `cli.rs`), loaded once. Unknown keys and values
//! that do not parse are errors naming the key and line. `layer` merges flags over the
//! file over the defaults; `value` holds the typed values the sections share.

pub mod layer;
pub mod value;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::bootstrap::settings::BootstrapOptions;
use crate::daemon::settings::{DaemonOptions, MetricsOptions};
use crate::ecr_prune::settings::EcrOptions;
use crate::image_gc::settings::GcOptions;
use layer::{FileText, Invalid};

/// Default config file path; a missing default file means built-in defaults.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/shipshape/shipshape.toml";

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
    #[error("{}{invalid}", .path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Invalid {
        path: Option<PathBuf>,
        invalid: Invalid,
    },
}

/// The whole file. Every section is optional.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct File {
    pub bootstrap: BootstrapOptions,
    pub gc: GcOptions,
    pub ecr: EcrOptions,
    pub daemon: DaemonOptions,
    pub metrics: MetricsOptions,
}

/// The file's sections with its text (to point errors at lines).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    pub file: File,
    pub text: FileText,
}

impl Loaded {
    /// Where the config came from, for `check`.
    pub fn source(&self) -> String {
        match &self.text.path {
            Some(p) => p.display().to_string(),
            None => "built-in defaults".to_owned(),
        }
    }

    /// An `Invalid` from resolving a section, with the file it refers to.
    pub fn invalid(&self, invalid: Invalid) -> ConfigError {
        ConfigError::Invalid {
            path: self.text.path.clone(),
            invalid,
        }
    }
}

/// Load the config. `explicit` is `--config`: a missing file named there is an
/// error; a missing default file means built-in defaults.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
    let (path, must_exist) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => Ok(Loaded::default()),
        Err(source) => Err(ConfigError::Read { path, source }),
    }
}

/// Parse config text; the error message names key, line and column.
pub fn parse(text: &str, path: &Path) -> Result<Loaded, ConfigError> {
    let file = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: describe_toml_error(text, &e),
    })?;
    Ok(Loaded {
        file,
        text: FileText::new(path, text),
    })
}

/// `line 3: gc.min_age: invalid duration …`: the line, the dotted key set on it (when
/// the error is about a value), and toml's reason.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_owned();
    let Some(span) = e.span() else {
        return msg;
    };
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    let snippet = text[start..span.end.min(text.len())].trim();
    let key = key_on_line(text, line)
        .filter(|k| !msg.contains(k.rsplit('.').next().unwrap_or(k)))
        .map(|k| format!("{k}: "))
        .unwrap_or_default();
    if snippet.is_empty() || snippet.len() > 60 || snippet.starts_with('[') {
        format!("line {line}: {key}{msg}")
    } else {
        format!("line {line}: {key}{msg} (at `{snippet}`)")
    }
}

/// The dotted key assigned on `line` (1-based): `[section]` headers above it plus the
/// key left of `=`.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let mut section = String::new();
    for (index, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if let Some(header) = l.strip_prefix('[') {
            section = header
                .trim_start_matches('[')
                .trim_end_matches(']')
                .trim()
                .to_owned();
        }
        if index + 1 == line {
            let (lhs, _) = l.split_once('=')?;
            let lhs = lhs.trim().trim_matches('"');
            return Some(if section.is_empty() {
                lhs.to_owned()
            } else {
                format!("{section}.{lhs}")
            });
        }
    }
    None
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
        let raw = parse(text, Path::new("x.toml")).expect("parses").file;
        assert_eq!(raw.bootstrap.cluster.as_deref(), Some("prod"));
        assert_eq!(raw.bootstrap.registry_secret[0].key, "registry.gitlab.com");
        assert_eq!(raw.bootstrap.registry_secret[1].key, "docker.io");
        assert_eq!(raw.ecr.max_images, Some(value::MaxImages::Auto));
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
    fn a_bad_value_names_its_key_and_line() {
        let text = "[gc]\n\nmin_age = \"soon\"\n";
        let err = parse(text, Path::new("x.toml")).unwrap_err().to_string();
        assert!(err.contains("line 3: gc.min_age: "), "{err}");
        assert!(err.contains("\"soon\""), "{err}");
        let text = "[daemon.jobs.gc]\nschedule = \"every tuesday\"\n";
        let err = parse(text, Path::new("x.toml")).unwrap_err().to_string();
        assert!(err.contains("daemon.jobs.gc.schedule"), "{err}");
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
