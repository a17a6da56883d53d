//! Shutdown signalling: one `CancellationToken` for the process, cancelled by
//! SIGTERM or SIGINT; long-running work `select!`s on it at every await that can block.

use tokio_util::sync::CancellationToken;

/// Cancel `token` on the first SIGTERM or SIGINT. Returns the listening task.
pub fn cancel_on_signals(token: CancellationToken) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
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
