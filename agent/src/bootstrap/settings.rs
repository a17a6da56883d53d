//! `[bootstrap]` and the `bootstrap` flags: one options struct filled by clap and by
//! serde, resolved into validated `Settings`. Scalars: the flag wins over the file.
//! Repeatable flags are appended after the file's entries, and since later entries win
//! per key/registry, a flag overrides the file's entry for the same key or registry.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use super::auth::{normalize_registry, AuthType};
use super::ecs_config::{validate, EntryError};
use crate::config::layer::{Invalid, Key, Layered};
use crate::config::value::is_secret_key;
use crate::config::value::{
    key_value_table, ser_duration, with_default, HumanDuration, KeyValue, S3Location,
};

pub const DEFAULT_ECS_CONFIG: &str = "/etc/ecs/ecs.config";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_AUTH_TYPE: AuthType = AuthType::Docker;

/// Keys that only the registry sources may set: credentials never come from a
/// command line (visible in `ps`) or a config file value.
pub const AUTH_KEYS: [&str; 2] = ["ECS_ENGINE_AUTH_TYPE", "ECS_ENGINE_AUTH_DATA"];

const SECTION: &str = "bootstrap";
const CLUSTER: Key = Key::new(SECTION, "cluster");
const SET: Key = Key::new(SECTION, "set");
const REGISTRY_SECRET: Key = Key::new(SECTION, "registry_secret");
const AUTH_SECRET: Key = Key::new(SECTION, "auth_secret");
const TIMEOUT: Key = Key::new(SECTION, "timeout");

/// `[bootstrap]` in the file and the flags of `bootstrap`.
#[derive(Debug, Default, Clone, PartialEq, clap::Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootstrapOptions {
    #[arg(long, value_name = "PATH", help = with_default("ecs.config to write", DEFAULT_ECS_CONFIG))]
    pub ecs_config: Option<PathBuf>,
    /// ECS cluster name (ECS_CLUSTER).
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Extra ecs.config setting; repeatable (a table in the file).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    #[serde(deserialize_with = "key_value_table")]
    pub set: Vec<KeyValue>,
    /// Registry credentials from a Secrets Manager secret {"username","password"}; repeatable.
    #[arg(long = "registry-secret", value_name = "REGISTRY=SECRET_ID")]
    #[serde(deserialize_with = "key_value_table")]
    pub registry_secret: Vec<KeyValue>,
    /// A secret holding a Docker config.json, an ECS docker map or dockercfg map; repeatable.
    #[arg(long = "auth-secret", value_name = "SECRET_ID")]
    pub auth_secret: Vec<String>,
    /// An S3 object: auth JSON, or an ecs.config fragment; repeatable.
    #[arg(long = "from-s3", value_name = "s3://BUCKET/KEY")]
    pub from_s3: Vec<S3Location>,
    #[arg(long, value_enum, value_name = "TYPE", help = with_default(
        "ECS_ENGINE_AUTH_TYPE to write", DEFAULT_AUTH_TYPE))]
    pub auth_type: Option<AuthType>,
    /// Also write these credentials into a Docker CLI config.json.
    #[arg(long, value_name = "PATH")]
    pub docker_config: Option<PathBuf>,
    #[arg(long, value_name = "DURATION", help = with_default(
        "Total time allowed, retries included", HumanDuration(DEFAULT_TIMEOUT)))]
    pub timeout: Option<HumanDuration>,
    /// With --docker-config: write credHelpers entries naming docker-credential-shipshape
    /// for the registry_secret registries instead of their passwords under auths.
    #[arg(long)]
    pub credential_helper: bool,
}

/// Validated bootstrap settings; `check` prints them serialized (secret-looking
/// `set` values redacted; secret ids are names, not secrets, and are shown).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub ecs_config: PathBuf,
    pub cluster: Option<String>,
    /// `--set` entries, file first then flags; one entry per key (later wins in place).
    #[serde(serialize_with = "ser_redacted_map")]
    pub set: Vec<(String, String)>,
    /// (normalised registry, secret id), file first then flags, one per registry.
    #[serde(rename = "registry_secret", serialize_with = "ser_map")]
    pub registry_secrets: Vec<(String, String)>,
    #[serde(rename = "auth_secret")]
    pub auth_secrets: Vec<String>,
    pub from_s3: Vec<S3Location>,
    pub auth_type: AuthType,
    pub docker_config: Option<PathBuf>,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// config.json gets `credHelpers` entries (`shipshape`) instead of passwords.
    pub credential_helper: bool,
}

fn ser_map<S: Serializer>(entries: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(entries.iter().map(|(k, v)| (k, v)))
}

fn ser_redacted_map<S: Serializer>(entries: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(entries.iter().map(|(k, v)| {
        let shown = if is_secret_key(k) { "<redacted>" } else { v };
        (k, shown)
    }))
}

impl Settings {
    /// The built-in defaults (no file, no flags).
    pub fn defaults() -> Self {
        let none = BootstrapOptions::default();
        Self::resolve(Layered::new(&none, &none, &Default::default()))
            .unwrap_or_else(|e| unreachable!("defaults are valid: {e}"))
    }

    /// Merge the file section and the flags, validate, apply defaults.
    pub fn resolve(l: Layered<'_, BootstrapOptions>) -> Result<Self, Invalid> {
        let (flags, file) = (l.flags, l.file);
        let cluster = flags.cluster.clone().or_else(|| file.cluster.clone());
        if let Some(c) = &cluster {
            let bad = |m: String| l.invalid(CLUSTER, flags.cluster.is_some(), true, m);
            if c.trim().is_empty() {
                return Err(bad("the cluster name is empty".into()));
            }
            validate("ECS_CLUSTER", c).map_err(|e| bad(e.to_string()))?;
        }

        let mut set: Vec<(String, String)> = Vec::new();
        let tagged = |from_flag: bool, list: &[KeyValue]| {
            list.iter()
                .map(|kv| (from_flag, kv.clone()))
                .collect::<Vec<_>>()
        };
        for (from_flag, kv) in tagged(false, &file.set)
            .into_iter()
            .chain(tagged(true, &flags.set))
        {
            check_set_entry(&kv.key, &kv.value).map_err(|m| l.invalid(SET, from_flag, true, m))?;
            upsert(&mut set, kv.key, kv.value);
        }

        let mut registry_secrets: Vec<(String, String)> = Vec::new();
        for (from_flag, kv) in tagged(false, &file.registry_secret)
            .into_iter()
            .chain(tagged(true, &flags.registry_secret))
        {
            let bad = |m: String| l.invalid(REGISTRY_SECRET, from_flag, true, m);
            let normal = normalize_registry(&kv.key).map_err(|e| bad(e.to_string()))?;
            let id = kv.value.trim().to_owned();
            if id.is_empty() {
                return Err(bad(format!("empty secret id for {:?}", kv.key)));
            }
            upsert(&mut registry_secrets, normal, id);
        }

        let mut auth_secrets = Vec::new();
        for (from_flag, id) in file
            .auth_secret
            .iter()
            .map(|id| (false, id))
            .chain(flags.auth_secret.iter().map(|id| (true, id)))
        {
            let id = id.trim();
            if id.is_empty() {
                return Err(l.invalid(AUTH_SECRET, from_flag, true, "empty secret id"));
            }
            auth_secrets.push(id.to_owned());
        }

        let timeout = flags
            .timeout
            .or(file.timeout)
            .map_or(DEFAULT_TIMEOUT, |d| d.0);
        if timeout.is_zero() {
            return Err(l.invalid(
                TIMEOUT,
                flags.timeout.is_some(),
                true,
                "must be more than 0s",
            ));
        }

        Ok(Self {
            ecs_config: flags
                .ecs_config
                .clone()
                .or_else(|| file.ecs_config.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_ECS_CONFIG)),
            cluster,
            set,
            registry_secrets,
            auth_secrets,
            from_s3: file.from_s3.iter().chain(&flags.from_s3).cloned().collect(),
            auth_type: flags
                .auth_type
                .or(file.auth_type)
                .unwrap_or(DEFAULT_AUTH_TYPE),
            docker_config: flags
                .docker_config
                .clone()
                .or_else(|| file.docker_config.clone()),
            timeout,
            credential_helper: flags.credential_helper || file.credential_helper,
        })
    }

    /// Settings from `bootstrap` flags alone (tests of the areas that use them).
    #[cfg(test)]
    pub(crate) fn from_flags(args: &[&str]) -> Self {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Flags {
            #[command(flatten)]
            options: BootstrapOptions,
        }
        let flags = Flags::try_parse_from(std::iter::once("bootstrap").chain(args.iter().copied()))
            .expect("flags parse")
            .options;
        Self::resolve(Layered::new(
            &flags,
            &BootstrapOptions::default(),
            &Default::default(),
        ))
        .expect("valid flags")
    }

    /// Settings from these options as flags alone (tests of the areas that use them).
    #[cfg(test)]
    pub(crate) fn from_options(flags: &BootstrapOptions) -> Self {
        Self::resolve(Layered::new(
            flags,
            &BootstrapOptions::default(),
            &Default::default(),
        ))
        .expect("valid options")
    }

    /// Whether any source needs AWS.
    pub fn needs_aws(&self) -> bool {
        !self.registry_secrets.is_empty()
            || !self.auth_secrets.is_empty()
            || !self.from_s3.is_empty()
    }
}

fn check_set_entry(key: &str, value: &str) -> Result<(), String> {
    if AUTH_KEYS.contains(&key) {
        return Err(format!(
            "{key} cannot be set directly; give credentials with --registry-secret, \
             --auth-secret or --from-s3 so they never appear in arguments or config"
        ));
    }
    validate(key, value).map_err(|e| match e {
        EntryError::BadKey(_) => format!("{e}"),
        other => other.to_string(),
    })
}

fn upsert(list: &mut Vec<(String, String)>, key: String, value: String) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => list.push((key, value)),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::*;
    use crate::config::layer::{FileText, Origin};

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        options: BootstrapOptions,
    }

    fn try_flags(args: &[&str]) -> Result<BootstrapOptions, clap::Error> {
        Flags::try_parse_from(std::iter::once("bootstrap").chain(args.iter().copied()))
            .map(|f| f.options)
    }

    fn resolve(flag_args: &[&str], text: &str) -> Result<Settings, Invalid> {
        #[derive(Deserialize)]
        struct Doc {
            #[serde(default)]
            bootstrap: BootstrapOptions,
        }
        let flags = try_flags(flag_args).expect("flags parse");
        let doc: Doc = toml::from_str(text).expect("file parses");
        let text = FileText::new(Path::new("x.toml"), text);
        Settings::resolve(Layered::new(&flags, &doc.bootstrap, &text))
    }

    #[test]
    fn defaults() {
        let s = Settings::defaults();
        assert_eq!(s.ecs_config, PathBuf::from("/etc/ecs/ecs.config"));
        assert_eq!(s.timeout, Duration::from_secs(120));
        assert_eq!(s.auth_type, AuthType::Docker);
        assert!(!s.needs_aws());
    }

    #[test]
    fn flags_win_over_file_scalars() {
        let s = resolve(
            &["--cluster", "flag", "--timeout", "5s"],
            "[bootstrap]\ncluster = \"file\"\ntimeout = \"10s\"\nauth_type = \"dockercfg\"\n",
        )
        .unwrap();
        assert_eq!(s.cluster.as_deref(), Some("flag"));
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert_eq!(s.auth_type, AuthType::Dockercfg, "file used when no flag");
    }

    #[test]
    fn repeatable_flags_append_and_override_per_key() {
        let s = resolve(
            &[
                "--set", "B=flag", "--set", "C=x=y",
                "--registry-secret", "https://index.docker.io/v1/=flag-id",
                "--registry-secret", "ghcr.io=g",
                "--from-s3", "s3://b/k2",
            ],
            "[bootstrap]\nset = { A = \"file\", B = \"file\" }\nregistry_secret = { \"docker.io\" = \"file-id\" }\nfrom_s3 = [\"s3://b/k1\"]\n",
        )
        .unwrap();
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
    fn bad_set_key_is_refused_naming_it() {
        let err = resolve(&["--set", "ecs_cluster=x"], "").unwrap_err();
        assert_eq!(err.key, SET);
        assert_eq!(err.origin, Origin::Flag);
        assert!(err.to_string().contains("ecs_cluster"), "{err}");
    }

    #[test]
    fn set_without_equals_does_not_echo_value() {
        let err = try_flags(&["--set", "some secret value"]).unwrap_err();
        let source = std::error::Error::source(&err)
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(!source.contains("secret value"), "{source}");
    }

    #[test]
    fn auth_keys_cannot_be_set() {
        let err = resolve(&["--set", "ECS_ENGINE_AUTH_DATA={}"], "").unwrap_err();
        assert!(err.to_string().contains("--registry-secret"), "{err}");
    }

    #[test]
    fn set_value_with_newline_is_refused_naming_key_and_line() {
        let err = resolve(&[], "[bootstrap]\nset = { A = \"x\\ny\" }\n").unwrap_err();
        assert!(err.to_string().contains("line break"), "{err}");
        assert!(err.to_string().contains("bootstrap.set"), "{err}");
        assert_eq!(err.origin, Origin::File { line: Some(2) });
    }

    #[test]
    fn registry_secret_syntax_and_ecr() {
        assert!(try_flags(&["--registry-secret", "no-equals"]).is_err());
        for bad in ["=id", "ghcr.io=", "1.dkr.ecr.us-east-1.amazonaws.com=id"] {
            let err = resolve(&["--registry-secret", bad], "").unwrap_err();
            assert_eq!(err.key, REGISTRY_SECRET, "{bad}: {err}");
        }
    }

    #[test]
    fn s3_urls_are_parsed_at_the_edge() {
        let s = resolve(&["--from-s3", "s3://my-config/ecs/base.config"], "").unwrap();
        assert_eq!(s.from_s3[0].bucket, "my-config");
        assert_eq!(s.from_s3[0].key, "ecs/base.config");
        for bad in [
            "my-config/x",
            "s3://bucket",
            "s3:///k",
            "s3://b/",
            "https://b/k",
        ] {
            assert!(try_flags(&["--from-s3", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeout_validation() {
        assert!(resolve(&["--timeout", "0s"], "").is_err());
        for bad in ["soon", ""] {
            assert!(try_flags(&["--timeout", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn check_redacts_secret_looking_set_values() {
        let s = resolve(
            &[],
            "[bootstrap]\nset = { HTTP_PROXY_PASSWORD = \"hunter2\", ECS_LOGLEVEL = \"info\" }\n",
        )
        .unwrap();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["set"]["HTTP_PROXY_PASSWORD"], "<redacted>");
        assert_eq!(v["set"]["ECS_LOGLEVEL"], "info");
        assert_eq!(v["timeout"], "2m");
        assert!(!v.to_string().contains("hunter2"));
    }
}
