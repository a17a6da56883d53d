//! `refresh_auth`'s `on_change` command: run without a shell, with an empty
//! environment but PATH, so no credential the daemon holds can reach it; killed
//! after `ON_CHANGE_TIMEOUT` or at shutdown.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long `on_change` may run before it is killed.
const ON_CHANGE_TIMEOUT: Duration = Duration::from_secs(300);
/// PATH given to `on_change` when the daemon itself has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Failures of the `on_change` command.
#[derive(Debug, thiserror::Error)]
pub enum OnChangeError {
    #[error("on_change is empty")]
    Empty,
    #[error("cannot start on_change command {program:?}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("on_change command {program:?} interrupted by shutdown")]
    Interrupted { program: String },
    #[error("on_change command {program:?} did not finish within {}s and was killed", .timeout.as_secs())]
    Timeout { program: String, timeout: Duration },
    #[error("on_change command {program:?} failed: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
    #[error("on_change command {program:?} exited with {status}{}", last_line(.stderr_tail))]
    Exit {
        program: String,
        status: std::process::ExitStatus,
        /// The last line of its stderr, trimmed (empty when it said nothing).
        stderr_tail: String,
    },
}

fn last_line(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    }
}

/// Run `argv` without a shell and with only PATH in its environment.
pub async fn run_on_change(
    argv: &[String],
    cancel: CancellationToken,
) -> Result<(), OnChangeError> {
    let (program, args) = argv.split_first().ok_or(OnChangeError::Empty)?;
    let path = std::env::var_os("PATH")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_PATH.into());
    let child = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", path)
        .current_dir(PathBuf::from("/"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| OnChangeError::Spawn {
            program: program.clone(),
            source,
        })?;
    let output = tokio::select! {
        () = cancel.cancelled() => return Err(OnChangeError::Interrupted { program: program.clone() }),
        r = tokio::time::timeout(ON_CHANGE_TIMEOUT, child.wait_with_output()) => match r {
            Err(_) => return Err(OnChangeError::Timeout { program: program.clone(), timeout: ON_CHANGE_TIMEOUT }),
            Ok(Err(source)) => return Err(OnChangeError::Wait { program: program.clone(), source }),
            Ok(Ok(o)) => o,
        },
    };
    if output.status.success() {
        tracing::info!(command = %program, "on_change command succeeded");
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(OnChangeError::Exit {
            program: program.clone(),
            status: output.status,
            stderr_tail: stderr.lines().last().unwrap_or("").trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn on_change_gets_no_environment_but_path_and_no_shell() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env.txt");
        // `sh -c` here is the test's own probe; the daemon passes argv verbatim.
        let argv: Vec<String> = vec!["sh".into(), "-c".into(), format!("env > {}", out.display())];
        std::env::set_var("SHIPSHAPE_TEST_CANARY", "secret-canary-value");
        run_on_change(&argv, CancellationToken::new())
            .await
            .unwrap();
        let env = std::fs::read_to_string(&out).unwrap();
        assert!(!env.contains("secret-canary-value"), "{env}");
        let names: Vec<&str> = env
            .lines()
            .filter_map(|l| l.split('=').next())
            .filter(|n| !["PWD", "SHLVL", "_", "OLDPWD"].contains(n))
            .collect();
        assert_eq!(names, ["PATH"], "{env}");
    }

    #[tokio::test]
    async fn on_change_argv_is_not_interpreted_by_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        let argv: Vec<String> = vec!["echo".into(), format!("; touch {}", marker.display())];
        run_on_change(&argv, CancellationToken::new())
            .await
            .unwrap();
        assert!(!marker.exists());
    }

    #[tokio::test]
    async fn failing_on_change_reports_status_and_stderr() {
        let argv: Vec<String> = vec!["sh".into(), "-c".into(), "echo boom >&2; exit 3".into()];
        let err = run_on_change(&argv, CancellationToken::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("boom"), "{err}");
        let err = run_on_change(&["/nonexistent/cmd".into()], CancellationToken::new())
            .await
            .unwrap_err();
        assert!(matches!(err, OnChangeError::Spawn { .. }), "{err}");
        assert!(err.to_string().contains("cannot start"), "{err}");
    }
}
