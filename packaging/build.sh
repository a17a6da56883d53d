#!/usr/bin/env bash
# Build the shipshape RPM (cargo-generate-rpm) and DEB (cargo-deb) from one build.
#
#   packaging/build.sh [--profile release|dev] [--out DIR] [--no-build]
#
# Default: release profile, packages in target/packages/. The tests use
# `--profile dev --no-build` to package the debug binary scripts/test.sh already built.
# Needs: cargo-deb and cargo-generate-rpm (`cargo install --locked cargo-deb cargo-generate-rpm`).
set -euo pipefail

profile=release
out=""
build=1
while [ $# -gt 0 ]; do
    case "$1" in
    --profile) profile="${2:?--profile needs a value}"; shift 2 ;;
    --out) out="${2:?--out needs a value}"; shift 2 ;;
    --no-build) build=0; shift ;;
    -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
out="${out:-$repo/target/packages}"
mkdir -p "$out"

for tool in cargo-deb cargo-generate-rpm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "build.sh: $tool not found; install it with: cargo install --locked $tool" >&2
        exit 1
    fi
done

if [ "$build" -eq 1 ]; then
    cargo build --locked -p shipshape --profile "$profile"
fi

strip_flag=()
if [ "$profile" != release ]; then
    # Keep the dev binary as built (no separate debug-symbol handling).
    strip_flag=(--no-strip --no-separate-debug-symbols)
fi
cargo deb --locked -p shipshape --no-build --profile "$profile" "${strip_flag[@]}" --fast -o "$out"
cargo generate-rpm -p agent --profile "$profile" -o "$out"

echo "packages in $out:"
ls -1 "$out"/*.deb "$out"/*.rpm
