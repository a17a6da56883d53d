//! `[daemon]` and `[metrics]`: serde options (the daemon has no flags of its own)
//! resolved into validated `DaemonSettings` with the defaults below. Schedules and
//! durations are typed values, so a bad one fails at load time naming its key.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use super::schedule::CronSchedule;
use crate::config::layer::{FileText, Invalid, Key, Origin};
use crate::config::value::{ser_duration, HumanDuration, Watermark};

/// Defaults (SPEC.md, `daemon`).
pub const DEFAULT_DISK_CHECK_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(600);
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_GC_SCHEDULE: &str = "*/30 * * * *";
pub const DEFAULT_GC_JITTER: Duration = Duration::from_secs(120);
const DEFAULT_ECR_SCHEDULE: &str = "0 3 * * *";
const DEFAULT_REFRESH_SCHEDULE: &str = "0 * * * *";
/// Address used when `[metrics] listen` names only a port.
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The three jobs the daemon knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKind {
    Gc,
    EcrPrune,
    RefreshAuth,
}

impl JobKind {
    pub const ALL: [JobKind; 3] = [JobKind::Gc, JobKind::EcrPrune, JobKind::RefreshAuth];

    /// The job's name in config keys, logs (`JOB=`) and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gc => "gc",
            Self::EcrPrune => "ecr_prune",
            Self::RefreshAuth => "refresh_auth",
        }
    }

    fn default_schedule(self) -> &'static str {
        match self {
            Self::Gc => DEFAULT_GC_SCHEDULE,
            Self::EcrPrune => DEFAULT_ECR_SCHEDULE,
            Self::RefreshAuth => DEFAULT_REFRESH_SCHEDULE,
        }
    }

    /// `daemon.jobs.<name>`: the table of this job, for error keys.
    fn section(self) -> &'static str {
        match self {
            Self::Gc => "daemon.jobs.gc",
            Self::EcrPrune => "daemon.jobs.ecr_prune",
            Self::RefreshAuth => "daemon.jobs.refresh_auth",
        }
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `127.0.0.1:9101`, `[::1]:9101`, or a bare port (loopback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if let Ok(port) = t.trim_start_matches(':').parse::<u16>() {
            return Ok(Self(SocketAddr::new(LOOPBACK, port)));
        }
        t.parse::<SocketAddr>()
            .map(Self)
            .map_err(|_| format!("{t:?} is not an address; use e.g. \"127.0.0.1:9101\" or a port"))
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// `[daemon]` in the file.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonOptions {
    pub state: Option<PathBuf>,
    pub disk_check_interval: Option<HumanDuration>,
    /// How often last-use state is reconciled against a full image listing.
    pub reconcile_interval: Option<HumanDuration>,
    /// Bound on draining the in-flight chunk at SIGTERM.
    pub shutdown_timeout: Option<HumanDuration>,
    pub jobs: JobsOptions,
}

/// `[daemon.jobs.*]`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsOptions {
    pub gc: Option<JobOptions>,
    pub ecr_prune: Option<JobOptions>,
    pub refresh_auth: Option<JobOptions>,
}

/// One job's table.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobOptions {
    pub schedule: Option<CronSchedule>,
    pub jitter: Option<HumanDuration>,
    /// ecr_prune: delete (true) or only plan.
    pub apply: Option<bool>,
    /// refresh_auth: argv run when ecs.config changed (no shell).
    pub on_change: Option<Vec<String>>,
    /// refresh_auth: ask shipshape-ecs-restart.path to restart (or start) `ecs` (default true).
    pub restart_ecs_on_change: Option<bool>,
    /// Set false to disable a job without deleting its table.
    pub enabled: Option<bool>,
}

/// `[metrics]` in the file.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsOptions {
    pub listen: Option<ListenAddr>,
}

/// One scheduled job, validated.
#[derive(Debug, Clone, Serialize)]
pub struct JobSettings {
    #[serde(skip)]
    pub kind: JobKind,
    /// The expression as written (for logs and `check`).
    #[serde(rename = "schedule")]
    pub expression: String,
    #[serde(skip)]
    pub schedule: cron::Schedule,
    /// Each firing is delayed by a random amount in `0..=jitter`.
    #[serde(serialize_with = "ser_duration")]
    pub jitter: Duration,
    /// `ecr_prune`: delete (true) or only plan.
    pub apply: bool,
    /// `refresh_auth`: argv run (without a shell) when ecs.config changed.
    pub on_change: Vec<String>,
    /// `refresh_auth`: write the request file shipshape-ecs-restart.path watches.
    pub restart_ecs_on_change: bool,
}

/// Everything the daemon needs from the config, validated; `check` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonSettings {
    pub state: PathBuf,
    #[serde(serialize_with = "ser_duration")]
    pub disk_check_interval: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub reconcile_interval: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub shutdown_timeout: Duration,
    #[serde(serialize_with = "ser_jobs")]
    pub jobs: Vec<JobSettings>,
    #[serde(serialize_with = "ser_listen")]
    pub metrics_listen: Option<SocketAddr>,
    /// From `[gc]`: disk-pressure GC starts above `high_water` (gc itself goes down to
    /// `low_water`).
    #[serde(skip)]
    pub high_water: Option<Watermark>,
}

fn ser_jobs<S: Serializer>(jobs: &[JobSettings], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(jobs.iter().map(|j| (j.kind.name(), j)))
}

fn ser_listen<S: Serializer>(listen: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match listen {
        Some(addr) => s.collect_str(addr),
        None => s.serialize_none(),
    }
}

/// A key of the daemon's sections (they have no flags).
fn key(section: &'static str, name: &'static str) -> Key {
    Key::file_only(section, name)
}

fn invalid(text: &FileText, key: Key, message: impl Into<String>) -> Invalid {
    Invalid {
        origin: Origin::File {
            line: text.line_of(&key),
        },
        key,
        message: message.into(),
    }
}

impl DaemonSettings {
    pub fn job(&self, kind: JobKind) -> Option<&JobSettings> {
        self.jobs.iter().find(|j| j.kind == kind)
    }

    /// The built-in defaults (no file).
    #[cfg(test)]
    pub fn defaults() -> Self {
        Self::resolve(
            &DaemonOptions::default(),
            &MetricsOptions::default(),
            None,
            &FileText::default(),
        )
        .unwrap_or_else(|e| unreachable!("defaults are valid: {e}"))
    }

    /// Validate `[daemon]` and `[metrics]`; `disk` is `[gc]`'s resolved watermarks.
    pub fn resolve(
        daemon: &DaemonOptions,
        metrics: &MetricsOptions,
        disk: Option<(Watermark, Watermark)>,
        text: &FileText,
    ) -> Result<Self, Invalid> {
        let positive = |name: &'static str, value: Option<HumanDuration>, default: Duration| {
            let d = value.map_or(default, |d| d.0);
            if d.is_zero() {
                return Err(invalid(
                    text,
                    key("daemon", name),
                    "must be greater than zero",
                ));
            }
            Ok(d)
        };
        let disk_check_interval = positive(
            "disk_check_interval",
            daemon.disk_check_interval,
            DEFAULT_DISK_CHECK_INTERVAL,
        )?;
        let reconcile_interval = positive(
            "reconcile_interval",
            daemon.reconcile_interval,
            DEFAULT_RECONCILE_INTERVAL,
        )?;
        let shutdown_timeout = positive(
            "shutdown_timeout",
            daemon.shutdown_timeout,
            DEFAULT_SHUTDOWN_TIMEOUT,
        )?;
        // gc runs by default (every 30 minutes, up to 2 minutes late); the other two
        // need their table, since they need AWS and settings of their own.
        let default_gc = JobOptions {
            jitter: Some(HumanDuration(DEFAULT_GC_JITTER)),
            ..JobOptions::default()
        };
        let table = [
            (JobKind::Gc, daemon.jobs.gc.as_ref().or(Some(&default_gc))),
            (JobKind::EcrPrune, daemon.jobs.ecr_prune.as_ref()),
            (JobKind::RefreshAuth, daemon.jobs.refresh_auth.as_ref()),
        ];
        let mut jobs = Vec::new();
        for (kind, options) in table {
            if let Some(job) = options.map(|o| job_settings(kind, o, text)).transpose()? {
                jobs.extend(job);
            }
        }
        Ok(Self {
            state: daemon
                .state
                .clone()
                .unwrap_or_else(|| PathBuf::from(crate::last_use::DEFAULT_STATE_PATH)),
            disk_check_interval,
            reconcile_interval,
            shutdown_timeout,
            jobs,
            metrics_listen: metrics.listen.map(|l| l.0),
            high_water: disk.map(|d| d.0),
        })
    }
}

fn job_settings(
    kind: JobKind,
    options: &JobOptions,
    text: &FileText,
) -> Result<Option<JobSettings>, Invalid> {
    if options.enabled == Some(false) {
        return Ok(None);
    }
    let section = kind.section();
    if options.apply.is_some() && kind != JobKind::EcrPrune {
        return Err(invalid(
            text,
            key(section, "apply"),
            "only daemon.jobs.ecr_prune takes `apply`",
        ));
    }
    if options.on_change.is_some() && kind != JobKind::RefreshAuth {
        return Err(invalid(
            text,
            key(section, "on_change"),
            "only daemon.jobs.refresh_auth takes `on_change`",
        ));
    }
    if options.restart_ecs_on_change.is_some() && kind != JobKind::RefreshAuth {
        return Err(invalid(
            text,
            key(section, "restart_ecs_on_change"),
            "only daemon.jobs.refresh_auth takes `restart_ecs_on_change`",
        ));
    }
    let on_change = options.on_change.clone().unwrap_or_default();
    if options.on_change.is_some() && on_change.first().is_none_or(|p| p.trim().is_empty()) {
        return Err(invalid(
            text,
            key(section, "on_change"),
            "must name a program, e.g. [\"systemctl\", \"restart\", \"ecs\"]",
        ));
    }
    let schedule = match &options.schedule {
        Some(s) => s.clone(),
        None => kind
            .default_schedule()
            .parse::<CronSchedule>()
            .map_err(|m| invalid(text, key(section, "schedule"), m))?,
    };
    Ok(Some(JobSettings {
        kind,
        expression: schedule.expression,
        schedule: schedule.schedule,
        jitter: options.jitter.map_or(Duration::ZERO, |d| d.0),
        apply: options.apply.unwrap_or(false),
        on_change,
        restart_ecs_on_change: kind == JobKind::RefreshAuth
            && options.restart_ecs_on_change.unwrap_or(true),
    }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn resolve(text: &str) -> Result<DaemonSettings, Invalid> {
        #[derive(Deserialize)]
        struct Doc {
            #[serde(default)]
            daemon: DaemonOptions,
            #[serde(default)]
            metrics: MetricsOptions,
        }
        let doc: Doc = toml::from_str(text).expect("parses");
        DaemonSettings::resolve(
            &doc.daemon,
            &doc.metrics,
            None,
            &FileText::new(Path::new("t.toml"), text),
        )
    }

    fn file_error(text: &str) -> String {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Doc {
            #[serde(default)]
            daemon: DaemonOptions,
            #[serde(default)]
            metrics: MetricsOptions,
        }
        toml::from_str::<Doc>(text).unwrap_err().to_string()
    }

    #[test]
    fn bad_schedules_are_refused_when_the_file_is_read() {
        let msg = file_error("[daemon.jobs.gc]\nschedule = \"every tuesday\"\n");
        assert!(msg.contains("has 2 fields"), "{msg}");
        let msg = file_error("[daemon.jobs.gc]\nschedule = \"61 * * * *\"\n");
        assert!(msg.contains("not a valid cron expression"), "{msg}");
        let msg = file_error("[daemon.jobs.gc]\nschedule = \"* * *\"\n");
        assert!(msg.contains("3 fields"), "{msg}");
    }

    #[test]
    fn defaults_schedule_gc_only() {
        let s = DaemonSettings::defaults();
        assert_eq!(s.jobs.len(), 1);
        let gc = s.job(JobKind::Gc).unwrap();
        assert_eq!(gc.expression, DEFAULT_GC_SCHEDULE);
        assert_eq!(gc.jitter, DEFAULT_GC_JITTER);
        assert_eq!(s.disk_check_interval, DEFAULT_DISK_CHECK_INTERVAL);
        assert_eq!(s.state, PathBuf::from("/var/lib/shipshape/state.json"));
        assert!(s.metrics_listen.is_none());
        assert!(s.high_water.is_none());
    }

    #[test]
    fn spec_example_validates() {
        let s = resolve(
            r#"
[daemon]
state = "/tmp/s.json"
disk_check_interval = "10s"
[daemon.jobs.gc]
schedule = "*/30 * * * *"
jitter = "2m"
[daemon.jobs.ecr_prune]
schedule = "0 3 * * *"
apply = true
[daemon.jobs.refresh_auth]
schedule = "0 * * * *"
on_change = ["systemctl", "restart", "ecs"]
[metrics]
listen = "127.0.0.1:9101"
"#,
        )
        .unwrap();
        assert_eq!(s.jobs.len(), 3);
        assert!(s.job(JobKind::EcrPrune).unwrap().apply);
        assert_eq!(
            s.job(JobKind::RefreshAuth).unwrap().on_change,
            vec!["systemctl", "restart", "ecs"]
        );
        assert_eq!(s.disk_check_interval, Duration::from_secs(10));
        assert_eq!(s.metrics_listen.unwrap().to_string(), "127.0.0.1:9101");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["jobs"]["gc"]["jitter"], "2m");
        assert_eq!(json["jobs"]["gc"]["schedule"], "*/30 * * * *");
        assert_eq!(json["jobs"]["ecr_prune"]["apply"], true);
        assert_eq!(json["metrics_listen"], "127.0.0.1:9101");
    }

    #[test]
    fn disabled_job_is_not_scheduled() {
        let s = resolve("[daemon.jobs.gc]\nenabled = false\n").unwrap();
        assert!(s.jobs.is_empty());
    }

    #[test]
    fn zero_interval_is_refused_naming_key_and_line() {
        let e = resolve("[daemon]\ndisk_check_interval = \"0s\"\n").unwrap_err();
        assert_eq!(e.key.file_form(), "daemon.disk_check_interval");
        assert_eq!(e.origin, Origin::File { line: Some(2) });
    }

    #[test]
    fn apply_only_on_ecr_prune() {
        let e = resolve("[daemon.jobs.gc]\napply = true\n").unwrap_err();
        assert_eq!(e.key.file_form(), "daemon.jobs.gc.apply");
    }

    #[test]
    fn empty_on_change_is_refused() {
        let e = resolve("[daemon.jobs.refresh_auth]\non_change = []\n").unwrap_err();
        assert_eq!(e.key.file_form(), "daemon.jobs.refresh_auth.on_change");
    }

    #[test]
    fn bad_jitter_and_listen_are_refused_when_the_file_is_read() {
        assert!(file_error("[daemon.jobs.gc]\njitter = \"soon\"\n").contains("soon"));
        assert!(file_error("[metrics]\nlisten = \"localhost\"\n").contains("localhost"));
    }

    #[test]
    fn bare_port_listens_on_loopback() {
        let addr = |t: &str| t.parse::<ListenAddr>().unwrap().0.to_string();
        assert_eq!(addr("9101"), "127.0.0.1:9101");
        assert_eq!(addr(":9101"), "127.0.0.1:9101");
        assert_eq!(addr("[::1]:9"), "[::1]:9");
    }
}
