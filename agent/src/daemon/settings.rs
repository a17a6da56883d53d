//! Stage two of the `[daemon]` and `[metrics]` config: typed, validated settings.
//!
//! Cron expressions are parsed here, at load time, so a bad one is a config error
//! naming its key (`daemon.jobs.gc.schedule`) instead of a job that never fires.
//! Five-field (classic crontab) expressions are converted to the `cron` crate's form.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::config::{RawConfig, RawDaemon, RawJob, RawMetrics};
use crate::units::{self, Watermark};

use super::DaemonError;

/// Defaults (SPEC.md, `daemon`).
pub const DEFAULT_DISK_CHECK_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(600);
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_GC_SCHEDULE: &str = "*/30 * * * *";
pub const DEFAULT_GC_JITTER: Duration = Duration::from_secs(120);
const DEFAULT_ECR_SCHEDULE: &str = "0 3 * * *";
const DEFAULT_REFRESH_SCHEDULE: &str = "0 * * * *";
/// Port used when `[metrics] listen` names only a port.
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
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One scheduled job, validated.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub kind: JobKind,
    /// The expression as written (for logs and `check`).
    pub expression: String,
    pub schedule: cron::Schedule,
    /// Each firing is delayed by a random amount in `0..=jitter`.
    pub jitter: Duration,
    /// `ecr_prune`: delete (true) or only plan.
    pub apply: bool,
    /// `refresh_auth`: argv run (without a shell) when ecs.config changed.
    pub on_change: Vec<String>,
}

/// Everything the daemon needs from the config, validated.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    pub state: PathBuf,
    pub disk_check_interval: Duration,
    pub reconcile_interval: Duration,
    pub shutdown_timeout: Duration,
    pub jobs: Vec<JobSettings>,
    pub metrics_listen: Option<SocketAddr>,
    /// From `[gc]`: disk-pressure GC runs above `high_water`, down to `low_water`.
    pub high_water: Option<Watermark>,
    pub low_water: Option<Watermark>,
}

impl DaemonSettings {
    pub fn job(&self, kind: JobKind) -> Option<&JobSettings> {
        self.jobs.iter().find(|j| j.kind == kind)
    }

    /// Validate the whole config the daemon runs with.
    pub fn from_raw(raw: &RawConfig) -> Result<Self, DaemonError> {
        let mut s = Self::from_sections(&raw.daemon, &raw.metrics)?;
        s.high_water = parse_watermark("gc.high_water", raw.gc.high_water.as_deref())?;
        s.low_water = parse_watermark("gc.low_water", raw.gc.low_water.as_deref())?;
        match (s.high_water, s.low_water) {
            (Some(_), None) => return Err(invalid("gc.low_water", "is required with high_water")),
            (None, Some(_)) => return Err(invalid("gc.high_water", "is required with low_water")),
            _ => {}
        }
        Ok(s)
    }

    /// Validate `[daemon]` and `[metrics]` alone.
    pub fn from_sections(daemon: &RawDaemon, metrics: &RawMetrics) -> Result<Self, DaemonError> {
        let state = daemon
            .state
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::last_use::DEFAULT_STATE_PATH));
        let disk_check_interval = positive_duration(
            "daemon.disk_check_interval",
            daemon.disk_check_interval.as_deref(),
            DEFAULT_DISK_CHECK_INTERVAL,
        )?;
        let reconcile_interval = positive_duration(
            "daemon.reconcile_interval",
            daemon.reconcile_interval.as_deref(),
            DEFAULT_RECONCILE_INTERVAL,
        )?;
        let shutdown_timeout = positive_duration(
            "daemon.shutdown_timeout",
            daemon.shutdown_timeout.as_deref(),
            DEFAULT_SHUTDOWN_TIMEOUT,
        )?;
        let mut jobs = Vec::new();
        // gc runs by default (every 30 minutes, up to 2 minutes late); the other two
        // need their table, since they need AWS and settings of their own.
        let default_gc = RawJob {
            schedule: Some(DEFAULT_GC_SCHEDULE.to_owned()),
            jitter: Some(units::format_duration(DEFAULT_GC_JITTER)),
            ..RawJob::default()
        };
        let table = [
            (JobKind::Gc, daemon.jobs.gc.as_ref().or(Some(&default_gc))),
            (JobKind::EcrPrune, daemon.jobs.ecr_prune.as_ref()),
            (JobKind::RefreshAuth, daemon.jobs.refresh_auth.as_ref()),
        ];
        for (kind, raw) in table {
            if let Some(raw) = raw {
                if let Some(job) = job_settings(kind, raw)? {
                    jobs.push(job);
                }
            }
        }
        let metrics_listen = match metrics.listen.as_deref() {
            None => None,
            Some(text) => Some(parse_listen(text)?),
        };
        Ok(Self {
            state,
            disk_check_interval,
            reconcile_interval,
            shutdown_timeout,
            jobs,
            metrics_listen,
            high_water: None,
            low_water: None,
        })
    }

    /// Effective settings as JSON, for `check`.
    pub fn to_json(&self) -> serde_json::Value {
        let jobs: serde_json::Map<String, serde_json::Value> = self
            .jobs
            .iter()
            .map(|j| {
                let mut v = serde_json::json!({
                    "schedule": j.expression,
                    "jitter": units::format_duration(j.jitter),
                });
                match j.kind {
                    JobKind::EcrPrune => v["apply"] = j.apply.into(),
                    JobKind::RefreshAuth => v["on_change"] = j.on_change.clone().into(),
                    JobKind::Gc => {}
                }
                (j.kind.name().to_owned(), v)
            })
            .collect();
        serde_json::json!({
            "state": self.state.display().to_string(),
            "disk_check_interval": units::format_duration(self.disk_check_interval),
            "reconcile_interval": units::format_duration(self.reconcile_interval),
            "shutdown_timeout": units::format_duration(self.shutdown_timeout),
            "jobs": jobs,
            "disk_pressure": self.high_water.map(|h| serde_json::json!({
                "high_water": h.to_string(),
                "low_water": self.low_water.map(|l| l.to_string()),
            })),
            "metrics": { "listen": self.metrics_listen.map(|a| a.to_string()) },
        })
    }
}

fn invalid(key: &str, message: impl Into<String>) -> DaemonError {
    DaemonError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

fn positive_duration(
    key: &str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, DaemonError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let d = units::parse_duration(text).map_err(|m| invalid(key, m))?;
    if d.is_zero() {
        return Err(invalid(key, "must be greater than zero"));
    }
    Ok(d)
}

fn parse_watermark(key: &str, text: Option<&str>) -> Result<Option<Watermark>, DaemonError> {
    text.map(|t| Watermark::parse(t).map_err(|m| invalid(key, m)))
        .transpose()
}

fn job_settings(kind: JobKind, raw: &RawJob) -> Result<Option<JobSettings>, DaemonError> {
    if raw.enabled == Some(false) {
        return Ok(None);
    }
    let prefix = format!("daemon.jobs.{}", kind.name());
    let default_schedule = match kind {
        JobKind::Gc => DEFAULT_GC_SCHEDULE,
        JobKind::EcrPrune => DEFAULT_ECR_SCHEDULE,
        JobKind::RefreshAuth => DEFAULT_REFRESH_SCHEDULE,
    };
    let expression = raw
        .schedule
        .clone()
        .unwrap_or_else(|| default_schedule.to_owned());
    let schedule =
        parse_schedule(&expression).map_err(|m| invalid(&format!("{prefix}.schedule"), m))?;
    let jitter = match raw.jitter.as_deref() {
        None => Duration::ZERO,
        Some(t) => units::parse_duration(t).map_err(|m| invalid(&format!("{prefix}.jitter"), m))?,
    };
    if raw.apply.is_some() && kind != JobKind::EcrPrune {
        return Err(invalid(
            &format!("{prefix}.apply"),
            "only daemon.jobs.ecr_prune takes `apply`",
        ));
    }
    if raw.on_change.is_some() && kind != JobKind::RefreshAuth {
        return Err(invalid(
            &format!("{prefix}.on_change"),
            "only daemon.jobs.refresh_auth takes `on_change`",
        ));
    }
    let on_change = raw.on_change.clone().unwrap_or_default();
    if raw.on_change.is_some() && on_change.first().is_none_or(|p| p.trim().is_empty()) {
        return Err(invalid(
            &format!("{prefix}.on_change"),
            "must name a program, e.g. [\"systemctl\", \"restart\", \"ecs\"]",
        ));
    }
    Ok(Some(JobSettings {
        kind,
        expression,
        schedule,
        jitter,
        apply: raw.apply.unwrap_or(false),
        on_change,
    }))
}

/// Parse a cron expression: 5 fields (minute hour day month weekday, as crontab),
/// or 6/7 fields with seconds first (and a year last), as the `cron` crate reads them.
pub fn parse_schedule(expression: &str) -> Result<cron::Schedule, String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let normalized = match fields.len() {
        5 => crontab_to_cron(&fields)?,
        6 | 7 => fields.join(" "),
        n => {
            return Err(format!(
                "{expression:?} has {n} fields; use 5 (\"*/30 * * * *\") or 6-7 with seconds first"
            ))
        }
    };
    cron::Schedule::from_str(&normalized).map_err(|e| {
        // The crate's message draws a caret under the expression over several lines;
        // keep its last line, the reason, so the error stays one line.
        let text = e.to_string();
        let reason = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.chars().all(|c| c == '^'))
            .unwrap_or("unparsable")
            .to_owned();
        format!("{expression:?} is not a valid cron expression: {reason}")
    })
}

/// Convert a 5-field crontab expression to the `cron` crate's 6-field form: prepend a
/// seconds field of `0` and renumber weekdays (crontab: 0 or 7 = Sunday … 6 = Saturday;
/// the `cron` crate: 1 = Sunday … 7 = Saturday).
fn crontab_to_cron(fields: &[&str]) -> Result<String, String> {
    let dow = fields[4]
        .split(',')
        .map(crontab_weekday_item)
        .collect::<Result<Vec<_>, _>>()?
        .join(",");
    Ok(format!(
        "0 {} {} {} {} {dow}",
        fields[0], fields[1], fields[2], fields[3]
    ))
}

fn crontab_weekday_item(item: &str) -> Result<String, String> {
    let (base, step) = match item.split_once('/') {
        Some((b, s)) => (b, Some(s)),
        None => (item, None),
    };
    let suffix = step.map(|s| format!("/{s}")).unwrap_or_default();
    let number = |t: &str| -> Result<Option<u8>, String> {
        if t.chars().all(|c| c.is_ascii_digit()) && !t.is_empty() {
            let n: u8 = t
                .parse()
                .map_err(|_| format!("weekday {t:?} is out of range 0-7"))?;
            if n > 7 {
                return Err(format!("weekday {t} is out of range 0-7"));
            }
            Ok(Some(n))
        } else {
            Ok(None) // a name (`mon`) or `*`/`?`: same meaning in both dialects
        }
    };
    let shift = |n: u8| n % 7 + 1;
    match base.split_once('-') {
        Some((a, b)) => match (number(a)?, number(b)?) {
            (Some(a), Some(7)) if a > 0 && step.is_none() => {
                // `5-7` (Friday to Sunday) wraps in the crate's numbering.
                Ok(format!("{}-7,1", shift(a)))
            }
            (Some(a), Some(b)) if (b == 7 && a > 0) => Err(format!(
                "weekday range {item:?} with a step wraps past Saturday; write it as a list"
            )),
            (Some(a), Some(b)) => Ok(format!("{}-{}{suffix}", shift(a), shift(b))),
            (None, None) => Ok(item.to_owned()),
            _ => Err(format!(
                "weekday range {item:?} mixes names and numbers; use one or the other"
            )),
        },
        None => match number(base)? {
            Some(n) => Ok(format!("{}{suffix}", shift(n))),
            None => Ok(item.to_owned()),
        },
    }
}

/// `127.0.0.1:9101`, `[::1]:9101`, or a bare port (loopback).
fn parse_listen(text: &str) -> Result<SocketAddr, DaemonError> {
    let t = text.trim();
    if let Ok(port) = t.trim_start_matches(':').parse::<u16>() {
        return Ok(SocketAddr::new(LOOPBACK, port));
    }
    t.parse::<SocketAddr>().map_err(|_| {
        invalid(
            "metrics.listen",
            format!("{t:?} is not an address; use e.g. \"127.0.0.1:9101\" or a port"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};

    fn raw(text: &str) -> RawConfig {
        crate::config::parse(text, std::path::Path::new("t.toml")).unwrap()
    }

    fn next(expr: &str, after: DateTime<Utc>) -> DateTime<Utc> {
        parse_schedule(expr).unwrap().after(&after).next().unwrap()
    }

    #[test]
    fn five_field_expression_gets_seconds_prepended() {
        let t = Utc.with_ymd_and_hms(2026, 3, 2, 10, 7, 13).unwrap();
        assert_eq!(
            next("*/30 * * * *", t),
            Utc.with_ymd_and_hms(2026, 3, 2, 10, 30, 0).unwrap()
        );
        assert_eq!(
            next("0 3 * * *", t),
            Utc.with_ymd_and_hms(2026, 3, 3, 3, 0, 0).unwrap()
        );
    }

    #[test]
    fn six_and_seven_field_expressions_are_taken_as_is() {
        let t = Utc.with_ymd_and_hms(2026, 3, 2, 10, 7, 13).unwrap();
        assert_eq!(
            next("*/20 * * * * *", t),
            Utc.with_ymd_and_hms(2026, 3, 2, 10, 7, 20).unwrap()
        );
        assert_eq!(
            next("0 0 12 * * * 2027", t),
            Utc.with_ymd_and_hms(2027, 1, 1, 12, 0, 0).unwrap()
        );
    }

    #[test]
    fn crontab_weekdays_are_renumbered() {
        // 2026-03-02 is a Monday.
        let monday = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
        let sunday = Utc.with_ymd_and_hms(2026, 3, 8, 4, 0, 0).unwrap();
        assert_eq!(next("0 4 * * 0", monday), sunday);
        assert_eq!(next("0 4 * * 7", monday), sunday);
        assert_eq!(next("0 4 * * sun", monday), sunday);
        assert_eq!(
            next("0 4 * * 1-5", monday),
            Utc.with_ymd_and_hms(2026, 3, 2, 4, 0, 0).unwrap()
        );
        // Friday to Sunday wraps.
        let saturday = Utc.with_ymd_and_hms(2026, 3, 7, 0, 0, 0).unwrap();
        assert_eq!(
            next("0 4 * * 5-7", saturday),
            Utc.with_ymd_and_hms(2026, 3, 7, 4, 0, 0).unwrap()
        );
        assert_eq!(next("0 4 * * 5-7", sunday), {
            // after Sunday 04:00 the next is Friday.
            Utc.with_ymd_and_hms(2026, 3, 13, 4, 0, 0).unwrap()
        });
        assert_eq!(
            crontab_to_cron(&["0", "0", "*", "*", "1,3"]).unwrap(),
            "0 0 0 * * 2,4"
        );
        assert_eq!(
            crontab_to_cron(&["0", "0", "*", "*", "*/2"]).unwrap(),
            "0 0 0 * * */2"
        );
    }

    #[test]
    fn bad_schedule_names_the_key() {
        let err =
            DaemonSettings::from_raw(&raw("[daemon.jobs.gc]\nschedule = \"every tuesday\"\n"))
                .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("daemon.jobs.gc.schedule"), "{msg}");
        assert_eq!(err.exit_code(), crate::error::EXIT_USAGE);
        let msg =
            DaemonSettings::from_raw(&raw("[daemon.jobs.ecr_prune]\nschedule = \"61 * * * *\"\n"))
                .unwrap_err()
                .to_string();
        assert!(msg.contains("daemon.jobs.ecr_prune.schedule"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
        assert!(msg.contains("Minutes"), "{msg}");
        let msg = DaemonSettings::from_raw(&raw("[daemon.jobs.gc]\nschedule = \"* * *\"\n"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("3 fields"), "{msg}");
    }

    #[test]
    fn defaults_schedule_gc_only() {
        let s = DaemonSettings::from_raw(&RawConfig::default()).unwrap();
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
        let s = DaemonSettings::from_raw(&raw(r#"
[gc]
high_water = "85%"
low_water = "75%"
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
"#))
        .unwrap();
        assert_eq!(s.jobs.len(), 3);
        assert!(s.job(JobKind::EcrPrune).unwrap().apply);
        assert_eq!(
            s.job(JobKind::RefreshAuth).unwrap().on_change,
            vec!["systemctl", "restart", "ecs"]
        );
        assert_eq!(s.disk_check_interval, Duration::from_secs(10));
        assert_eq!(s.high_water, Some(Watermark::Percent(85.0)));
        assert_eq!(s.metrics_listen.unwrap().to_string(), "127.0.0.1:9101");
        let json = s.to_json();
        assert_eq!(json["jobs"]["gc"]["jitter"], "2m");
        assert_eq!(json["jobs"]["ecr_prune"]["apply"], true);
    }

    #[test]
    fn disabled_job_is_not_scheduled() {
        let s = DaemonSettings::from_raw(&raw("[daemon.jobs.gc]\nenabled = false\n")).unwrap();
        assert!(s.jobs.is_empty());
    }

    #[test]
    fn bad_values_name_their_keys() {
        let cases = [
            (
                "[daemon.jobs.gc]\njitter = \"soon\"\n",
                "daemon.jobs.gc.jitter",
            ),
            (
                "[daemon]\ndisk_check_interval = \"0s\"\n",
                "daemon.disk_check_interval",
            ),
            ("[metrics]\nlisten = \"localhost\"\n", "metrics.listen"),
            ("[daemon.jobs.gc]\napply = true\n", "daemon.jobs.gc.apply"),
            (
                "[daemon.jobs.refresh_auth]\non_change = []\n",
                "daemon.jobs.refresh_auth.on_change",
            ),
            ("[gc]\nhigh_water = \"85%\"\n", "gc.low_water"),
            (
                "[gc]\nhigh_water = \"lots\"\nlow_water = \"1%\"\n",
                "gc.high_water",
            ),
        ];
        for (text, key) in cases {
            let msg = DaemonSettings::from_raw(&raw(text))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(key), "{text}: {msg}");
        }
    }

    #[test]
    fn bare_port_listens_on_loopback() {
        assert_eq!(parse_listen("9101").unwrap().to_string(), "127.0.0.1:9101");
        assert_eq!(parse_listen(":9101").unwrap().to_string(), "127.0.0.1:9101");
        assert_eq!(parse_listen("[::1]:9").unwrap().to_string(), "[::1]:9");
    }
}
