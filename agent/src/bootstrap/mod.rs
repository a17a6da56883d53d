//! `bootstrap`: fetch registry credentials (Secrets Manager, S3) and write them with
//! the cluster name and other keys into `/etc/ecs/ecs.config` exactly as ecs-init
//! reads it, optionally also into a Docker CLI `config.json`. Fail closed: any error
//! leaves every file untouched. Flow: settings → snapshot (the sources, through the
//! ports, with retry) → plan (pure) → apply (atomic writes) → report.

pub(crate) mod apply;
pub mod auth;
pub mod ecs_config;
mod error;
pub mod helper;
pub(crate) mod plan;
pub mod report;
pub mod settings;
pub(crate) mod snapshot;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ports::secrets::{ObjectStore, SecretSource};
pub use error::BootstrapError;
use plan::{managed_entries, Plan};
pub use report::Report;
#[cfg(test)]
use settings::BootstrapOptions;
use settings::Settings;
use snapshot::Snapshot;

/// Where a failed run leaves its marker: under `/run`, so it lasts one boot.
pub const FAILURE_MARKER_DIR: &str = "/run/shipshape/bootstrap-failed";

/// Fetch every source, plan both files and (unless `dry_run`) write them. Nothing
/// is written unless every source was read and both files could be rendered.
/// `deadline` is `--timeout` from the start of the command (AWS set-up included);
/// `cancel` stops the fetching, before anything is written. Prints nothing.
///
/// A real run that fails leaves a marker (see [`failure_marker`]); the next run that
/// succeeds removes it and reports `recovered`, which counts as a change for the
/// daemon (so `ecs`, which a failed boot-time bootstrap kept from starting, is
/// started even though the files end up as they would have been).
pub async fn run(
    settings: &Settings,
    dry_run: bool,
    secrets: &dyn SecretSource,
    objects: &dyn ObjectStore,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<Report, BootstrapError> {
    let marker_dir = std::path::Path::new(FAILURE_MARKER_DIR);
    run_marked(
        settings, dry_run, secrets, objects, deadline, cancel, marker_dir,
    )
    .await
}

async fn run_marked(
    settings: &Settings,
    dry_run: bool,
    secrets: &dyn SecretSource,
    objects: &dyn ObjectStore,
    deadline: Instant,
    cancel: &CancellationToken,
    marker_dir: &std::path::Path,
) -> Result<Report, BootstrapError> {
    let result = run_once(settings, dry_run, secrets, objects, deadline, cancel).await;
    if dry_run {
        return result;
    }
    let marker = failure_marker(marker_dir, &settings.ecs_config);
    match result {
        Ok(mut report) => {
            report.recovered = std::fs::remove_file(&marker).is_ok();
            if report.recovered {
                tracing::info!(marker = %marker.display(), "succeeded after a failed run");
            }
            Ok(report)
        }
        Err(e) => {
            let written =
                std::fs::create_dir_all(marker_dir).and_then(|()| std::fs::write(&marker, b""));
            if let Err(error) = written {
                tracing::warn!(marker = %marker.display(), %error, "cannot leave the failure marker");
            }
            Err(e)
        }
    }
}

/// The marker of a failed run for this ecs.config: one file per ecs.config path
/// (`/` escaped as `-`, as systemd does), so runs for different files never mix.
pub fn failure_marker(dir: &std::path::Path, ecs_config: &std::path::Path) -> std::path::PathBuf {
    let escaped: String = ecs_config
        .to_string_lossy()
        .trim_start_matches('/')
        .chars()
        .map(|c| if c == '/' { '-' } else { c })
        .collect();
    dir.join(escaped)
}

async fn run_once(
    settings: &Settings,
    dry_run: bool,
    secrets: &dyn SecretSource,
    objects: &dyn ObjectStore,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<Report, BootstrapError> {
    snapshot::check_regions(settings, secrets, objects)?;
    let snapshot = snapshot::fetch(settings, secrets, objects, deadline, cancel).await?;
    let plan = plan_files(settings, &snapshot)?;
    if !dry_run {
        apply::apply(&plan)?;
    }
    Ok(Report::new(plan, dry_run))
}

/// Read the files' current bytes and plan their new content, logging what the
/// operator should know (removed duplicates, credential helpers, a skipped file).
fn plan_files(settings: &Settings, snapshot: &Snapshot) -> Result<Plan, BootstrapError> {
    let entries = managed_entries(settings, &snapshot.entries, &snapshot.registries);
    if entries.is_empty() {
        return Err(BootstrapError::NothingToDo);
    }
    let path = &settings.ecs_config;
    let ecs_config = plan::ecs_config(path, apply::read_existing(path)?, entries);
    for (key, line) in &ecs_config.dropped_duplicates {
        tracing::warn!(path = %path.display(), key = %key, line, "removed a later duplicate of a managed key (ecs-init would let it override ours)");
    }
    let docker_config = match &settings.docker_config {
        Some(p) if !snapshot.registries.is_empty() => {
            let (auths, helper) = if settings.credential_helper {
                // The helper answers only the registry → secret map.
                let answerable: auth::AuthMap = snapshot
                    .registries
                    .iter()
                    .filter(|(r, _)| settings.registry_secrets.iter().any(|(k, _)| k == *r))
                    .map(|(r, c)| (r.clone(), c.clone()))
                    .collect();
                for r in snapshot
                    .registries
                    .keys()
                    .filter(|r| !answerable.contains_key(*r))
                {
                    tracing::warn!(path = %p.display(), registry = %r, "not in config.json: the credential helper answers only registry_secret registries");
                }
                (answerable, Some(plan::HELPER_NAME))
            } else {
                (snapshot.registries.clone(), None)
            };
            let docker = plan::docker_config(p, apply::read_existing(p)?, &auths, helper)?;
            for registry in &docker.overridden {
                tracing::warn!(path = %p.display(), registry = %registry, "credsStore/credHelpers would have answered for this registry instead of what bootstrap writes; overridden for it in credHelpers");
            }
            Some(docker)
        }
        Some(p) => {
            tracing::warn!(path = %p.display(), "no registry credentials, docker config left alone");
            None
        }
        None => None,
    };
    Ok(Plan {
        ecs_config,
        docker_config,
        registries: snapshot.registries.keys().cloned().collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::*;
    use crate::ports::secrets::FetchError;
    use crate::testing::secrets::{FakeSecrets, FakeStore};

    const CREDS: &str = r#"{"username":"u","password":"CANARY"}"#;
    const EXISTING: &str = "# kept\nECS_CLUSTER=old\nECS_LOGLEVEL=info\n";
    const EXISTING_DOCKER: &str = "{\"auths\":{},\"x\":1}\n";

    /// A directory with an ecs.config and a config.json already in place.
    struct Host {
        dir: tempfile::TempDir,
    }

    impl Host {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join("ecs.config"), EXISTING).unwrap();
            fs::write(dir.path().join("config.json"), EXISTING_DOCKER).unwrap();
            Self { dir }
        }

        fn ecs_config(&self) -> PathBuf {
            self.dir.path().join("ecs.config")
        }

        fn docker_config(&self) -> PathBuf {
            self.dir.path().join("config.json")
        }

        /// `--ecs-config`, `--docker-config`, `--cluster prod` and `extra`.
        fn settings(&self, extra: BootstrapOptions) -> Settings {
            let args = BootstrapOptions {
                ecs_config: Some(self.ecs_config()),
                docker_config: Some(self.docker_config()),
                cluster: Some("prod".into()),
                ..extra
            };
            Settings::from_options(&args)
        }

        fn entries(&self) -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(self.dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }

        /// Both files as they were, and nothing else in the directory.
        fn assert_untouched(&self) {
            assert_eq!(fs::read_to_string(self.ecs_config()).unwrap(), EXISTING);
            assert_eq!(
                fs::read_to_string(self.docker_config()).unwrap(),
                EXISTING_DOCKER
            );
            assert_eq!(self.entries(), ["config.json", "ecs.config"]);
        }
    }

    fn ghcr_secret() -> BootstrapOptions {
        BootstrapOptions {
            registry_secret: vec!["ghcr.io=id".parse().unwrap()],
            ..Default::default()
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    async fn run_once(
        settings: &Settings,
        dry_run: bool,
        secrets: &FakeSecrets,
        store: &FakeStore,
    ) -> Result<Report, BootstrapError> {
        run(
            settings,
            dry_run,
            secrets,
            store,
            far(),
            &CancellationToken::new(),
        )
        .await
    }

    #[tokio::test]
    async fn success_writes_ecs_config_and_docker_config() {
        let host = Host::new();
        let secrets = FakeSecrets::default().with("id", CREDS);
        let store = FakeStore::default().with("b", "k", "ECS_ENABLE_TASK_IAM_ROLE=true\n");
        let s = host.settings(BootstrapOptions {
            from_s3: vec!["s3://b/k".parse().unwrap()],
            ..ghcr_secret()
        });
        let report = run_once(&s, false, &secrets, &store).await.unwrap();

        let text = fs::read_to_string(host.ecs_config()).unwrap();
        let read = ecs_config::read_like_ecs_init(&text);
        assert_eq!(read["ECS_CLUSTER"], "prod");
        assert_eq!(read["ECS_LOGLEVEL"], "info", "unmanaged keys are kept");
        assert_eq!(read["ECS_ENABLE_TASK_IAM_ROLE"], "true");
        assert_eq!(read["ECS_ENGINE_AUTH_TYPE"], "docker");
        let data: serde_json::Value = serde_json::from_str(&read["ECS_ENGINE_AUTH_DATA"]).unwrap();
        assert_eq!(data["ghcr.io"]["username"], "u");
        assert!(text.starts_with("# kept\n"), "{text}");
        assert_eq!(mode(&host.ecs_config()), 0o600);

        let docker: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(host.docker_config()).unwrap()).unwrap();
        assert_eq!(docker["x"], 1, "other fields are kept");
        assert!(docker["auths"]["ghcr.io"]["auth"].is_string());
        assert_eq!(mode(&host.docker_config()), 0o600);
        assert_eq!(host.entries(), ["config.json", "ecs.config"]);

        assert!(report.changed);
        assert!(!report.dry_run);
        assert_eq!(
            report.keys,
            [
                "ECS_CLUSTER",
                "ECS_ENABLE_TASK_IAM_ROLE",
                "ECS_ENGINE_AUTH_TYPE",
                "ECS_ENGINE_AUTH_DATA"
            ]
        );
        assert_eq!(report.registries, ["ghcr.io"]);
        assert_eq!(report.docker_config.as_ref().map(|d| d.changed), Some(true));
        assert_eq!(report.content, None);
        assert_eq!(secrets.calls("id"), 1);
        assert_eq!(store.calls(), 1);
    }

    #[tokio::test]
    async fn second_identical_run_is_unchanged() {
        let host = Host::new();
        let secrets = FakeSecrets::default().with("id", CREDS);
        let s = host.settings(ghcr_secret());
        let first = run_once(&s, false, &secrets, &FakeStore::default())
            .await
            .unwrap();
        assert!(first.any_changed());
        let written = fs::read(host.ecs_config()).unwrap();
        let second = run_once(&s, false, &secrets, &FakeStore::default())
            .await
            .unwrap();
        assert!(!second.changed);
        assert_eq!(
            second.docker_config.as_ref().map(|d| d.changed),
            Some(false)
        );
        assert!(!second.any_changed());
        assert_eq!(fs::read(host.ecs_config()).unwrap(), written);
    }

    #[tokio::test]
    async fn dry_run_writes_nothing_and_shows_the_redacted_file() {
        let host = Host::new();
        let secrets = FakeSecrets::default().with("id", CREDS);
        let s = host.settings(ghcr_secret());
        let report = run_once(&s, true, &secrets, &FakeStore::default())
            .await
            .unwrap();
        host.assert_untouched();
        assert!(report.dry_run);
        assert!(report.changed, "would be updated");
        let content = report.content.unwrap_or_default();
        assert!(content.contains("ECS_CLUSTER=prod\n"), "{content}");
        assert!(
            content.contains("ECS_ENGINE_AUTH_DATA=<redacted: 1 registries>"),
            "{content}"
        );
        assert!(!content.contains("CANARY"), "{content}");
    }

    #[tokio::test]
    async fn dry_run_writes_nothing_and_real_run_writes_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ecs.config");
        let s = Settings::from_options(&BootstrapOptions {
            ecs_config: Some(path.clone()),
            cluster: Some("prod".into()),
            ..Default::default()
        });
        let (secrets, store) = (FakeSecrets::default(), FakeStore::default());
        let o = run_once(&s, true, &secrets, &store).await.unwrap();
        assert!(o.changed);
        assert!(!path.exists());
        let o = run_once(&s, false, &secrets, &store).await.unwrap();
        assert!(o.changed);
        let o = run_once(&s, false, &secrets, &store).await.unwrap();
        assert!(!o.changed);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(ecs_config::read_like_ecs_init(&text)["ECS_CLUSTER"], "prod");
        assert_eq!(secrets.total_calls(), 0, "no source, no call");
    }

    #[tokio::test]
    async fn nothing_to_do_is_usage_error() {
        let s = Settings::defaults();
        let err = run_once(&s, false, &FakeSecrets::default(), &FakeStore::default())
            .await
            .unwrap_err();
        assert!(matches!(err, BootstrapError::NothingToDo), "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    /// Run `args` (plus `--cluster`, both paths) against the fakes; it must fail with
    /// a message holding `expect` and no secret, and leave both files as they were.
    async fn assert_fails_closed(
        args: BootstrapOptions,
        secrets: FakeSecrets,
        store: FakeStore,
        expect: &str,
    ) -> BootstrapError {
        let host = Host::new();
        let s = host.settings(args);
        let err = run_once(&s, false, &secrets, &store).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(expect), "expected {expect:?} in {msg:?}");
        assert!(!msg.contains("CANARY"), "{msg}");
        host.assert_untouched();
        err
    }

    #[tokio::test]
    async fn missing_secret_fails_closed() {
        let err = assert_fails_closed(
            ghcr_secret(),
            FakeSecrets::default(),
            FakeStore::default(),
            "check the secret name",
        )
        .await;
        assert_eq!(err.exit_code(), 1);
    }

    #[tokio::test]
    async fn access_denied_secret_fails_closed() {
        let secrets = FakeSecrets::default().with("id", CREDS).failing_first(
            "id",
            1,
            FetchError::AccessDenied("AccessDeniedException".into()),
        );
        assert_fails_closed(
            ghcr_secret(),
            secrets,
            FakeStore::default(),
            "GetSecretValue",
        )
        .await;
    }

    #[tokio::test]
    async fn other_secret_error_fails_closed() {
        let secrets = FakeSecrets::default().with("id", CREDS).failing_first(
            "id",
            1,
            FetchError::Other("the secret has no value".into()),
        );
        assert_fails_closed(
            ghcr_secret(),
            secrets,
            FakeStore::default(),
            "the secret has no value",
        )
        .await;
    }

    #[tokio::test]
    async fn secret_that_is_not_credentials_fails_closed() {
        let secrets = FakeSecrets::default().with("id", "CANARY, not JSON");
        assert_fails_closed(ghcr_secret(), secrets, FakeStore::default(), "not JSON").await;
    }

    #[tokio::test]
    async fn missing_s3_object_fails_closed() {
        let args = BootstrapOptions {
            from_s3: vec!["s3://b/missing".parse().unwrap()],
            ..Default::default()
        };
        assert_fails_closed(
            args,
            FakeSecrets::default(),
            FakeStore::default(),
            "s3://b/missing",
        )
        .await;
    }

    #[tokio::test]
    async fn access_denied_s3_object_fails_closed() {
        let args = BootstrapOptions {
            from_s3: vec!["s3://b/k".parse().unwrap()],
            ..Default::default()
        };
        let store =
            FakeStore::default().failing("b", "k", FetchError::AccessDenied("AccessDenied".into()));
        assert_fails_closed(args, FakeSecrets::default(), store, "s3:GetObject").await;
    }

    #[tokio::test]
    async fn bad_s3_fragment_fails_closed() {
        let args = BootstrapOptions {
            from_s3: vec!["s3://b/k".parse().unwrap()],
            ..Default::default()
        };
        let store = FakeStore::default().with("b", "k", "A=1\nlower=CANARY\n");
        assert_fails_closed(args, FakeSecrets::default(), store, "line 2").await;
    }

    #[tokio::test]
    async fn one_failing_source_among_good_ones_fails_closed() {
        let args = BootstrapOptions {
            auth_secret: vec!["gone".into()],
            ..ghcr_secret()
        };
        let secrets = FakeSecrets::default().with("id", CREDS);
        assert_fails_closed(args, secrets, FakeStore::default(), "secret gone").await;
    }

    #[tokio::test]
    async fn no_region_fails_closed_before_any_call() {
        let host = Host::new();
        let s = host.settings(ghcr_secret());
        let secrets = FakeSecrets::default().with("id", CREDS).without_region();
        let err = run_once(&s, false, &secrets, &FakeStore::default())
            .await
            .unwrap_err();
        assert!(matches!(err, BootstrapError::NoRegion { .. }), "{err}");
        assert_eq!(secrets.calls("id"), 0);
        host.assert_untouched();
    }

    #[tokio::test]
    async fn unmergeable_docker_config_fails_closed() {
        let host = Host::new();
        fs::write(host.docker_config(), "{not json").unwrap();
        let s = host.settings(ghcr_secret());
        let secrets = FakeSecrets::default().with("id", CREDS);
        let err = run_once(&s, false, &secrets, &FakeStore::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("config.json is not JSON"), "{err}");
        assert_eq!(fs::read_to_string(host.ecs_config()).unwrap(), EXISTING);
        assert_eq!(
            fs::read_to_string(host.docker_config()).unwrap(),
            "{not json"
        );
        assert_eq!(host.entries(), ["config.json", "ecs.config"]);
    }

    #[tokio::test]
    async fn docker_config_without_registries_is_left_alone() {
        let host = Host::new();
        let s = host.settings(BootstrapOptions::default());
        let report = run_once(&s, false, &FakeSecrets::default(), &FakeStore::default())
            .await
            .unwrap();
        assert!(report.changed);
        assert_eq!(report.docker_config, None);
        assert_eq!(
            fs::read_to_string(host.docker_config()).unwrap(),
            EXISTING_DOCKER
        );
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_the_timeout() {
        let host = Host::new();
        let s = host.settings(BootstrapOptions {
            timeout: Some("10s".parse().unwrap()),
            ..ghcr_secret()
        });
        let secrets = FakeSecrets::default().with("id", CREDS).failing_first(
            "id",
            u32::MAX,
            FetchError::Transient("ThrottlingException: Rate exceeded".into()),
        );
        let start = Instant::now();
        let err = run(
            &s,
            false,
            &secrets,
            &FakeStore::default(),
            start + s.timeout,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            Instant::now() - start,
            Duration::from_secs(10),
            "gave up at the deadline"
        );
        let msg = err.to_string();
        assert!(msg.contains("gave up on secret id"), "{msg}");
        assert!(msg.contains("after 10s"), "{msg}");
        assert!(msg.contains("ThrottlingException"), "{msg}");
        // 100 ms doubling to 2.5 s, each up to twice that: at least 5 attempts in 10 s.
        assert!(secrets.calls("id") >= 5, "{}", secrets.calls("id"));
        host.assert_untouched();
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_then_success_writes() {
        let host = Host::new();
        let s = host.settings(ghcr_secret());
        let secrets = FakeSecrets::default().with("id", CREDS).failing_first(
            "id",
            3,
            FetchError::Transient("HTTP 503".into()),
        );
        let report = run_once(&s, false, &secrets, &FakeStore::default())
            .await
            .unwrap();
        assert!(report.changed);
        assert_eq!(secrets.calls("id"), 4);
        let text = fs::read_to_string(host.ecs_config()).unwrap();
        assert!(text.contains("ECS_ENGINE_AUTH_DATA="), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_while_retrying_writes_nothing() {
        let host = Host::new();
        let s = host.settings(ghcr_secret());
        let secrets = FakeSecrets::default().with("id", CREDS).failing_first(
            "id",
            u32::MAX,
            FetchError::Transient("HTTP 503".into()),
        );
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            stop.cancel();
        });
        let err = run(&s, false, &secrets, &FakeStore::default(), far(), &cancel)
            .await
            .unwrap_err();
        assert!(matches!(err, BootstrapError::Cancelled { .. }), "{err}");
        host.assert_untouched();
    }

    #[tokio::test]
    async fn a_success_after_a_failure_reports_recovered_once() {
        let host = Host::new();
        let markers = tempfile::tempdir().unwrap();
        let s = host.settings(ghcr_secret());
        let go = |secrets: FakeSecrets| {
            let (s, dir) = (s.clone(), markers.path().to_path_buf());
            async move {
                run_marked(
                    &s,
                    false,
                    &secrets,
                    &FakeStore::default(),
                    far(),
                    &CancellationToken::new(),
                    &dir,
                )
                .await
            }
        };
        assert!(go(FakeSecrets::default()).await.is_err());
        let marker = failure_marker(markers.path(), &host.ecs_config());
        assert!(marker.exists());
        host.assert_untouched();
        let first = go(FakeSecrets::default().with("id", CREDS)).await.unwrap();
        assert!(first.recovered && first.any_changed());
        assert!(!marker.exists());
        let again = go(FakeSecrets::default().with("id", CREDS)).await.unwrap();
        assert!(!again.recovered && !again.any_changed(), "{again:?}");
        // Fail, then succeed with files already right: still a change for the daemon.
        assert!(go(FakeSecrets::default()).await.is_err());
        let same = go(FakeSecrets::default().with("id", CREDS)).await.unwrap();
        assert!(!same.changed && same.recovered && same.any_changed());
    }

    #[test]
    fn failure_markers_are_one_per_path() {
        let d = Path::new("/run/x");
        assert_eq!(
            failure_marker(d, Path::new("/etc/ecs/ecs.config")),
            Path::new("/run/x/etc-ecs-ecs.config")
        );
        assert_ne!(
            failure_marker(d, Path::new("/a/b")),
            failure_marker(d, Path::new("/a-c"))
        );
    }
}
