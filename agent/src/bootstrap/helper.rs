//! `docker-credential-shipshape`: a Docker credential helper (the
//! docker-credential-helpers protocol: the action is the argument, its input is on
//! stdin, the answer or the error text on stdout) that answers `get` and `list` from
//! Secrets Manager with the `[bootstrap]` registry → secret map, so a CI host keeps
//! no password on disk. `store` and `erase` are refused. A registry that is not in
//! the map is answered "credentials not found" at once, with no AWS call.

use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::auth::normalize_registry;
use super::settings::Settings;
use super::snapshot;
use crate::ports::secrets::{ObjectStore, SecretSource};

/// The text the Docker CLI recognises as "no credentials for this registry" (it
/// then pulls anonymously instead of failing), from docker-credential-helpers.
pub const NOT_FOUND: &str = "credentials not found in native keychain";

/// The helper's stdout and exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub stdout: String,
    pub code: u8,
}

impl Answer {
    fn ok(stdout: String) -> Self {
        Self { stdout, code: 0 }
    }

    fn fail(stdout: impl Into<String>) -> Self {
        Self {
            stdout: stdout.into(),
            code: crate::exit::EXIT_RUNTIME,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Creds<'a> {
    #[serde(rename = "ServerURL")]
    server_url: &'a str,
    username: &'a str,
    secret: &'a str,
}

/// Whether `action` needs Secrets Manager for this `input`: false for a registry
/// outside the map (and for refused actions), so the caller need not connect.
pub fn needs_aws(action: &str, input: &str, settings: &Settings) -> bool {
    match action {
        "get" => secret_of(input, settings).is_some(),
        "list" => !settings.registry_secrets.is_empty(),
        _ => false,
    }
}

/// The (registry, secret id) a server URL maps to, if any.
fn secret_of<'a>(input: &str, settings: &'a Settings) -> Option<&'a (String, String)> {
    let registry = normalize_registry(input.trim()).ok()?;
    settings
        .registry_secrets
        .iter()
        .find(|(r, _)| *r == registry)
}

/// Answer one helper call. Never puts a password anywhere but a `get` answer.
pub async fn answer(
    action: &str,
    input: &str,
    settings: &Settings,
    secrets: &dyn SecretSource,
    objects: &dyn ObjectStore,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Answer {
    match action {
        "get" => {
            let Some(entry) = secret_of(input, settings) else {
                return Answer::fail(NOT_FOUND);
            };
            let registries = match fetch(
                std::slice::from_ref(entry),
                settings,
                secrets,
                objects,
                deadline,
                cancel,
            )
            .await
            {
                Ok(r) => r,
                Err(message) => return Answer::fail(message),
            };
            let Some(creds) = registries.get(&entry.0) else {
                return Answer::fail(NOT_FOUND);
            };
            let body = Creds {
                server_url: input.trim(),
                username: &creds.username,
                secret: &creds.password,
            };
            Answer::ok(serde_json::to_string(&body).unwrap_or_default())
        }
        "list" => {
            let registries = match fetch(
                &settings.registry_secrets,
                settings,
                secrets,
                objects,
                deadline,
                cancel,
            )
            .await
            {
                Ok(r) => r,
                Err(message) => return Answer::fail(message),
            };
            let users: std::collections::BTreeMap<&str, &str> = registries
                .iter()
                .map(|(r, c)| (r.as_str(), c.username.as_str()))
                .collect();
            Answer::ok(serde_json::to_string(&users).unwrap_or_default())
        }
        "store" | "erase" => Answer::fail(format!(
            "docker-credential-shipshape does not {action} credentials: they come from AWS \
             Secrets Manager ([bootstrap] registry_secret); change the secret there (docker \
             login/logout do not apply to these registries)"
        )),
        other => Answer {
            stdout: format!(
                "unknown action {other:?}; usage: docker-credential-shipshape get|list|store|erase \
                 (the input on stdin)"
            ),
            code: crate::exit::EXIT_USAGE,
        },
    }
}

/// Fetch these registry secrets (with bootstrap's retry and parsing); the error is
/// bootstrap's one-line message (it names the secret, never its value).
async fn fetch(
    entries: &[(String, String)],
    settings: &Settings,
    secrets: &dyn SecretSource,
    objects: &dyn ObjectStore,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<super::auth::AuthMap, String> {
    let only = Settings {
        registry_secrets: entries.to_vec(),
        auth_secrets: Vec::new(),
        from_s3: Vec::new(),
        ..settings.clone()
    };
    snapshot::check_regions(&only, secrets, objects).map_err(|e| e.to_string())?;
    snapshot::fetch(&only, secrets, objects, deadline, cancel)
        .await
        .map(|s| s.registries)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bootstrap::settings::BootstrapOptions;
    use crate::testing::secrets::{FakeSecrets, FakeStore};

    fn settings() -> Settings {
        Settings::from_options(&BootstrapOptions {
            registry_secret: vec![
                "ghcr.io=gh".parse().unwrap(),
                "docker.io=hub".parse().unwrap(),
            ],
            ..Default::default()
        })
    }

    async fn call(action: &str, input: &str, secrets: &FakeSecrets) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(5);
        answer(
            action,
            input,
            &settings(),
            secrets,
            &FakeStore::default(),
            deadline,
            &CancellationToken::new(),
        )
        .await
    }

    fn secrets() -> FakeSecrets {
        FakeSecrets::default()
            .with("gh", r#"{"username":"u","password":"CANARY"}"#)
            .with("hub", r#"{"username":"h","password":"HUBPW"}"#)
    }

    #[tokio::test]
    async fn get_answers_a_configured_registry_in_any_spelling() {
        let s = secrets();
        let a = call("get", "https://ghcr.io\n", &s).await;
        assert_eq!(a.code, 0);
        let v: serde_json::Value = serde_json::from_str(&a.stdout).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ServerURL":"https://ghcr.io","Username":"u","Secret":"CANARY"})
        );
        let a = call("get", "https://index.docker.io/v1/", &s).await;
        assert!(a.stdout.contains("HUBPW"), "{}", a.stdout);
        assert_eq!(s.calls("gh"), 1);
    }

    #[tokio::test]
    async fn get_of_an_unconfigured_registry_is_not_found_without_a_call() {
        let s = secrets();
        let a = call("get", "quay.io", &s).await;
        assert_eq!(a, Answer::fail(NOT_FOUND));
        assert_eq!(s.total_calls(), 0);
        assert!(!needs_aws("get", "quay.io", &settings()));
        assert!(needs_aws("get", "ghcr.io", &settings()));
    }

    #[tokio::test]
    async fn list_gives_usernames_only() {
        let a = call("list", "", &secrets()).await;
        assert_eq!(a.code, 0);
        let v: serde_json::Value = serde_json::from_str(&a.stdout).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ghcr.io":"u","https://index.docker.io/v1/":"h"})
        );
        assert!(!a.stdout.contains("CANARY"));
    }

    #[tokio::test]
    async fn store_and_erase_are_refused_and_a_missing_secret_is_named() {
        for action in ["store", "erase"] {
            let a = call(action, "{}", &secrets()).await;
            assert_eq!(a.code, 1);
            assert!(a.stdout.contains("Secrets Manager"), "{}", a.stdout);
        }
        let a = call("get", "ghcr.io", &FakeSecrets::default()).await;
        assert_eq!(a.code, 1);
        assert!(a.stdout.contains("secret gh"), "{}", a.stdout);
        assert_eq!(call("frobnicate", "", &secrets()).await.code, 2);
    }
}
