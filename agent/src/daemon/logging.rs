//! Daemon logging: to journald with structured fields when systemd attached stderr
//! to the journal (`JOURNAL_STREAM` matches stderr), else text or JSON on stderr.
//!
//! The journal side is a small tracing layer handing each event, with its fields
//! (`job` → `JOB`, `image_id` → `IMAGE_ID`…), to systemd-journal-logger.

use std::fmt::Write as _;

use log::kv::{Error as KvError, Key, Source, Value, VisitSource};
use systemd_journal_logger::JournalLog;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::cli::{LogFormat, LogLevel};

/// Set up logging for the daemon; returns where logs go, for the first log line.
pub fn init(level: LogLevel, format: LogFormat) -> Result<&'static str, String> {
    if systemd_journal_logger::connected_to_journal() {
        let journal = JournalLog::new()
            .map_err(|e| format!("cannot open the journal socket: {e}"))?
            .with_syslog_identifier("shipshape".to_owned());
        tracing_subscriber::registry()
            .with(crate::telemetry::env_filter(level)?)
            .with(JournalLayer { journal })
            .try_init()
            .map_err(|e| e.to_string())?;
        Ok("journald")
    } else {
        crate::telemetry::init_stderr(level, format)?;
        Ok("stderr")
    }
}

/// Forwards tracing events to the journal.
pub struct JournalLayer {
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

fn log_level(l: Level) -> log::Level {
    match l {
        Level::ERROR => log::Level::Error,
        Level::WARN => log::Level::Warn,
        Level::INFO => log::Level::Info,
        Level::DEBUG => log::Level::Debug,
        Level::TRACE => log::Level::Trace,
    }
}

/// An event's message and its other fields as strings.
#[derive(Debug, Default)]
pub struct Fields {
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
}
