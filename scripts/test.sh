#!/usr/bin/env bash
# The one test command of shipshape: installs the test tools (moto in target/venv, dockerd,
# busybox-static), then runs fmt, clippy, build and the whole test suite.
# Extra arguments are passed to `cargo test`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
VENV="$ROOT/target/venv"

section() { printf '\n==== %s ====\n' "$*"; }
fatal() { printf 'scripts/test.sh: %s\n' "$*" >&2; exit 1; }

section "test tools"
if [[ ! -x "$VENV/bin/moto_server" ]]; then
    echo "installing moto[server] and awscli into $VENV"
    mkdir -p "$ROOT/target"
    [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV" || fatal "python3 -m venv failed (apt-get install -y python3-venv)"
    "$VENV/bin/pip" install --quiet 'moto[server]' awscli || fatal "pip install moto[server] awscli failed"
fi
[[ -x "$VENV/bin/moto_server" ]] || fatal "moto_server missing in $VENV after install"
echo "moto_server: $VENV/bin/moto_server"

APT_UPDATED=0
apt_install() {
    if [[ $APT_UPDATED -eq 0 ]]; then
        apt-get update || fatal "apt-get update failed"
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" || fatal "apt-get install $* failed"
}
if ! command -v dockerd >/dev/null 2>&1; then
    echo "installing docker.io (dockerd)"
    apt_install docker.io
fi
command -v dockerd >/dev/null 2>&1 || fatal "dockerd not found after install"
if [[ ! -x /bin/busybox ]]; then
    echo "installing busybox-static"
    apt_install busybox-static
fi
[[ -x /bin/busybox ]] || fatal "/bin/busybox not found after install"
echo "dockerd: $(command -v dockerd)"
echo "busybox: /bin/busybox"

export SHIPSHAPE_MOTO_SERVER="$VENV/bin/moto_server"
export PATH="$VENV/bin:$PATH"

section "cargo fmt --check"
cargo fmt --all -- --check

section "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

section "cargo build"
cargo build --workspace --bins

section "cargo test"
cargo test --workspace "$@"

section "all tests passed"
