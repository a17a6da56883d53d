//! Fetch every source through the ports, retrying transient failures with
//! exponential backoff and full jitter until the `--timeout` deadline, then fold
//! them into one registry map and one list of fragment keys. Order of precedence
//! (later wins): `--from-s3` objects, then `--auth-secret`s, then `--registry-secret`s.

use std::future::Future;
use std::time::Duration;

use futures_util::future::try_join_all;
use tokio::time::Instant;

use super::auth::{parse_auth_json, parse_registry_secret, AuthMap};
use super::ecs_config::{parse_fragment, upsert, Entry};
use super::settings::{Settings, AUTH_KEYS};
use super::BootstrapError;
use crate::ports::secrets::{FetchError, ObjectStore, SecretSource, SecretText};

const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// What the sources gave, merged.
#[derive(Debug, Default)]
pub struct Collected {
    pub registries: AuthMap,
    /// Keys from ecs.config fragments (S3), minus the auth keys, later wins.
    pub entries: Vec<Entry>,
}

/// Fetch all sources concurrently, then apply them in precedence order.
pub async fn collect(
    settings: &Settings,
    secrets: &dyn SecretSource,
    store: &dyn ObjectStore,
    deadline: Instant,
) -> Result<Collected, BootstrapError> {
    let timeout = settings.timeout;
    let objects = try_join_all(settings.from_s3.iter().map(|loc| {
        let label = loc.to_string();
        async move {
            let text = with_retry(&label, deadline, timeout, || {
                store.get_object(&loc.bucket, &loc.key)
            })
            .await?;
            Ok::<_, BootstrapError>((label, text))
        }
    }));
    let auth_secrets = try_join_all(settings.auth_secrets.iter().map(|id| {
        let label = format!("secret {id}");
        async move {
            let text =
                with_retry(&label, deadline, timeout, || secrets.get_secret_string(id)).await?;
            Ok::<_, BootstrapError>((label, text))
        }
    }));
    let registry_secrets = try_join_all(settings.registry_secrets.iter().map(|(registry, id)| {
        let label = format!("secret {id} (for {registry})");
        async move {
            let text =
                with_retry(&label, deadline, timeout, || secrets.get_secret_string(id)).await?;
            Ok::<_, BootstrapError>((label, registry.clone(), text))
        }
    }));
    let (objects, auth_secrets, registry_secrets) =
        tokio::try_join!(objects, auth_secrets, registry_secrets)?;

    let mut out = Collected::default();
    for (label, text) in &objects {
        apply_object(&mut out, label, text)?;
    }
    for (label, text) in &auth_secrets {
        let map = parse_auth_json(text.expose()).map_err(|e| content(label, e.to_string()))?;
        tracing::debug!(source = %label, registries = map.len(), "auth map read");
        out.registries.extend(map);
    }
    for (label, registry, text) in &registry_secrets {
        let creds = parse_registry_secret(text.expose(), registry).map_err(|e| {
            content(
                label,
                format!("{e}; it must hold {{\"username\":\"…\",\"password\":\"…\"}}"),
            )
        })?;
        tracing::debug!(source = %label, registry = %registry, "registry credentials read");
        out.registries.insert(registry.clone(), creds);
    }
    Ok(out)
}

/// An S3 object: auth JSON when its first non-blank character is `{`, otherwise an
/// ecs.config fragment whose `ECS_ENGINE_AUTH_DATA` (if any) is read as auth JSON.
fn apply_object(out: &mut Collected, label: &str, text: &SecretText) -> Result<(), BootstrapError> {
    let body = text.expose();
    if body.trim_start().starts_with('{') {
        let map = parse_auth_json(body).map_err(|e| content(label, e.to_string()))?;
        tracing::debug!(source = %label, registries = map.len(), "auth map read");
        out.registries.extend(map);
        return Ok(());
    }
    let entries =
        parse_fragment(body).map_err(|(line, e)| content(label, format!("line {line}: {e}")))?;
    for entry in entries {
        if entry.key == "ECS_ENGINE_AUTH_DATA" {
            let map = parse_auth_json(&entry.value)
                .map_err(|e| content(label, format!("ECS_ENGINE_AUTH_DATA {e}")))?;
            out.registries.extend(map);
        } else if AUTH_KEYS.contains(&entry.key.as_str()) {
            // The written type is --auth-type; the data was decoded by its shape.
            tracing::debug!(source = %label, key = %entry.key, "ignored: --auth-type decides");
        } else {
            tracing::debug!(source = %label, key = %entry.key, "fragment key");
            upsert(&mut out.entries, entry);
        }
    }
    Ok(())
}

fn content(label: &str, message: String) -> BootstrapError {
    BootstrapError::Content {
        source_name: label.to_owned(),
        message,
    }
}

/// Run `op` until it succeeds, fails for good, or the deadline passes. Transient
/// errors wait `min(cap, base·2^n)` scaled by a random factor in [0.5, 1].
pub async fn with_retry<F, Fut>(
    label: &str,
    deadline: Instant,
    timeout: Duration,
    mut op: F,
) -> Result<SecretText, BootstrapError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<SecretText, FetchError>>,
{
    let mut attempt: u32 = 0;
    let mut last: Option<FetchError> = None;
    loop {
        let give_up = |last: Option<FetchError>| BootstrapError::Timeout {
            source_name: label.to_owned(),
            timeout,
            last: last.map_or_else(|| "no answer".to_owned(), |e| e.to_string()),
        };
        if Instant::now() >= deadline {
            return Err(give_up(last));
        }
        attempt += 1;
        match tokio::time::timeout_at(deadline, op()).await {
            Err(_) => return Err(give_up(last)),
            Ok(Ok(value)) => {
                tracing::debug!(source = %label, attempt, "fetched");
                return Ok(value);
            }
            Ok(Err(e)) if e.is_transient() => {
                let delay = backoff(attempt);
                tracing::warn!(source = %label, attempt, error = %e, retry_in = ?delay, "transient error, retrying");
                last = Some(e);
                tokio::time::sleep_until(deadline.min(Instant::now() + delay)).await;
            }
            Ok(Err(e)) => {
                return Err(BootstrapError::Fetch {
                    source_name: label.to_owned(),
                    error: e,
                })
            }
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = exp.min(BACKOFF_CAP);
    capped.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::auth::DOCKER_HUB;
    use crate::testing::secrets::{FakeSecrets, FakeStore};


    /// `--registry-secret ghcr.io=id`, nothing else.
    fn ghcr_from_secret_id() -> Settings {
        Settings::from_flags(&["--registry-secret", "ghcr.io=id"])
    }

    /// `--from-s3 URL`, nothing else.
    fn from_one_object(url: &str) -> Settings {
        Settings::from_flags(&["--from-s3", url])
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..30 {
            let d = backoff(attempt);
            assert!(d <= BACKOFF_CAP, "{attempt}: {d:?}");
            assert!(d >= BACKOFF_BASE / 2);
        }
        assert!(backoff(10) >= BACKOFF_CAP / 2);
    }

    #[tokio::test]
    async fn transient_errors_are_retried_then_succeed() {
        let secrets = FakeSecrets::default()
            .with("id", r#"{"username":"u","password":"p"}"#)
            .failing_first("id", 3, FetchError::Transient("Throttling".into()));
        let s = ghcr_from_secret_id();
        let out = collect(&s, &secrets, &FakeStore::default(), far())
            .await
            .unwrap();
        assert_eq!(out.registries["ghcr.io"].username, "u");
        assert_eq!(secrets.calls("id"), 4);
    }

    #[tokio::test]
    async fn transient_errors_until_deadline_time_out() {
        let secrets = FakeSecrets::default()
            .with("id", r#"{"username":"u","password":"p"}"#)
            .failing_first("id", u32::MAX, FetchError::Transient("HTTP 503".into()));
        let s = Settings::from_flags(&["--registry-secret", "ghcr.io=id", "--timeout", "1500ms"]);
        let start = Instant::now();
        let err = collect(&s, &secrets, &FakeStore::default(), start + s.timeout)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("secret id"), "{msg}");
        assert!(msg.contains("HTTP 503"), "{msg}");
        assert_eq!(err.exit_code(), 1);
        assert!(Instant::now() - start <= Duration::from_millis(1700));
        assert!(secrets.calls("id") >= 3);
    }

    #[tokio::test]
    async fn access_denied_fails_at_once() {
        let secrets = FakeSecrets::default().failing_first(
            "id",
            u32::MAX,
            FetchError::AccessDenied("AccessDeniedException: no".into()),
        );
        let s = ghcr_from_secret_id();
        let err = collect(&s, &secrets, &FakeStore::default(), far())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("access denied"), "{err}");
        assert!(err.to_string().contains("GetSecretValue"), "{err}");
        assert_eq!(secrets.calls("id"), 1);
    }

    #[tokio::test]
    async fn precedence_s3_then_auth_secret_then_registry_secret() {
        let secrets = FakeSecrets::default()
            .with("bulk", r#"{"docker.io":{"username":"bulk","password":"p"},"a.io":{"username":"bulk","password":"p"}}"#)
            .with("one", r#"{"username":"one","password":"p"}"#);
        let store = FakeStore::default().with(
            "b",
            "k",
            "ECS_LOGLEVEL=info\nECS_ENGINE_AUTH_TYPE=docker\nECS_ENGINE_AUTH_DATA={\"a.io\":{\"username\":\"s3\",\"password\":\"p\"},\"b.io\":{\"username\":\"s3\",\"password\":\"p\"}}\n",
        );
        let s = Settings::from_flags(&[
            "--registry-secret",
            "docker.io=one",
            "--auth-secret",
            "bulk",
            "--from-s3",
            "s3://b/k",
        ]);
        let out = collect(&s, &secrets, &store, far()).await.unwrap();
        assert_eq!(out.registries[DOCKER_HUB].username, "one");
        assert_eq!(out.registries["a.io"].username, "bulk");
        assert_eq!(out.registries["b.io"].username, "s3");
        assert_eq!(
            out.entries,
            vec![Entry {
                key: "ECS_LOGLEVEL".into(),
                value: "info".into()
            }]
        );
    }

    #[tokio::test]
    async fn s3_json_object_is_auth_map() {
        let store = FakeStore::default().with(
            "b",
            "k",
            "\n  {\"ghcr.io\":{\"username\":\"u\",\"password\":\"p\"}}",
        );
        let s = from_one_object("s3://b/k");
        let out = collect(&s, &FakeSecrets::default(), &store, far())
            .await
            .unwrap();
        assert!(out.registries.contains_key("ghcr.io"));
    }

    #[tokio::test]
    async fn missing_s3_object_names_the_url() {
        let s = from_one_object("s3://b/missing");
        let err = collect(&s, &FakeSecrets::default(), &FakeStore::default(), far())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("s3://b/missing"), "{err}");
        assert!(err.to_string().contains("not found"), "{err}");
    }

    #[tokio::test]
    async fn bad_secret_content_never_echoed() {
        let secrets = FakeSecrets::default().with("id", "CANARY-not-json");
        let s = ghcr_from_secret_id();
        let err = collect(&s, &secrets, &FakeStore::default(), far())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("not JSON"), "{msg}");
        assert!(!msg.contains("CANARY"), "{msg}");
    }

    #[tokio::test]
    async fn fragment_with_bad_value_names_line_only() {
        let store = FakeStore::default().with("b", "k", "A=1\nlower=CANARY\n");
        let s = from_one_object("s3://b/k");
        let err = collect(&s, &FakeSecrets::default(), &store, far())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 2"), "{msg}");
        assert!(!msg.contains("CANARY"), "{msg}");
    }
}
