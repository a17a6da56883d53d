//! Fetch every source through the ports, retrying transient failures with capped
//! exponential backoff and jitter (`backon`) until the `--timeout` deadline, then fold
//! them into one registry map and one list of fragment keys. Order of precedence
//! (later wins): `--from-s3` objects, then `--auth-secret`s, then `--registry-secret`s.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures_util::future::try_join_all;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::auth::{parse_auth_json, parse_registry_secret, AuthMap};
use super::ecs_config::{parse_fragment, upsert, Entry};
use super::settings::{Settings, AUTH_KEYS};
use super::BootstrapError;
use crate::ports::secrets::{arn_region, FetchError, ObjectStore, SecretSource, SecretText};

/// The first wait; each later one doubles up to `BACKOFF_CAP`, and jitter adds up to
/// as much again (so 100–200 ms first, 2.5–5 s once capped).
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_millis(2500);

/// What the sources gave, merged.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub registries: AuthMap,
    /// Keys from ecs.config fragments (S3), minus the auth keys, later wins.
    pub entries: Vec<Entry>,
}

/// Without a default region every secret must be an ARN, and there must be no S3
/// source. Checked before any call, so such a run fails at once as a usage error.
pub fn check_regions(
    settings: &Settings,
    secrets: &dyn SecretSource,
    objects: &dyn ObjectStore,
) -> Result<(), BootstrapError> {
    if !objects.has_region() {
        if let Some(loc) = settings.from_s3.first() {
            return Err(BootstrapError::NoRegion {
                source_name: loc.to_string(),
            });
        }
    }
    if secrets.has_region() {
        return Ok(());
    }
    let ids = settings
        .registry_secrets
        .iter()
        .map(|(_, id)| id)
        .chain(&settings.auth_secrets);
    for id in ids {
        if arn_region(id).is_none() {
            return Err(BootstrapError::NoRegion {
                source_name: format!("secret {id}"),
            });
        }
    }
    Ok(())
}

/// Fetch all sources concurrently, then apply them in precedence order. Stops at the
/// first source that fails for good, at `deadline`, or when `cancel` fires.
pub async fn fetch(
    settings: &Settings,
    secrets: &dyn SecretSource,
    store: &dyn ObjectStore,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<Snapshot, BootstrapError> {
    let retry = Retry {
        deadline,
        timeout: settings.timeout,
        cancel,
    };
    let retry = &retry;
    let objects = try_join_all(settings.from_s3.iter().map(|loc| {
        let label = loc.to_string();
        async move {
            let text = retry
                .run(&label, || store.get_object(&loc.bucket, &loc.key))
                .await?;
            Ok::<_, BootstrapError>((label, text))
        }
    }));
    let auth_secrets = try_join_all(settings.auth_secrets.iter().map(|id| {
        let label = format!("secret {id}");
        async move {
            let text = retry.run(&label, || secrets.get_secret_string(id)).await?;
            Ok::<_, BootstrapError>((label, text))
        }
    }));
    let registry_secrets = try_join_all(settings.registry_secrets.iter().map(|(registry, id)| {
        let label = format!("secret {id} (for {registry})");
        async move {
            let text = retry.run(&label, || secrets.get_secret_string(id)).await?;
            Ok::<_, BootstrapError>((label, registry.clone(), text))
        }
    }));
    let (objects, auth_secrets, registry_secrets) =
        tokio::try_join!(objects, auth_secrets, registry_secrets)?;

    let mut out = Snapshot::default();
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
fn apply_object(out: &mut Snapshot, label: &str, text: &SecretText) -> Result<(), BootstrapError> {
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

/// The waits between attempts: exponential from `BACKOFF_BASE`, capped at
/// `BACKOFF_CAP`, jittered, without a count: the `--timeout` deadline (which cuts
/// the last wait short) bounds the total, so a run gives up at the deadline, not
/// before it.
fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(BACKOFF_BASE)
        .with_max_delay(BACKOFF_CAP)
        .with_jitter()
        .without_max_times()
}

/// The retry budget shared by every source of one run.
struct Retry<'a> {
    deadline: Instant,
    /// `--timeout`, for the give-up message.
    timeout: Duration,
    cancel: &'a CancellationToken,
}

impl Retry<'_> {
    /// Run `op` until it succeeds, fails for good, the deadline passes or the run is
    /// cancelled. Only `FetchError::Transient` is retried.
    async fn run<F, Fut>(&self, label: &str, mut op: F) -> Result<SecretText, BootstrapError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<SecretText, FetchError>>,
    {
        let attempts = AtomicU32::new(0);
        // The last transient error, for the message when the deadline cuts an attempt.
        let last: Mutex<Option<FetchError>> = Mutex::new(None);
        let attempt = || {
            attempts.fetch_add(1, Ordering::Relaxed);
            op()
        };
        let retrying = attempt
            .retry(backoff())
            .sleep(tokio::time::sleep)
            .when(FetchError::is_transient)
            .notify(|e: &FetchError, delay: Duration| {
                let attempt = attempts.load(Ordering::Relaxed);
                tracing::warn!(source = %label, attempt, error = %e, retry_in = ?delay, "transient error, retrying");
                *last.lock().unwrap_or_else(PoisonError::into_inner) = Some(e.clone());
            });
        let outcome = tokio::select! {
            biased;
            () = self.cancel.cancelled() => {
                return Err(BootstrapError::Cancelled {
                    source_name: label.to_owned(),
                })
            }
            outcome = tokio::time::timeout_at(self.deadline, retrying) => outcome,
        };
        let give_up = |last: Option<FetchError>| BootstrapError::Timeout {
            source_name: label.to_owned(),
            timeout: self.timeout,
            last: last.map_or_else(|| "no answer".to_owned(), |e| e.to_string()),
        };
        match outcome {
            Err(_elapsed) => Err(give_up(
                last.lock().unwrap_or_else(PoisonError::into_inner).take(),
            )),
            Ok(Ok(value)) => {
                let attempt = attempts.load(Ordering::Relaxed);
                tracing::debug!(source = %label, attempt, "fetched");
                Ok(value)
            }
            // Not reached while the backoff has no count; mapped for completeness.
            Ok(Err(e)) if e.is_transient() => Err(give_up(Some(e))),
            Ok(Err(e)) => Err(BootstrapError::Fetch {
                source_name: label.to_owned(),
                error: e,
            }),
        }
    }
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

    /// `fetch` with a token nobody cancels.
    async fn collect(
        settings: &Settings,
        secrets: &dyn SecretSource,
        store: &dyn ObjectStore,
        deadline: Instant,
    ) -> Result<Snapshot, BootstrapError> {
        fetch(
            settings,
            secrets,
            store,
            deadline,
            &CancellationToken::new(),
        )
        .await
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        use backon::BackoffBuilder as _;
        let delays: Vec<Duration> = backoff().build().take(30).collect();
        assert_eq!(delays.len(), 30, "no retry count: the deadline decides");
        assert!(delays[0] >= BACKOFF_BASE && delays[0] <= BACKOFF_BASE * 2);
        for (attempt, d) in delays.iter().enumerate() {
            assert!(*d <= BACKOFF_CAP * 2, "{attempt}: {d:?}");
            assert!(*d >= BACKOFF_BASE, "{attempt}: {d:?}");
        }
        assert!(delays[10] >= BACKOFF_CAP, "{:?}", delays[10]);
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

    #[tokio::test(start_paused = true)]
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

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_is_cut_at_the_deadline_naming_the_last_error() {
        struct Slow;
        #[async_trait::async_trait]
        impl SecretSource for Slow {
            fn has_region(&self) -> bool {
                true
            }
            async fn get_secret_string(&self, _id: &str) -> Result<SecretText, FetchError> {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Err(FetchError::Transient("never".into()))
            }
        }
        let s = ghcr_from_secret_id();
        let start = Instant::now();
        let err = collect(
            &s,
            &Slow,
            &FakeStore::default(),
            start + Duration::from_secs(2),
        )
        .await
        .unwrap_err();
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        assert!(err.to_string().contains("last error: no answer"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_stops_the_retries() {
        let secrets = FakeSecrets::default().failing_first(
            "id",
            u32::MAX,
            FetchError::Transient("Throttling".into()),
        );
        let s = ghcr_from_secret_id();
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stop.cancel();
        });
        let start = Instant::now();
        let err = fetch(&s, &secrets, &FakeStore::default(), far(), &cancel)
            .await
            .unwrap_err();
        assert!(matches!(err, BootstrapError::Cancelled { .. }), "{err}");
        assert!(Instant::now() - start < Duration::from_secs(2));
        assert!(err.to_string().contains("secret id"), "{err}");
    }

    #[test]
    fn without_a_region_secrets_must_be_arns() {
        let arn = "arn:aws:secretsmanager:eu-west-1:1:secret:x";
        let s = Settings::from_flags(&["--registry-secret", &format!("ghcr.io={arn}")]);
        let none = FakeSecrets::default().without_region();
        check_regions(&s, &none, &FakeStore::default().without_region()).unwrap();
        let err = check_regions(&ghcr_from_secret_id(), &none, &FakeStore::default()).unwrap_err();
        assert!(matches!(err, BootstrapError::NoRegion { .. }), "{err}");
        assert!(err.to_string().contains("secret id"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn without_a_region_s3_is_refused() {
        let s = from_one_object("s3://b/k");
        let err = check_regions(
            &s,
            &FakeSecrets::default(),
            &FakeStore::default().without_region(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("s3://b/k"), "{err}");
        check_regions(
            &s,
            &FakeSecrets::default().without_region(),
            &FakeStore::default(),
        )
        .unwrap();
    }
}
