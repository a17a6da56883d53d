//! Locates the built `shipshape` binary (`<target>/debug/shipshape`) and runs it with a
//! clean environment, so tests see only the variables they set themselves.

use std::path::PathBuf;
use std::process::Command;

/// Path of the built binary: next to the test executable's `deps/` directory, falling back
/// to `<CARGO_TARGET_DIR or workspace/target>/debug/shipshape`.
pub fn shipshape_path() -> PathBuf {
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        // Test executables live in <target>/<profile>/deps/.
        let deps = exe.parent()?;
        let profile = if deps.ends_with("deps") {
            deps.parent()?
        } else {
            deps
        };
        Some(profile.join("shipshape"))
    });
    match from_exe {
        Some(p) if p.exists() => p,
        _ => crate::target_dir().join("debug/shipshape"),
    }
}

/// A `Command` for the built binary: environment cleared except PATH/HOME/LANG, with
/// `RUST_BACKTRACE=0`. Panics when the binary has not been built.
pub fn shipshape() -> Command {
    let path = shipshape_path();
    if !path.exists() {
        panic!(
            "shipshape binary not found at {} — run `cargo build -p shipshape` first",
            path.display()
        );
    }
    let mut cmd = Command::new(path);
    cmd.env_clear();
    for key in ["PATH", "HOME", "LANG"] {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    cmd.env("RUST_BACKTRACE", "0");
    cmd
}

/// What a finished process printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code; -1 when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion (stdin closed) and captures its exit code and output.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs the binary with `args` plus extra `env` pairs (e.g. `Moto::env()`).
pub fn run_shipshape<I, S>(args: I, env: &[(String, String)]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = shipshape();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}
