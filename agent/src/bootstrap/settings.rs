//! Stage two of the `[bootstrap]` config: the raw file section and the flags become
//! validated `Settings`. Scalars: the flag wins over the file. Repeatable flags are
//! appended after the file's entries, and since later entries win per key/registry,
//! a flag overrides the file's entry for the same `--set` key or registry.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::auth::normalize_registry;
use super::ecs_config::{validate, EntryError};
use super::BootstrapError;
use crate::cli::{AuthType, BootstrapArgs};
use crate::config::{is_secret_key, RawBootstrap};

pub const DEFAULT_ECS_CONFIG: &str = "/etc/ecs/ecs.config";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Keys that only the registry sources may set: credentials never come from a
/// command line (visible in `ps`) or a config file value.
pub const AUTH_KEYS: [&str; 2] = ["ECS_ENGINE_AUTH_TYPE", "ECS_ENGINE_AUTH_DATA"];

/// An `s3://bucket/key` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub key: String,
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Validated bootstrap settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub ecs_config: PathBuf,
    pub cluster: Option<String>,
    /// `--set` entries, file first then flags; one entry per key (later wins in place).
    pub set: Vec<(String, String)>,
    /// (normalised registry, secret id), file first then flags, one per registry.
    pub registry_secrets: Vec<(String, String)>,
    pub auth_secrets: Vec<String>,
    pub from_s3: Vec<S3Location>,
    pub auth_type: AuthType,
    pub docker_config: Option<PathBuf>,
    pub timeout: Duration,
}

impl Settings {
    /// Merge the file section and the flags, validate, apply defaults.
    pub fn resolve(raw: &RawBootstrap, args: &BootstrapArgs) -> Result<Self, BootstrapError> {
        let ecs_config = args
            .ecs_config
            .clone()
            .or_else(|| raw.ecs_config.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ECS_CONFIG));

        let cluster = args.cluster.clone().or_else(|| raw.cluster.clone());
        if let Some(c) = &cluster {
            if c.trim().is_empty() {
                return Err(invalid("cluster", "the cluster name is empty"));
            }
            validate("ECS_CLUSTER", c).map_err(|e| invalid("cluster", e.to_string()))?;
        }

        let mut set: Vec<(String, String)> = Vec::new();
        let file_set = raw
            .set
            .0
            .iter()
            .map(|(k, v)| ("bootstrap.set", k.clone(), v.clone()));
        let mut flag_set = Vec::new();
        for item in &args.set {
            let Some((k, v)) = item.split_once('=') else {
                return Err(invalid(
                    "--set",
                    format!("expected KEY=VALUE, got {:?}", key_only(item)),
                ));
            };
            flag_set.push(("--set", k.to_owned(), v.to_owned()));
        }
        for (origin, key, value) in file_set.chain(flag_set) {
            check_set_entry(origin, &key, &value)?;
            upsert(&mut set, key, value);
        }

        let mut registry_secrets: Vec<(String, String)> = Vec::new();
        let file_regs = raw
            .registry_secret
            .0
            .iter()
            .map(|(r, id)| ("bootstrap.registry_secret", r.clone(), id.clone()));
        let mut flag_regs = Vec::new();
        for item in &args.registry_secret {
            let Some((r, id)) = item.split_once('=') else {
                return Err(invalid(
                    "--registry-secret",
                    format!("expected REGISTRY=SECRET_ID, got {item:?}"),
                ));
            };
            flag_regs.push(("--registry-secret", r.to_owned(), id.to_owned()));
        }
        for (origin, registry, id) in file_regs.chain(flag_regs) {
            let normal =
                normalize_registry(&registry).map_err(|e| invalid(origin, e.to_string()))?;
            let id = id.trim().to_owned();
            if id.is_empty() {
                return Err(invalid(origin, format!("empty secret id for {registry:?}")));
            }
            upsert(&mut registry_secrets, normal, id);
        }

        let mut auth_secrets = Vec::new();
        for id in raw.auth_secret.iter().chain(&args.auth_secret) {
            let id = id.trim();
            if id.is_empty() {
                return Err(invalid("--auth-secret", "empty secret id"));
            }
            auth_secrets.push(id.to_owned());
        }

        let mut from_s3 = Vec::new();
        for url in raw.from_s3.iter().chain(&args.from_s3) {
            from_s3.push(parse_s3_url(url)?);
        }

        let timeout = match args.timeout.as_deref().or(raw.timeout.as_deref()) {
            None => DEFAULT_TIMEOUT,
            Some(text) => {
                let d = crate::units::parse_duration(text).map_err(|e| invalid("timeout", e))?;
                if d.is_zero() {
                    return Err(invalid("timeout", "must be more than 0s"));
                }
                d
            }
        };

        Ok(Self {
            ecs_config,
            cluster,
            set,
            registry_secrets,
            auth_secrets,
            from_s3,
            auth_type: args.auth_type.or(raw.auth_type).unwrap_or(AuthType::Docker),
            docker_config: args
                .docker_config
                .clone()
                .or_else(|| raw.docker_config.clone()),
            timeout,
        })
    }

    /// Whether any source needs AWS.
    pub fn needs_aws(&self) -> bool {
        !self.registry_secrets.is_empty()
            || !self.auth_secrets.is_empty()
            || !self.from_s3.is_empty()
    }

    /// The effective settings for `check`: secret ids are shown (they are names, not
    /// secrets); `set` values whose key looks secret are redacted.
    pub fn to_json(&self) -> serde_json::Value {
        let set: serde_json::Map<String, serde_json::Value> = self
            .set
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_key(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.clone(), json!(shown))
            })
            .collect();
        let regs: serde_json::Map<String, serde_json::Value> = self
            .registry_secrets
            .iter()
            .map(|(r, id)| (r.clone(), json!(id)))
            .collect();
        json!({
            "ecs_config": self.ecs_config,
            "cluster": self.cluster,
            "set": set,
            "registry_secret": regs,
            "auth_secret": self.auth_secrets,
            "from_s3": self.from_s3.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "auth_type": self.auth_type,
            "docker_config": self.docker_config,
            "timeout": crate::units::format_duration(self.timeout),
        })
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> BootstrapError {
    BootstrapError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// What to show of a malformed `--set` item: it may be a value typed by mistake, so
/// show nothing longer than a plausible key.
fn key_only(item: &str) -> String {
    if item.len() <= 64 && crate::bootstrap::ecs_config::valid_key(item) {
        item.to_owned()
    } else {
        "<not shown>".to_owned()
    }
}

fn check_set_entry(origin: &str, key: &str, value: &str) -> Result<(), BootstrapError> {
    if AUTH_KEYS.contains(&key) {
        return Err(invalid(
            origin,
            format!(
                "{key} cannot be set directly; give credentials with --registry-secret, \
                 --auth-secret or --from-s3 so they never appear in arguments or config"
            ),
        ));
    }
    validate(key, value).map_err(|e| match e {
        EntryError::BadKey(_) => invalid(origin, format!("{e}")),
        other => invalid(origin, other.to_string()),
    })
}

fn upsert(list: &mut Vec<(String, String)>, key: String, value: String) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => list.push((key, value)),
    }
}

/// Parse `s3://bucket/key`.
pub fn parse_s3_url(url: &str) -> Result<S3Location, BootstrapError> {
    let bad = || {
        invalid(
            "--from-s3",
            format!("expected s3://BUCKET/KEY, got {url:?}"),
        )
    };
    let rest = url.trim().strip_prefix("s3://").ok_or_else(bad)?;
    let (bucket, key) = rest.split_once('/').ok_or_else(bad)?;
    if bucket.is_empty() || key.is_empty() || key.ends_with('/') {
        return Err(bad());
    }
    Ok(S3Location {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OrderedMap;

    fn args() -> BootstrapArgs {
        BootstrapArgs::default()
    }

    #[test]
    fn defaults() {
        let s = Settings::resolve(&RawBootstrap::default(), &args()).unwrap();
        assert_eq!(s.ecs_config, PathBuf::from("/etc/ecs/ecs.config"));
        assert_eq!(s.timeout, Duration::from_secs(120));
        assert_eq!(s.auth_type, AuthType::Docker);
        assert!(!s.needs_aws());
    }

    #[test]
    fn flags_win_over_file_scalars() {
        let raw = RawBootstrap {
            cluster: Some("file".into()),
            timeout: Some("10s".into()),
            auth_type: Some(AuthType::Dockercfg),
            ..Default::default()
        };
        let a = BootstrapArgs {
            cluster: Some("flag".into()),
            timeout: Some("5s".into()),
            ..args()
        };
        let s = Settings::resolve(&raw, &a).unwrap();
        assert_eq!(s.cluster.as_deref(), Some("flag"));
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert_eq!(s.auth_type, AuthType::Dockercfg, "file used when no flag");
    }

    #[test]
    fn repeatable_flags_append_and_override_per_key() {
        let raw = RawBootstrap {
            set: OrderedMap(vec![
                ("A".into(), "file".into()),
                ("B".into(), "file".into()),
            ]),
            registry_secret: OrderedMap(vec![("docker.io".into(), "file-id".into())]),
            from_s3: vec!["s3://b/k1".into()],
            ..Default::default()
        };
        let a = BootstrapArgs {
            set: vec!["B=flag".into(), "C=x=y".into()],
            registry_secret: vec![
                "https://index.docker.io/v1/=flag-id".into(),
                "ghcr.io=g".into(),
            ],
            from_s3: vec!["s3://b/k2".into()],
            ..args()
        };
        let s = Settings::resolve(&raw, &a).unwrap();
        assert_eq!(
            s.set,
            vec![
                ("A".into(), "file".into()),
                ("B".into(), "flag".into()),
                ("C".into(), "x=y".into())
            ]
        );
        assert_eq!(
            s.registry_secrets,
            vec![
                (crate::bootstrap::auth::DOCKER_HUB.into(), "flag-id".into()),
                ("ghcr.io".into(), "g".into())
            ]
        );
        assert_eq!(s.from_s3.len(), 2);
        assert_eq!(s.from_s3[1].key, "k2");
    }

    #[test]
    fn bad_set_key_is_usage_error() {
        let a = BootstrapArgs {
            set: vec!["ecs_cluster=x".into()],
            ..args()
        };
        let err = Settings::resolve(&RawBootstrap::default(), &a).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("ecs_cluster"), "{err}");
    }

    #[test]
    fn set_without_equals_does_not_echo_value() {
        let a = BootstrapArgs {
            set: vec!["some secret value".into()],
            ..args()
        };
        let err = Settings::resolve(&RawBootstrap::default(), &a)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret value"), "{err}");
    }

    #[test]
    fn auth_keys_cannot_be_set() {
        let a = BootstrapArgs {
            set: vec!["ECS_ENGINE_AUTH_DATA={}".into()],
            ..args()
        };
        let err = Settings::resolve(&RawBootstrap::default(), &a).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--registry-secret"), "{err}");
    }

    #[test]
    fn set_value_with_newline_is_refused() {
        let raw = RawBootstrap {
            set: OrderedMap(vec![("A".into(), "x\ny".into())]),
            ..Default::default()
        };
        let err = Settings::resolve(&raw, &args()).unwrap_err();
        assert!(err.to_string().contains("line break"), "{err}");
        assert!(err.to_string().contains("bootstrap.set"), "{err}");
    }

    #[test]
    fn registry_secret_syntax_and_ecr() {
        for bad in [
            "no-equals",
            "=id",
            "ghcr.io=",
            "1.dkr.ecr.us-east-1.amazonaws.com=id",
        ] {
            let a = BootstrapArgs {
                registry_secret: vec![bad.into()],
                ..args()
            };
            let err = Settings::resolve(&RawBootstrap::default(), &a).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}: {err}");
        }
    }

    #[test]
    fn s3_urls() {
        let l = parse_s3_url("s3://my-config/ecs/base.config").unwrap();
        assert_eq!(l.bucket, "my-config");
        assert_eq!(l.key, "ecs/base.config");
        assert_eq!(l.to_string(), "s3://my-config/ecs/base.config");
        for bad in [
            "my-config/x",
            "s3://bucket",
            "s3:///k",
            "s3://b/",
            "https://b/k",
        ] {
            assert!(parse_s3_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeout_validation() {
        for bad in ["0s", "soon", ""] {
            let a = BootstrapArgs {
                timeout: Some(bad.into()),
                ..args()
            };
            assert!(
                Settings::resolve(&RawBootstrap::default(), &a).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn json_redacts_secret_looking_set_values() {
        let raw = RawBootstrap {
            set: OrderedMap(vec![
                ("HTTP_PROXY_PASSWORD".into(), "hunter2".into()),
                ("ECS_LOGLEVEL".into(), "info".into()),
            ]),
            ..Default::default()
        };
        let v = Settings::resolve(&raw, &args()).unwrap().to_json();
        assert_eq!(v["set"]["HTTP_PROXY_PASSWORD"], "<redacted>");
        assert_eq!(v["set"]["ECS_LOGLEVEL"], "info");
        assert_eq!(v["timeout"], "2m");
    }
}
