//! The daemon's Prometheus metrics: every series of SPEC.md (`daemon`: Metrics) in a
//! prometheus-client registry, rendered in the OpenMetrics text format that
//! `super::http` serves on `/metrics`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::jobs::{EcrOutcome, GcOutcome};
use super::settings::JobKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    pub job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepositoryLabel {
    pub repository: String,
}

type F64Gauge = Gauge<f64, AtomicU64>;

/// Buckets from 0.5s to about 2.3h: job runs take seconds to hours.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.5, 3.3, 9))
}

/// Every series the daemon exports (SPEC.md, `daemon`: Metrics).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub job_runs: Family<JobLabel, Counter>,
    pub job_failures: Family<JobLabel, Counter>,
    pub job_last_success: Family<JobLabel, F64Gauge>,
    pub job_duration: Family<JobLabel, Histogram, fn() -> Histogram>,
    pub images_deleted: Counter,
    pub containers_deleted: Counter,
    pub volumes_deleted: Counter,
    pub bytes_reclaimed: Counter,
    pub disk_usage_ratio: F64Gauge,
    pub container_log_bytes: Gauge,
    pub unaccounted_bytes: Gauge,
    pub ecr_images_deleted: Family<RepositoryLabel, Counter>,
    pub last_error: F64Gauge,
    pub docker_up: Gauge,
    pub docker_events: Counter,
    pub docker_events_dropped: Counter,
    pub docker_reconnects: Counter,
    pub tracked_images: Gauge,
    state_save_failures: Counter,
    metrics_connections_refused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("shipshape");
        let mut m = Self {
            job_runs: Family::default(),
            job_failures: Family::default(),
            job_last_success: Family::default(),
            job_duration: Family::new_with_constructor(duration_histogram),
            images_deleted: Counter::default(),
            containers_deleted: Counter::default(),
            volumes_deleted: Counter::default(),
            bytes_reclaimed: Counter::default(),
            disk_usage_ratio: F64Gauge::default(),
            container_log_bytes: Gauge::default(),
            unaccounted_bytes: Gauge::default(),
            ecr_images_deleted: Family::default(),
            last_error: F64Gauge::default(),
            docker_up: Gauge::default(),
            docker_events: Counter::default(),
            docker_events_dropped: Counter::default(),
            docker_reconnects: Counter::default(),
            tracked_images: Gauge::default(),
            state_save_failures: Counter::default(),
            metrics_connections_refused: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("job_runs", "Job runs started", m.job_runs.clone());
        registry.register(
            "job_failures",
            "Job runs that failed",
            m.job_failures.clone(),
        );
        registry.register(
            "job_last_success_timestamp_seconds",
            "Unix time of the job's last successful run",
            m.job_last_success.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "Duration of job runs",
            m.job_duration.clone(),
        );
        registry.register(
            "gc_images_deleted",
            "Docker images deleted by GC",
            m.images_deleted.clone(),
        );
        registry.register(
            "gc_containers_deleted",
            "Docker containers deleted by GC",
            m.containers_deleted.clone(),
        );
        registry.register(
            "gc_volumes_deleted",
            "Docker volumes deleted by GC",
            m.volumes_deleted.clone(),
        );
        registry.register(
            "gc_reclaimed_bytes",
            "Bytes reclaimed by GC",
            m.bytes_reclaimed.clone(),
        );
        registry.register(
            "docker_fs_usage_ratio",
            "Used share (0..1) of the filesystem holding Docker's root dir",
            m.disk_usage_ratio.clone(),
        );
        registry.register(
            "docker_container_log_bytes",
            "Bytes of container log files under Docker's root dir (gc does not remove them)",
            m.container_log_bytes.clone(),
        );
        registry.register(
            "docker_unaccounted_bytes",
            "Bytes under Docker's root dir that no image, container or build cache names \
             (leaked layers, overlay2 only; gc does not remove them)",
            m.unaccounted_bytes.clone(),
        );
        registry.register(
            "ecr_images_deleted",
            "ECR images deleted, per repository",
            m.ecr_images_deleted.clone(),
        );
        registry.register(
            "last_error_timestamp_seconds",
            "Unix time of the last job failure or Docker connection error",
            m.last_error.clone(),
        );
        registry.register(
            "docker_up",
            "1 when the Docker engine answers, else 0",
            m.docker_up.clone(),
        );
        registry.register(
            "docker_events",
            "Docker events handled",
            m.docker_events.clone(),
        );
        registry.register(
            "docker_events_dropped",
            "Docker events that overflowed the queue or could not be applied (a full reconciliation follows)",
            m.docker_events_dropped.clone(),
        );
        registry.register(
            "docker_reconnects",
            "Reconnections to the Docker engine",
            m.docker_reconnects.clone(),
        );
        registry.register(
            "tracked_images",
            "Images in the last-use state",
            m.tracked_images.clone(),
        );
        registry.register(
            "state_save_failures",
            "Failed saves of the last-use state (each is retried; gc uses the in-memory record)",
            m.state_save_failures.clone(),
        );
        registry.register(
            "metrics_connections_refused",
            "Metrics connections closed at accept because too many were open",
            m.metrics_connections_refused.clone(),
        );
        m.registry = registry;
        m
    }

    fn job(kind: JobKind) -> JobLabel {
        JobLabel {
            job: kind.name().to_owned(),
        }
    }

    /// One metrics connection refused at the cap.
    pub fn metrics_connection_refused(&self) {
        self.metrics_connections_refused.inc();
    }

    /// One failed save of the last-use state.
    pub fn state_save_failed(&self) {
        self.state_save_failures.inc();
    }

    /// Create a job's series at zero, so "no failures yet" is a 0, not a gap.
    pub fn register_job(&self, kind: JobKind) {
        let label = Self::job(kind);
        let _ = self.job_runs.get_or_create(&label);
        let _ = self.job_failures.get_or_create(&label);
    }

    pub fn job_started(&self, kind: JobKind) {
        self.job_runs.get_or_create(&Self::job(kind)).inc();
    }

    /// Record the end of a run; `now` is Unix seconds.
    pub fn job_finished(&self, kind: JobKind, ok: bool, took: Duration, now: f64) {
        let label = Self::job(kind);
        self.job_duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        if ok {
            self.job_last_success.get_or_create(&label).set(now);
        } else {
            self.job_failures.get_or_create(&label).inc();
            self.last_error.set(now);
        }
    }

    pub fn record_gc(&self, s: &GcOutcome) {
        self.images_deleted.inc_by(s.images_deleted);
        self.containers_deleted.inc_by(s.containers_deleted);
        self.volumes_deleted.inc_by(s.volumes_deleted);
        self.bytes_reclaimed.inc_by(s.bytes_reclaimed);
        if let Some(r) = s.disk_usage_ratio {
            self.disk_usage_ratio.set(r);
        }
        if let Some(bytes) = s.container_log_bytes {
            self.container_log_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        if let Some(bytes) = s.unaccounted_bytes {
            self.unaccounted_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    pub fn record_ecr(&self, s: &EcrOutcome) {
        for (repo, n) in &s.deleted_per_repository {
            self.ecr_images_deleted
                .get_or_create(&RepositoryLabel {
                    repository: repo.clone(),
                })
                .inc_by(*n);
        }
    }

    /// The registry in OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> prometheus_parse::Scrape {
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
    }

    fn value(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no sample {name} {label:?}"));
        match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: unexpected {other:?}"),
        }
    }

    #[test]
    fn rendering_parses_and_counts() {
        let m = Metrics::new();
        m.job_started(JobKind::Gc);
        m.job_finished(JobKind::Gc, true, Duration::from_secs(3), 1_700_000_000.0);
        m.job_started(JobKind::RefreshAuth);
        m.job_finished(
            JobKind::RefreshAuth,
            false,
            Duration::from_secs(1),
            1_700_000_100.0,
        );
        m.record_gc(&GcOutcome {
            images_deleted: 7,
            containers_deleted: 2,
            volumes_deleted: 1,
            bytes_reclaimed: 4096,
            disk_usage_ratio: Some(0.42),
            container_log_bytes: Some(1234),
            unaccounted_bytes: Some(5678),
        });
        m.record_ecr(&EcrOutcome {
            deleted_per_repository: vec![("app".into(), 3), ("web".into(), 1)],
            partial_failure: false,
        });
        m.docker_up.set(1);
        let text = m.render();
        let scrape = parse(&text);
        assert_eq!(
            value(&scrape, "shipshape_job_runs_total", Some(("job", "gc"))),
            1.0
        );
        assert_eq!(
            value(
                &scrape,
                "shipshape_job_failures_total",
                Some(("job", "refresh_auth"))
            ),
            1.0
        );
        assert_eq!(
            value(
                &scrape,
                "shipshape_job_last_success_timestamp_seconds",
                Some(("job", "gc"))
            ),
            1_700_000_000.0
        );
        assert_eq!(
            value(&scrape, "shipshape_gc_images_deleted_total", None),
            7.0
        );
        assert_eq!(
            value(&scrape, "shipshape_gc_containers_deleted_total", None),
            2.0
        );
        assert_eq!(
            value(&scrape, "shipshape_gc_volumes_deleted_total", None),
            1.0
        );
        assert_eq!(
            value(&scrape, "shipshape_gc_reclaimed_bytes_total", None),
            4096.0
        );
        assert_eq!(
            value(&scrape, "shipshape_docker_fs_usage_ratio", None),
            0.42
        );
        assert_eq!(
            value(&scrape, "shipshape_docker_container_log_bytes", None),
            1234.0
        );
        assert_eq!(
            value(&scrape, "shipshape_docker_unaccounted_bytes", None),
            5678.0
        );
        assert_eq!(
            value(
                &scrape,
                "shipshape_ecr_images_deleted_total",
                Some(("repository", "app"))
            ),
            3.0
        );
        assert_eq!(
            value(&scrape, "shipshape_last_error_timestamp_seconds", None),
            1_700_000_100.0
        );
        assert!(
            text.contains("shipshape_job_duration_seconds_bucket"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
