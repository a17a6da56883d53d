//! Process signals, turned into what long-running work listens to: SIGTERM or SIGINT
//! cancel one `CancellationToken` (work `select!`s on it at every await that can
//! block); SIGHUP becomes a request on a channel (the daemon reloads its config).
//!
//! Install them only for commands that honour them: a handler replaces the default
//! action, so a command ignoring the token would no longer die on SIGTERM.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the signals ask for.
#[derive(Debug)]
pub struct Signals {
    /// Cancelled on the first SIGTERM or SIGINT.
    pub shutdown: CancellationToken,
    /// One `()` per SIGHUP; SIGHUPs arriving while one is pending are merged.
    pub reloads: mpsc::Receiver<()>,
}

/// Install the SIGTERM, SIGINT and SIGHUP handlers (inside a tokio runtime).
pub fn install() -> std::io::Result<Signals> {
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone())?;
    let reloads = reload_requests(shutdown.clone())?;
    Ok(Signals { shutdown, reloads })
}

/// Cancel `token` on the first SIGTERM or SIGINT. Returns the listening task.
pub fn cancel_on_signals(token: CancellationToken) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
            _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
        }
        token.cancel();
    }))
}

/// A request on the returned channel for every SIGHUP, until `stop`.
pub fn reload_requests(stop: CancellationToken) -> std::io::Result<mpsc::Receiver<()>> {
    let mut hangup = signal(SignalKind::hangup())?;
    // Capacity 1: a reload already pending covers any SIGHUP that follows it.
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                got = hangup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    tracing::debug!(signal = "SIGHUP", "reload requested");
                    let _ = tx.try_send(());
                }
            }
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use nix::sys::signal::{raise, Signal};

    #[tokio::test]
    async fn sighup_becomes_a_reload_request_and_bursts_merge() {
        let stop = CancellationToken::new();
        let mut reloads = reload_requests(stop.clone()).unwrap();
        raise(Signal::SIGHUP).unwrap();
        tokio::time::timeout(Duration::from_secs(5), reloads.recv())
            .await
            .expect("a reload request")
            .expect("channel open");
        // Three while nobody reloads: one request waits, the others merge into it.
        for _ in 0..3 {
            raise(Signal::SIGHUP).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut pending = 0;
        while reloads.try_recv().is_ok() {
            pending += 1;
        }
        assert_eq!(pending, 1);
        stop.cancel();
        let closed = tokio::time::timeout(Duration::from_secs(5), reloads.recv())
            .await
            .expect("stop closes the channel");
        assert!(closed.is_none());
    }

    #[tokio::test]
    async fn sigint_cancels_the_token() {
        let token = CancellationToken::new();
        let task = cancel_on_signals(token.clone()).unwrap();
        raise(Signal::SIGINT).unwrap();
        tokio::time::timeout(Duration::from_secs(5), token.cancelled())
            .await
            .expect("cancelled by SIGINT");
        task.await.unwrap();
    }
}
