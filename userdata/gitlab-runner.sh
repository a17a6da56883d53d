#!/bin/bash
# EC2 user data for GitLab-runner CI hosts (Docker executor) on Debian/Ubuntu (DEB) or
# Amazon Linux 2023 (RPM), shipshape installed. It writes /etc/shipshape/shipshape.toml
# with the IDs of the secrets holding registry credentials and GC thresholds tuned for
# CI (images churn fast, build cache and volumes pile up), writes the runner's Docker
# config.json via `shipshape bootstrap`, and starts the daemon with a drop-in that
# lets it refresh that file.
#
# Edit the values below (or export them). Secrets are referenced by name or ARN only.
# Testing hooks: SHIPSHAPE_ROOT prefixes every path written, SHIPSHAPE_BIN names the
# binary, SHIPSHAPE_SYSTEMCTL the systemctl to call.
set -euo pipefail

# --- Settings ---------------------------------------------------------------
# Space-separated REGISTRY=SECRET_ID pairs; each secret holds {"username","password"}.
REGISTRY_SECRETS="${REGISTRY_SECRETS:-registry.gitlab.com=ci/gitlab-registry docker.io=ci/dockerhub}"
# Space-separated secret IDs holding a Docker config.json or an ECS auth map (optional).
AUTH_SECRETS="${AUTH_SECRETS:-}"
# The Docker config.json the runner uses: root's when gitlab-runner runs as root (the
# packaged systemd service does).
DOCKER_CONFIG_PATH="${DOCKER_CONFIG_PATH:-/root/.docker/config.json}"
METRICS_LISTEN="${METRICS_LISTEN:-127.0.0.1:9101}"

# --- Test hooks ---------------------------------------------------------------
root="${SHIPSHAPE_ROOT:-}"
bin="${SHIPSHAPE_BIN:-/usr/bin/shipshape}"
systemctl="${SHIPSHAPE_SYSTEMCTL:-systemctl}"

log() { echo "shipshape-userdata: $*" >&2; }
die() { log "error: $*"; exit 1; }

toml_str() {
    case "$1" in
    *[\"\\]* | *[[:cntrl:]]*) die "value not allowed in config (quote, backslash or control character): $1" ;;
    esac
    printf '"%s"' "$1"
}

toml_table() {
    local out="" pair key value items
    read -r -a items <<<"$1"
    for pair in "${items[@]}"; do
        case "$pair" in
        ?*=?*) ;;
        *) die "expected KEY=VALUE with both sides non-empty, got: $pair" ;;
        esac
        key="$(toml_str "${pair%%=*}")"
        value="$(toml_str "${pair#*=}")"
        out="${out:+$out, }$key = $value"
    done
    printf '{ %s }' "$out"
}

toml_array() {
    local out="" item items
    read -r -a items <<<"$1"
    for item in "${items[@]}"; do
        item="$(toml_str "$item")"
        out="${out:+$out, }$item"
    done
    printf '[%s]' "$out"
}

[ -x "$bin" ] || die "$bin not found: install the shipshape DEB or RPM first"
case "$DOCKER_CONFIG_PATH" in
/*) ;;
*) die "DOCKER_CONFIG_PATH must be absolute: $DOCKER_CONFIG_PATH" ;;
esac

docker_config="$root$DOCKER_CONFIG_PATH"
docker_config_dir="$(dirname "$DOCKER_CONFIG_PATH")"
conf_dir="$root/etc/shipshape"
conf="$conf_dir/shipshape.toml"
mkdir -p "$conf_dir" "$root$docker_config_dir" "$root/var/lib/shipshape"
chmod 0700 "$root$docker_config_dir" "$root/var/lib/shipshape"

v_registry_secrets="$(toml_table "$REGISTRY_SECRETS")"
v_auth_secrets="$(toml_array "$AUTH_SECRETS")"
v_docker_config="$(toml_str "$docker_config")"
# No ECS agent reads this file on a CI host; bootstrap always writes one, so keep it
# out of /etc/ecs.
v_ecs_config="$(toml_str "$root/var/lib/shipshape/ecs.config")"
v_state="$(toml_str "$root/var/lib/shipshape/state.json")"

tmp="$(mktemp "$conf_dir/.shipshape.toml.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
cat >"$tmp" <<TOML
# Written by EC2 user data (userdata/gitlab-runner.sh). Secrets by ID only.
[bootstrap]
ecs_config = $v_ecs_config
docker_config = $v_docker_config
registry_secret = $v_registry_secrets
auth_secret = $v_auth_secrets

# CI: many short-lived images; keep the runner's helper images (pulled every job) and
# act early on disk pressure, because a full disk fails every build on the host.
[gc]
state = $v_state
min_age = "2h"
max_age = "1d"
keep_per_repo = 1
exclude = ["registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:*", "gitlab/gitlab-runner-helper:*"]
high_water = "80%"
low_water = "60%"
containers = true
container_grace = "30m"
volumes = true
build_cache = true

[daemon]
state = $v_state
disk_check_interval = "30s"

[daemon.jobs.gc]
schedule = "*/15 * * * *"
jitter = "1m"

# The runner reads config.json at every job: no restart needed when it changes.
[daemon.jobs.refresh_auth]
schedule = "0 * * * *"
jitter = "5m"
TOML
if [ -n "$METRICS_LISTEN" ]; then
    v_listen="$(toml_str "$METRICS_LISTEN")"
    printf '\n[metrics]\nlisten = %s\n' "$v_listen" >>"$tmp"
fi
chmod 0644 "$tmp"

"$bin" --config "$tmp" check >/dev/null || die "generated config is invalid (see above)"
mv -f "$tmp" "$conf"
trap - EXIT
log "wrote $conf"

"$bin" --config "$conf" bootstrap || die "bootstrap failed: the runner has no registry auth"
log "wrote $docker_config"

# The daemon's refresh_auth rewrites config.json under a home directory, which the
# hardened unit hides (ProtectHome=yes): expose just that directory to it.
dropin_dir="$root/etc/systemd/system/shipshape.service.d"
mkdir -p "$dropin_dir"
cat >"$dropin_dir/ci-docker-config.conf" <<UNIT
# Written by userdata/gitlab-runner.sh: let refresh_auth update the runner's config.json.
[Service]
ProtectHome=tmpfs
BindPaths=$docker_config_dir
UNIT

"$systemctl" daemon-reload
"$systemctl" enable --now --no-block shipshape.service
# A daemon already running gets the new config (reload validates it first).
"$systemctl" try-reload-or-restart --no-block shipshape.service
log "enabled shipshape.service"
