//! The pure step of bootstrap: from the settings, what the sources gave and the
//! current bytes of the files, the exact bytes each file should hold. No I/O, no
//! clock: the caller reads the files before and writes them after.

use std::path::{Path, PathBuf};

use super::auth::AuthType;
use super::auth::{self, render_auth_data, AuthMap};
use super::ecs_config::{self, merge, Entry};
use super::settings::Settings;
use super::BootstrapError;

/// A file's current content (None: it does not exist) and the content it should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: PathBuf,
    pub existing: Option<Vec<u8>>,
    pub new: Vec<u8>,
}

impl FileChange {
    /// Whether writing would change the file (a second identical run: false).
    pub fn changed(&self) -> bool {
        self.existing.as_deref() != Some(self.new.as_slice())
    }
}

/// ecs.config: the managed keys and the merged file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsConfigPlan {
    pub file: FileChange,
    /// Managed keys with their values, in the order they are written.
    pub entries: Vec<Entry>,
    /// Managed keys that were new to the file.
    pub appended: Vec<String>,
    /// Later duplicates of managed keys that are removed (key, 1-based line).
    pub dropped_duplicates: Vec<(String, usize)>,
}

/// The Docker CLI config.json: our registries' entries replaced, everything else kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfigPlan {
    pub file: FileChange,
    /// Managed registries that a `credsStore`/`credHelpers` entry would have answered
    /// for; overridden for those registries.
    pub overridden: Vec<String>,
}

/// The name config.json's `credHelpers` gives our helper (`docker-credential-shipshape`).
pub const HELPER_NAME: &str = "shipshape";

/// Everything a run writes. Holds credentials (in the new bytes): never log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub ecs_config: EcsConfigPlan,
    pub docker_config: Option<DockerConfigPlan>,
    /// Registry keys (normalised) whose credentials are written.
    pub registries: Vec<String>,
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
            AuthType::Docker => "docker",
            AuthType::Dockercfg => "dockercfg",
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

/// Merge the managed `entries` into ecs.config's current bytes.
pub fn ecs_config(path: &Path, existing: Option<Vec<u8>>, entries: Vec<Entry>) -> EcsConfigPlan {
    let merged = merge(existing.as_deref(), &entries);
    EcsConfigPlan {
        file: FileChange {
            path: path.to_path_buf(),
            existing,
            new: merged.bytes,
        },
        entries,
        appended: merged.appended,
        dropped_duplicates: merged.dropped_duplicates,
    }
}

/// Merge our registries into config.json's current bytes (see
/// [`auth::merge_docker_config`]); `helper`: credHelpers entries instead of auths.
/// Refuses (so nothing is written) a file that is not UTF-8 or not a JSON object.
pub fn docker_config(
    path: &Path,
    existing: Option<Vec<u8>>,
    auths: &AuthMap,
    helper: Option<&str>,
) -> Result<DockerConfigPlan, BootstrapError> {
    let refuse = |message: String| BootstrapError::DockerConfig {
        path: path.to_path_buf(),
        message,
    };
    let text = match existing.as_deref().map(std::str::from_utf8) {
        Some(Err(_)) => return Err(refuse("is not UTF-8".into())),
        Some(Ok(t)) => Some(t),
        None => None,
    };
    let merged = auth::merge_docker_config(text, auths, helper).map_err(refuse)?;
    Ok(DockerConfigPlan {
        file: FileChange {
            path: path.to_path_buf(),
            existing,
            new: merged.text.into_bytes(),
        },
        overridden: merged.overridden,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::auth::Credentials;
    use crate::bootstrap::settings::BootstrapOptions;

    fn settings(args: BootstrapOptions) -> Settings {
        Settings::from_options(&args)
    }

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

    fn entry(key: &str, value: &str) -> Entry {
        Entry {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn managed_entry_order_and_precedence() {
        let s = settings(BootstrapOptions {
            cluster: Some("prod".into()),
            set: vec![
                "ECS_LOGLEVEL=debug".parse().unwrap(),
                "ECS_CLUSTER=ignored".parse().unwrap(),
            ],
            ..Default::default()
        });
        let frag = vec![entry("ECS_LOGLEVEL", "info"), entry("ECS_X", "1")];
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
        let s = settings(BootstrapOptions {
            cluster: Some("prod".into()),
            auth_type: Some(AuthType::Dockercfg),
            ..Default::default()
        });
        let got = managed_entries(&s, &[], &AuthMap::new());
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn ecs_config_plan_reports_changes_appends_and_duplicates() {
        let path = Path::new("/etc/ecs/ecs.config");
        let existing = b"ECS_CLUSTER=old\nA=1\nECS_CLUSTER=dup\n".to_vec();
        let p = ecs_config(
            path,
            Some(existing),
            vec![entry("ECS_CLUSTER", "prod"), entry("ECS_X", "1")],
        );
        assert!(p.file.changed());
        assert_eq!(p.appended, ["ECS_X"]);
        assert_eq!(p.dropped_duplicates, [("ECS_CLUSTER".to_owned(), 3)]);
        let again = ecs_config(path, Some(p.file.new.clone()), p.entries.clone());
        assert!(!again.file.changed(), "a second run changes nothing");
        assert!(again.dropped_duplicates.is_empty());
    }

    #[test]
    fn docker_config_plan_keeps_other_fields_and_flags_cred_helpers() {
        let path = Path::new("config.json");
        let existing = br#"{"credsStore":"desktop","x":1}"#.to_vec();
        let p = docker_config(path, Some(existing), &one_registry(), None).unwrap();
        assert_eq!(p.overridden, ["ghcr.io"]);
        assert!(p.file.changed());
        let v: serde_json::Value = serde_json::from_slice(&p.file.new).unwrap();
        assert_eq!(v["x"], 1);
        assert!(v["auths"]["ghcr.io"]["auth"].is_string());
        let fresh = docker_config(path, None, &one_registry(), None).unwrap();
        assert!(fresh.overridden.is_empty());
    }

    #[test]
    fn docker_config_plan_refuses_what_it_cannot_merge() {
        let path = Path::new("config.json");
        let err = docker_config(path, Some(vec![0xff, 0xfe]), &one_registry(), None).unwrap_err();
        assert!(err.to_string().contains("is not UTF-8"), "{err}");
        let err =
            docker_config(path, Some(b"{not json".to_vec()), &one_registry(), None).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
        assert!(!err.to_string().contains("CANARY"), "{err}");
    }
}
