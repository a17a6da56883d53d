//! `bootstrap`: fetch registry credentials (Secrets Manager, S3) and write them with
//! the cluster name and other keys into `/etc/ecs/ecs.config` exactly as ecs-init
//! reads it, optionally also into a Docker CLI `config.json`. Fail closed: any error
//! leaves every file untouched. Flow: settings → sources (ports) → pure merge → write.

pub mod auth;
pub mod ecs_config;
pub mod settings;
pub mod sources;
pub mod write;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::app::Globals;
use crate::cli::OutputFormat;
use crate::config::is_secret_key;
use crate::exit::Status;
use crate::ports::secrets::FetchError;
use auth::{render_auth_data, AuthMap};
use ecs_config::{line_key, merge, Entry};
use settings::Settings;

/// Errors of this command area. Messages name the source (secret id, S3 URL, path),
/// never a fetched value.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(
        "nothing to write: give --cluster, --set, --registry-secret, --auth-secret or --from-s3 \
         (or the same keys in [bootstrap])"
    )]
    NothingToDo,
    #[error(
        "no AWS region for {source_name}: pass --region or set AWS_REGION (a secret given by \
         full ARN uses the ARN's region)"
    )]
    NoRegion { source_name: String },
    #[error(
        "cannot read {source_name}: {error}; {}",
        fetch_hint(source_name, error)
    )]
    Fetch {
        source_name: String,
        error: FetchError,
    },
    #[error(
        "gave up on {source_name} after {} (--timeout), last error: {last}; check network \
         access to AWS and the instance role",
        crate::config::value::format_duration(*timeout)
    )]
    Timeout {
        source_name: String,
        timeout: Duration,
        last: String,
    },
    #[error("{source_name} {message}")]
    Content {
        source_name: String,
        message: String,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}; the existing file was left as it was", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} {message}; fix or remove it, nothing was written", path.display())]
    DockerConfig { path: PathBuf, message: String },
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

fn fetch_hint(source_name: &str, error: &FetchError) -> &'static str {
    let s3 = source_name.starts_with("s3://");
    match (error, s3) {
        (FetchError::NotFound(_), false) => "check the secret name or ARN and the region",
        (FetchError::NotFound(_), true) => "check the bucket, key and region",
        (FetchError::AccessDenied(_), false) => {
            "allow secretsmanager:GetSecretValue (and kms:Decrypt for a customer-managed key) \
             to the instance role"
        }
        (FetchError::AccessDenied(_), true) => "allow s3:GetObject on it to the instance role",
        _ => "see the AWS error above",
    }
}

impl BootstrapError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NothingToDo | Self::NoRegion { .. } => {
                crate::exit::EXIT_USAGE
            }
            _ => crate::exit::EXIT_RUNTIME,
        }
    }
}

/// What a run did (or, with `--dry-run`, would do). Holds no secret values.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub path: PathBuf,
    pub changed: bool,
    pub dry_run: bool,
    /// Managed keys, in the order they are written.
    pub keys: Vec<String>,
    /// Registry keys (normalised) whose credentials were written.
    pub registries: Vec<String>,
    /// Managed keys that were new to the file.
    pub appended: Vec<String>,
    /// Later duplicates of managed keys that were removed (key, 1-based line).
    pub dropped_duplicates: Vec<DroppedLine>,
    pub docker_config: Option<DockerConfigOutcome>,
    /// `--dry-run` only: the resulting file with credentials redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DroppedLine {
    pub key: String,
    pub line: usize,
}

#[derive(Debug, Serialize)]
pub struct DockerConfigOutcome {
    pub path: PathBuf,
    pub changed: bool,
}

/// Run the command.
pub async fn run(
    globals: &Globals,
    settings: &Settings,
    dry_run: bool,
    output: OutputFormat,
) -> Result<Status, BootstrapError> {
    let outcome = execute(globals, settings, dry_run).await?;
    report(&outcome, output)?;
    Ok(Status::Ok)
}

/// Daemon entry (`refresh_auth` job): run bootstrap with the config's `[bootstrap]`
/// section and no flags; `Ok(true)` when ecs.config (or config.json) changed on disk.
pub async fn refresh(globals: &Globals, settings: &Settings) -> Result<bool, BootstrapError> {
    let outcome = execute(globals, settings, false).await?;
    Ok(outcome.changed || outcome.docker_config.as_ref().is_some_and(|d| d.changed))
}

/// Fetch, merge, and (unless `dry_run`) write. Nothing is written unless every
/// source was read and both files could be rendered.
pub async fn execute(
    globals: &Globals,
    settings: &Settings,
    dry_run: bool,
) -> Result<Outcome, BootstrapError> {
    let deadline = Instant::now() + settings.timeout;
    let collected = if settings.needs_aws() {
        let aws = tokio::time::timeout_at(
            deadline,
            crate::adapters::secrets::AwsSecrets::connect(
                globals.region.as_deref(),
                settings.timeout,
            ),
        )
        .await
        .map_err(|_| BootstrapError::Timeout {
            source_name: "the AWS configuration (region, credentials)".into(),
            timeout: settings.timeout,
            last: "still loading".into(),
        })?;
        if !aws.has_region() {
            check_regions(settings)?;
        }
        sources::collect(settings, &aws, &aws, deadline).await?
    } else {
        sources::Collected::default()
    };

    let entries = managed_entries(settings, &collected.entries, &collected.registries);
    if entries.is_empty() {
        return Err(BootstrapError::NothingToDo);
    }

    let path = &settings.ecs_config;
    let existing = write::read_existing(path).map_err(|source| BootstrapError::Read {
        path: path.clone(),
        source,
    })?;
    let merged = merge(existing.as_deref(), &entries);
    let changed = existing.as_deref() != Some(merged.bytes.as_slice());
    for (key, line) in &merged.dropped_duplicates {
        tracing::warn!(path = %path.display(), key = %key, line, "removed a later duplicate of a managed key (ecs-init would let it override ours)");
    }

    let docker = match &settings.docker_config {
        Some(p) if !collected.registries.is_empty() => {
            Some(render_docker_config(p, &collected.registries)?)
        }
        Some(p) => {
            tracing::warn!(path = %p.display(), "no registry credentials, docker config left alone");
            None
        }
        None => None,
    };

    if !dry_run {
        write::write_if_changed(path, existing.as_deref(), &merged.bytes, 0o755).map_err(
            |source| BootstrapError::Write {
                path: path.clone(),
                source,
            },
        )?;
        if let Some((p, existing, new)) = &docker {
            let written = write::write_if_changed(p, existing.as_deref(), new.as_bytes(), 0o700)
                .map_err(|source| BootstrapError::Write {
                    path: p.clone(),
                    source,
                })?;
            tracing::info!(path = %p.display(), changed = written, "docker config");
        }
    }

    let registries: Vec<String> = collected.registries.keys().cloned().collect();
    Ok(Outcome {
        path: path.clone(),
        changed,
        dry_run,
        keys: entries.iter().map(|e| e.key.clone()).collect(),
        content: dry_run.then(|| redacted(&merged.bytes, registries.len())),
        registries,
        appended: merged.appended,
        dropped_duplicates: merged
            .dropped_duplicates
            .into_iter()
            .map(|(key, line)| DroppedLine { key, line })
            .collect(),
        docker_config: docker.map(|(p, existing, new)| DockerConfigOutcome {
            changed: existing.as_deref() != Some(new.as_bytes()),
            path: p,
        }),
    })
}

type DockerRender = (PathBuf, Option<Vec<u8>>, String);

fn render_docker_config(path: &Path, auths: &AuthMap) -> Result<DockerRender, BootstrapError> {
    let existing = write::read_existing(path).map_err(|source| BootstrapError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = match existing.as_deref().map(std::str::from_utf8) {
        Some(Err(_)) => {
            return Err(BootstrapError::DockerConfig {
                path: path.to_path_buf(),
                message: "is not UTF-8".into(),
            })
        }
        Some(Ok(t)) => Some(t),
        None => None,
    };
    if let Some(t) = text {
        if let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(t) {
            if obj.contains_key("credsStore") || obj.contains_key("credHelpers") {
                tracing::warn!(path = %path.display(), "credsStore/credHelpers are set; the Docker CLI may use them instead of auths");
            }
        }
    }
    let new =
        auth::merge_docker_config(text, auths).map_err(|message| BootstrapError::DockerConfig {
            path: path.to_path_buf(),
            message,
        })?;
    Ok((path.to_path_buf(), existing, new))
}

/// Without a default region every secret must be an ARN, and there must be no S3 source.
fn check_regions(settings: &Settings) -> Result<(), BootstrapError> {
    let arn = |id: &str| crate::adapters::secrets::arn_region(id).is_some();
    if let Some(loc) = settings.from_s3.first() {
        return Err(BootstrapError::NoRegion {
            source_name: loc.to_string(),
        });
    }
    let ids = settings
        .registry_secrets
        .iter()
        .map(|(_, id)| id)
        .chain(&settings.auth_secrets);
    for id in ids {
        if !arn(id) {
            return Err(BootstrapError::NoRegion {
                source_name: format!("secret {id}"),
            });
        }
    }
    Ok(())
}

/// The keys we own, values resolved by precedence (fragments < `--set` <
/// `--cluster`), ordered ECS_CLUSTER first, then others, then the auth pair.
pub fn managed_entries(
    settings: &Settings,
    fragment: &[Entry],
    registries: &AuthMap,
) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut upsert = |key: &str, value: &str| {
        ecs_config::upsert(
            &mut out,
            Entry {
                key: key.to_owned(),
                value: value.to_owned(),
            },
        )
    };
    for e in fragment {
        upsert(&e.key, &e.value);
    }
    for (k, v) in &settings.set {
        upsert(k, v);
    }
    if let Some(c) = &settings.cluster {
        upsert("ECS_CLUSTER", c);
    }
    if !registries.is_empty() {
        let type_name = match settings.auth_type {
            settings::AuthType::Docker => "docker",
            settings::AuthType::Dockercfg => "dockercfg",
        };
        upsert("ECS_ENGINE_AUTH_TYPE", type_name);
        upsert(
            "ECS_ENGINE_AUTH_DATA",
            &render_auth_data(registries, settings.auth_type),
        );
    }
    let rank = |e: &Entry| match e.key.as_str() {
        "ECS_CLUSTER" => 0,
        "ECS_ENGINE_AUTH_TYPE" | "ECS_ENGINE_AUTH_DATA" => 2,
        _ => 1,
    };
    out.sort_by_key(rank);
    out
}

/// The file as `--dry-run` shows it: the auth data replaced by a count, and any
/// other secret-looking key (kept from the existing file) redacted too.
pub fn redacted(bytes: &[u8], registries: usize) -> String {
    let mut out = String::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let key = line_key(line).map(|k| String::from_utf8_lossy(k).into_owned());
        let ending = if line.ends_with(b"\n") { "\n" } else { "" };
        match key.as_deref() {
            Some("ECS_ENGINE_AUTH_DATA") => {
                out.push_str(&format!(
                    "ECS_ENGINE_AUTH_DATA=<redacted: {registries} registries>{ending}"
                ));
            }
            Some(k) if k != "ECS_ENGINE_AUTH_TYPE" && is_secret_key(k) => {
                out.push_str(&format!("{k}=<redacted>{ending}"));
            }
            _ => out.push_str(&String::from_utf8_lossy(line)),
        }
    }
    out
}

fn report(outcome: &Outcome, format: OutputFormat) -> Result<(), BootstrapError> {
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, outcome).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        OutputFormat::Text if outcome.dry_run => {
            write!(out, "{}", outcome.content.as_deref().unwrap_or_default())?;
            let verb = if outcome.changed {
                "would be updated"
            } else {
                "unchanged"
            };
            tracing::info!(path = %outcome.path.display(), "dry run: ecs.config {verb}, nothing written");
        }
        OutputFormat::Text => {
            let verb = if outcome.changed {
                "updated"
            } else {
                "unchanged"
            };
            writeln!(
                out,
                "ecs.config {} {verb} ({} keys, {} registries)",
                outcome.path.display(),
                outcome.keys.len(),
                outcome.registries.len()
            )?;
            if let Some(d) = &outcome.docker_config {
                let verb = if d.changed { "updated" } else { "unchanged" };
                writeln!(
                    out,
                    "docker config {} {verb} ({} registries)",
                    d.path.display(),
                    outcome.registries.len()
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use auth::Credentials;


    fn one_registry() -> AuthMap {
        let mut m = AuthMap::new();
        m.insert(
            "ghcr.io".into(),
            Credentials {
                username: "u".into(),
                password: "CANARY".into(),
                email: None,
            },
        );
        m
    }

    #[test]
    fn managed_entry_order_and_precedence() {
        let s = Settings::from_flags(&[
            "--cluster",
            "prod",
            "--set",
            "ECS_LOGLEVEL=debug",
            "--set",
            "ECS_CLUSTER=ignored",
        ]);
        let frag = vec![
            Entry {
                key: "ECS_LOGLEVEL".into(),
                value: "info".into(),
            },
            Entry {
                key: "ECS_X".into(),
                value: "1".into(),
            },
        ];
        let got = managed_entries(&s, &frag, &one_registry());
        let keys: Vec<&str> = got.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ECS_CLUSTER",
                "ECS_LOGLEVEL",
                "ECS_X",
                "ECS_ENGINE_AUTH_TYPE",
                "ECS_ENGINE_AUTH_DATA"
            ]
        );
        assert_eq!(
            got[0].value, "prod",
            "--cluster wins over --set ECS_CLUSTER"
        );
        assert_eq!(got[1].value, "debug", "--set wins over a fragment");
        assert_eq!(got[3].value, "docker");
    }

    #[test]
    fn no_registries_no_auth_keys() {
        let s = Settings::from_flags(&["--cluster", "prod", "--auth-type", "dockercfg"]);
        let got = managed_entries(&s, &[], &AuthMap::new());
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn redaction_hides_auth_data_and_secret_keys() {
        let text = b"A=1\nECS_ENGINE_AUTH_TYPE=docker\nECS_ENGINE_AUTH_DATA={\"x\":\"CANARY\"}\nPROXY_PASSWORD=CANARY\n# c";
        let out = redacted(text, 2);
        assert!(!out.contains("CANARY"), "{out}");
        assert!(out.contains("ECS_ENGINE_AUTH_DATA=<redacted: 2 registries>\n"));
        assert!(out.contains("ECS_ENGINE_AUTH_TYPE=docker\n"));
        assert!(out.contains("PROXY_PASSWORD=<redacted>\n"));
        assert!(out.ends_with("# c"));
    }

    #[test]
    fn errors_have_exit_codes() {
        assert_eq!(BootstrapError::NothingToDo.exit_code(), 2);
        let e = BootstrapError::Fetch {
            source_name: "secret x".into(),
            error: FetchError::NotFound("ResourceNotFoundException".into()),
        };
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("secret x"));
        assert!(e.to_string().contains("check the secret name"));
    }

    #[tokio::test]
    async fn dry_run_writes_nothing_and_real_run_writes_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ecs.config");
        let globals = Globals::defaults();
        let p = path.display().to_string();
        let s = Settings::from_flags(&["--ecs-config", &p, "--cluster", "prod"]);
        let o = execute(&globals, &s, true).await.unwrap();
        assert!(o.changed);
        assert!(!path.exists());
        let o = execute(&globals, &s, false).await.unwrap();
        assert!(o.changed);
        let o = execute(&globals, &s, false).await.unwrap();
        assert!(!o.changed);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(ecs_config::read_like_ecs_init(&text)["ECS_CLUSTER"], "prod");
    }

    #[tokio::test]
    async fn nothing_to_do_is_usage_error() {
        let globals = Globals::defaults();
        let err = execute(&globals, &Settings::defaults(), false)
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
