//! Logging set-up for every command: text or JSON on stderr, or — for the daemon,
//! when systemd attached stderr to the journal — journald with structured fields.
//! Dependencies log at `warn` at most unless `RUST_LOG` says otherwise, so that
//! `--log-level trace` shows our reasoning, never SDK wire dumps.

use std::fmt::Write as _;

use log::kv::{Error as KvError, Key, Source, Value, VisitSource};
use systemd_journal_logger::JournalLog;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// `--log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// `--log-format` (on stderr; journald has its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where a command may log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// Always stderr (one-shot commands: their stderr is the caller's).
    Stderr,
    /// The journal when `JOURNAL_STREAM` says stderr is attached to it, else stderr
    /// (the daemon under systemd).
    JournalWhenAttached,
}

/// Where logs went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSink {
    Stderr,
    Journald,
}

impl LogSink {
    pub fn name(self) -> &'static str {
        match self {
            Self::Stderr => "stderr",
            Self::Journald => "journald",
        }
    }
}

impl std::fmt::Display for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Failures of the logging set-up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid RUST_LOG: {0}; unset it or use e.g. RUST_LOG=shipshape=debug")]
    Filter(String),
    #[error("cannot open the journal socket: {0}")]
    Journal(std::io::Error),
    #[error("{0}")]
    Install(String),
}

/// Directive string for our crate at `level`, everything else at `warn`.
pub(crate) fn filter_directives(level: LogLevel) -> String {
    let lvl = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    };
    format!("warn,shipshape={lvl}")
}

/// `RUST_LOG` when set, else [`filter_directives`] for `level`.
pub(crate) fn env_filter(level: LogLevel) -> Result<EnvFilter, TelemetryError> {
    match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(v).map_err(|e| TelemetryError::Filter(e.to_string()))
        }
        _ => Ok(EnvFilter::new(filter_directives(level))),
    }
}

/// Install the global subscriber for `target`; returns where logs go.
pub fn init(
    level: LogLevel,
    format: LogFormat,
    target: LogTarget,
) -> Result<LogSink, TelemetryError> {
    if target == LogTarget::JournalWhenAttached && systemd_journal_logger::connected_to_journal() {
        init_journal(level)?;
        Ok(LogSink::Journald)
    } else {
        init_stderr(level, format)?;
        Ok(LogSink::Stderr)
    }
}

/// Install the global subscriber writing to stderr.
fn init_stderr(level: LogLevel, format: LogFormat) -> Result<(), TelemetryError> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter(level)?)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| TelemetryError::Install(e.to_string()))
}

fn init_journal(level: LogLevel) -> Result<(), TelemetryError> {
    let journal = JournalLog::new()
        .map_err(TelemetryError::Journal)?
        .with_syslog_identifier("shipshape".to_owned());
    tracing_subscriber::registry()
        .with(env_filter(level)?)
        .with(JournalLayer { journal })
        .try_init()
        .map_err(|e| TelemetryError::Install(e.to_string()))
}

/// Forwards tracing events to the journal, each field as a journal field
/// (`job` → `JOB`, `image_id` → `IMAGE_ID`…) through systemd-journal-logger.
pub(crate) struct JournalLayer {
    journal: JournalLog,
}

impl<S: Subscriber> Layer<S> for JournalLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let result = self.journal.journal_send(
            &log::Record::builder()
                .level(log_level(*meta.level()))
                .target(meta.target())
                .module_path(meta.module_path())
                .file(meta.file())
                .line(meta.line())
                .key_values(&fields)
                .args(format_args!("{}", fields.message))
                .build(),
        );
        // Nowhere better to report a journal failure than stderr, itself the journal.
        if let Err(e) = result {
            eprintln!("shipshape: cannot write to the journal: {e}");
        }
    }
}

/// The `log` level whose journal PRIORITY is syslog's for `l`: error 3, warning 4,
/// info 6, debug 7. systemd-journal-logger writes Info as 5 (notice) and Debug as 6, so
/// info and debug are shifted down one `log` level (`journalctl -p info` then shows info,
/// `-p warning` errors and warnings, and debug stays out of both).
fn log_level(l: Level) -> log::Level {
    match l {
        Level::ERROR => log::Level::Error,
        Level::WARN => log::Level::Warn,
        Level::INFO => log::Level::Debug,
        Level::DEBUG | Level::TRACE => log::Level::Trace,
    }
}

/// An event's message and its other fields as strings.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    pub message: String,
    pub pairs: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.pairs.push((field.name().to_owned(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        if field.name() == "message" {
            self.message.push_str(&text);
        } else {
            self.pairs.push((field.name().to_owned(), text));
        }
    }
}

impl Source for Fields {
    fn visit<'kvs>(&'kvs self, visitor: &mut dyn VisitSource<'kvs>) -> Result<(), KvError> {
        for (k, v) in &self.pairs {
            visitor.visit_pair(Key::from_str(k), Value::from(v.as_str()))?;
        }
        Ok(())
    }

    fn count(&self) -> usize {
        self.pairs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Captures what the journal layer would send.
    struct Capture(Arc<Mutex<Vec<Fields>>>);

    impl<S: Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let mut f = Fields::default();
            event.record(&mut f);
            self.0.lock().unwrap().push(f);
        }
    }

    #[test]
    fn event_fields_become_journal_fields() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Capture(Arc::clone(&seen)));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(job = "gc", image_id = %"sha256:ab", count = 3, "job finished");
        });
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].message, "job finished");
        assert_eq!(
            seen[0].pairs,
            vec![
                ("job".to_owned(), "gc".to_owned()),
                ("image_id".to_owned(), "sha256:ab".to_owned()),
                ("count".to_owned(), "3".to_owned())
            ]
        );
        // And they are a log kv source the journal logger can read.
        let mut keys = Vec::new();
        struct K<'a>(&'a mut Vec<String>);
        impl<'kvs> VisitSource<'kvs> for K<'_> {
            fn visit_pair(&mut self, key: Key<'kvs>, _v: Value<'kvs>) -> Result<(), KvError> {
                self.0.push(key.as_str().to_owned());
                Ok(())
            }
        }
        seen[0].visit(&mut K(&mut keys)).unwrap();
        assert_eq!(keys, ["job", "image_id", "count"]);
    }

    #[test]
    fn journal_priorities_are_syslogs_3_4_6_7() {
        // systemd-journal-logger's fixed table: Error 3, Warn 4, Info 5, Debug 6, Trace 7.
        let priority = |l| match log_level(l) {
            log::Level::Error => 3,
            log::Level::Warn => 4,
            log::Level::Info => 5,
            log::Level::Debug => 6,
            log::Level::Trace => 7,
        };
        assert_eq!(
            [Level::ERROR, Level::WARN, Level::INFO, Level::DEBUG].map(priority),
            [3, 4, 6, 7]
        );
    }

    #[test]
    fn our_crate_follows_the_level_and_dependencies_stay_at_warn() {
        assert_eq!(filter_directives(LogLevel::Debug), "warn,shipshape=debug");
        assert_eq!(filter_directives(LogLevel::Error), "warn,shipshape=error");
    }
}
