//! The external tools the packaging tests drive (systemd-analyze, rpm, dpkg, cfn-lint,
//! packer, shellcheck, cloud-init, objdump), found in the test venv, on PATH or in
//! `~/.cargo/bin`, and small file helpers for throwaway trees. A missing tool is a
//! failure, never a skip: `bash scripts/test.sh` installs them all.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bin::Output;
use crate::{target_dir, workspace_root};

/// `rel` inside the workspace (`systemd/`, `packaging/`, `userdata/`…).
pub fn repo(rel: &str) -> PathBuf {
    workspace_root().join(rel)
}

/// The file's text; panics naming the path.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Writes `text`, creating the parent directories; panics naming the path.
pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// A throwaway directory (`shipshape-packaging-*`), removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("shipshape-packaging-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"))
}

/// Path of a required tool; panics (never skips) with the install hint when absent.
pub fn tool(name: &str) -> PathBuf {
    let venv = target_dir().join("venv/bin").join(name);
    if venv.exists() {
        return venv;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    let cargo_bin = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cargo/bin").join(name))
        .filter(|p| p.exists());
    cargo_bin.unwrap_or_else(|| {
        panic!("{name} not found — run `bash scripts/test.sh`, which installs the packaging tools")
    })
}

/// A `Command` for the required tool `name` (see [`tool`]).
pub fn cmd(name: &str) -> Command {
    Command::new(tool(name))
}

/// Asserts that `what` exited 0, printing its output when not.
pub fn ok(out: &Output, what: &str) {
    assert_eq!(
        out.code, 0,
        "{what} failed (exit {}):\nstdout:\n{}\nstderr:\n{}",
        out.code, out.stdout, out.stderr
    );
}

/// Every `.rs` file below `dir`, sorted, with its path relative to `dir`.
pub fn rs_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(dir)
                    .expect("below dir")
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, path));
            }
        }
    }
    out.sort();
    out
}
