//! systemd notification (`Type=notify`): `READY=1`, `STATUS=`, `WATCHDOG=1` at half
//! of `WATCHDOG_USEC`, `RELOADING=1` on SIGHUP and `STOPPING=1`, through `sd-notify`.
//!
//! Without `NOTIFY_SOCKET` every call is a no-op. `STATUS=` is composed from the
//! Docker connection state, the jobs running and a last-use state that cannot be
//! saved (until a save succeeds), and sent only when it changes.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use super::settings::JobKind;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

pub fn ready() {
    send(&[NotifyState::Ready]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Tell systemd a reload started (`Type=notify-reload` wants MONOTONIC_USEC with it).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// The watchdog interval systemd asked for, halved, if any.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

/// Ping the watchdog every `interval` until `stop`. Runs on the same runtime as the
/// jobs, so a wedged runtime stops the pings and systemd restarts the service.
pub async fn watchdog_loop(interval: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => send(&[NotifyState::Watchdog]),
        }
    }
}

/// Docker connection state as shown in `STATUS=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerState {
    Connecting,
    Connected,
    Unavailable { error: String, retry_in: Duration },
}

#[derive(Debug)]
struct Parts {
    docker: DockerState,
    running: BTreeSet<JobKind>,
    last_failure: Option<(JobKind, String)>,
    /// The last save of the last-use state failed with this error.
    unsaved: Option<String>,
    sent: String,
}

/// The pieces `STATUS=` is built from.
#[derive(Debug, Clone)]
pub struct StatusBoard {
    parts: Arc<Mutex<Parts>>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusBoard {
    pub fn new() -> Self {
        Self {
            parts: Arc::new(Mutex::new(Parts {
                docker: DockerState::Connecting,
                running: BTreeSet::new(),
                last_failure: None,
                unsaved: None,
                sent: String::new(),
            })),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Parts)) {
        let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut parts);
        let text = render(&parts);
        if text != parts.sent {
            parts.sent.clone_from(&text);
            drop(parts);
            send(&[NotifyState::Status(&text)]);
        }
    }

    pub fn docker(&self, state: DockerState) {
        self.update(|p| p.docker = state);
    }

    pub fn job_started(&self, kind: JobKind) {
        self.update(|p| {
            p.running.insert(kind);
        });
    }

    pub fn job_finished(&self, kind: JobKind, failure: Option<String>) {
        self.update(|p| {
            p.running.remove(&kind);
            match failure {
                Some(e) => p.last_failure = Some((kind, e)),
                None if p.last_failure.as_ref().is_some_and(|(k, _)| *k == kind) => {
                    p.last_failure = None;
                }
                None => {}
            }
        });
    }

    /// The outcome of a save of the last-use state: a failure stays in `STATUS=`
    /// until a later save succeeds.
    pub fn state_saved(&self, result: Result<(), String>) {
        self.update(|p| p.unsaved = result.err());
    }

    pub fn text(&self) -> String {
        render(&self.parts.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn render(p: &Parts) -> String {
    let docker = match &p.docker {
        DockerState::Connecting => "Docker: connecting".to_owned(),
        DockerState::Connected => "Docker: connected".to_owned(),
        DockerState::Unavailable { error, retry_in } => format!(
            "Docker unavailable ({error}); reconnecting in {}",
            crate::config::value::format_duration(Duration::from_secs(retry_in.as_secs().max(1)))
        ),
    };
    let jobs = if p.running.is_empty() {
        "idle".to_owned()
    } else {
        let names: Vec<&str> = p.running.iter().map(|k| k.name()).collect();
        format!("running {}", names.join(", "))
    };
    let mut text = format!("{docker}; {jobs}");
    if let Some((kind, e)) = &p.last_failure {
        text.push_str(&format!("; last {kind} failed: {e}"));
    }
    if let Some(e) = &p.unsaved {
        text.push_str(&format!("; last-use state not saved ({e}), retrying"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_docker_state_and_running_jobs() {
        let b = StatusBoard::new();
        assert_eq!(b.text(), "Docker: connecting; idle");
        b.docker(DockerState::Connected);
        b.job_started(JobKind::Gc);
        b.job_started(JobKind::RefreshAuth);
        assert_eq!(b.text(), "Docker: connected; running gc, refresh_auth");
        b.job_finished(JobKind::RefreshAuth, Some("AWS unreachable".into()));
        b.docker(DockerState::Unavailable {
            error: "connection refused".into(),
            retry_in: Duration::from_secs(4),
        });
        assert_eq!(
            b.text(),
            "Docker unavailable (connection refused); reconnecting in 4s; running gc; last refresh_auth failed: AWS unreachable"
        );
        b.job_finished(JobKind::RefreshAuth, None);
        b.job_finished(JobKind::Gc, None);
        assert!(b.text().ends_with("; idle"), "{}", b.text());
    }

    #[test]
    fn a_failed_state_save_stays_in_status_until_a_save_succeeds() {
        let b = StatusBoard::new();
        b.docker(DockerState::Connected);
        b.state_saved(Err("No space left on device".into()));
        assert_eq!(
            b.text(),
            "Docker: connected; idle; last-use state not saved (No space left on device), retrying"
        );
        b.job_started(JobKind::Gc);
        assert!(b.text().contains("not saved"), "{}", b.text());
        b.state_saved(Ok(()));
        assert_eq!(b.text(), "Docker: connected; running gc");
    }
}
