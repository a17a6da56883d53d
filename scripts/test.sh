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
# A real registry with htpasswd (bcrypt) auth for the credential tests.
if ! command -v docker-registry >/dev/null 2>&1 || ! command -v htpasswd >/dev/null 2>&1; then
    echo "installing docker-registry apache2-utils"
    apt_install docker-registry apache2-utils
fi
command -v docker-registry >/dev/null 2>&1 || fatal "docker-registry not found after install"
echo "dockerd: $(command -v dockerd)"
echo "busybox: /bin/busybox"

# ---- packaging prerequisites (tests/tests/packaging/) --------------------------------
# Debian packages: systemd-analyze (verify/security of the units), shellcheck and
# cloud-init (user data), rpm (rpm -qpl), packer (template validation), dpkg-deb,
# objdump (glibc symbol versions of the binary), debootstrap (the Debian root filesystem
# the live-systemd test boots with systemd as PID 1 on this machine's Docker engine; cached
# in target/systemd-rootfs), docker (that engine's CLI).
# PyPI: cfn-lint in the venv. crates.io: cargo-deb and cargo-generate-rpm, only if missing.
section "packaging tools"
pkg_missing=()
for pair in systemd-analyze:systemd shellcheck:shellcheck cloud-init:cloud-init rpm:rpm \
    packer:packer dpkg-deb:dpkg objdump:binutils debootstrap:debootstrap docker:docker.io; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || pkg_missing+=("${pair#*:}")
done
if [[ ${#pkg_missing[@]} -gt 0 ]]; then
    echo "installing ${pkg_missing[*]}"
    apt_install "${pkg_missing[@]}"
fi
for tool in systemd-analyze shellcheck cloud-init rpm packer dpkg-deb objdump debootstrap docker; do
    command -v "$tool" >/dev/null 2>&1 || fatal "$tool not found after install"
done
if [[ ! -x "$VENV/bin/cfn-lint" ]]; then
    echo "installing cfn-lint into $VENV"
    "$VENV/bin/pip" install --quiet cfn-lint || fatal "pip install cfn-lint failed"
fi
for tool in cargo-deb cargo-generate-rpm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "installing $tool (cargo install --locked)"
        cargo install --locked "$tool" || fatal "cargo install $tool failed"
    fi
done
echo "systemd $(systemd-analyze --version | head -n1 | cut -d' ' -f2), $(shellcheck --version | sed -n 2p), cloud-init $(cloud-init --version 2>&1 | cut -d' ' -f2), $(rpm --version), packer $(packer version | head -n1), $("$VENV/bin/cfn-lint" --version), $(cargo deb --version), $(cargo generate-rpm --version)"
env -u DOCKER_HOST docker info >/dev/null 2>&1 ||
    fatal "the machine's Docker engine does not answer \`docker info\` (tests/tests/packaging/live_systemd.rs boots systemd in a container on it); start dockerd"
# ---- end of packaging prerequisites ---------------------------------------------------

export SHIPSHAPE_MOTO_SERVER="$VENV/bin/moto_server"
export PATH="$VENV/bin:$PATH"

section "cargo fmt --check"
cargo fmt --all -- --check

section "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

section "cargo build"
# The tests run the built binary, so build it first — with --tests, so dev-dependency
# features (tokio's test-util) are unified as in `cargo test` below: the dependencies are
# compiled once and `cargo test` reuses them instead of rebuilding the tokio/AWS/bollard
# graph a second time with other features.
cargo build --workspace --bins --tests

section "cargo test"
cargo test --workspace "$@"

section "all tests passed"
