#!/bin/bash
# EC2 user data for ECS container instances on Amazon Linux 2023 (ECS-optimized AMI
# with shipshape baked in by packaging/packer/). It writes /etc/shipshape/shipshape.toml
# with the cluster and the IDs of the secrets holding registry credentials, runs
# `shipshape bootstrap` to write /etc/ecs/ecs.config, and starts the daemon.
#
# Edit the values below (or export them before running the script). Secrets are
# referenced by name or ARN only — credentials never appear in user data.
#
# Testing hooks: SHIPSHAPE_ROOT prefixes every path written (a throwaway root),
# SHIPSHAPE_BIN names the binary, SHIPSHAPE_SYSTEMCTL the systemctl to call.
set -euo pipefail

# --- Settings ---------------------------------------------------------------
CLUSTER="${CLUSTER:-default}"
# Space-separated REGISTRY=SECRET_ID pairs; each secret holds {"username","password"}.
REGISTRY_SECRETS="${REGISTRY_SECRETS:-registry.gitlab.com=prod/ecs/gitlab-registry}"
# Space-separated secret IDs holding a Docker config.json or an ECS auth map (optional).
AUTH_SECRETS="${AUTH_SECRETS:-}"
# Space-separated s3://bucket/key ecs.config fragments (optional).
FROM_S3="${FROM_S3:-}"
# Space-separated extra ecs.config KEY=VALUE settings.
ECS_SETTINGS="${ECS_SETTINGS:-ECS_ENABLE_TASK_IAM_ROLE=true}"
# Set to "" to skip metrics; else the listen address of the Prometheus endpoint.
METRICS_LISTEN="${METRICS_LISTEN:-127.0.0.1:9101}"
# Optional: install shipshape from this S3 URL when the AMI does not have it.
SHIPSHAPE_RPM_S3="${SHIPSHAPE_RPM_S3:-}"

# --- Test hooks ---------------------------------------------------------------
root="${SHIPSHAPE_ROOT:-}"
bin="${SHIPSHAPE_BIN:-/usr/bin/shipshape}"
systemctl="${SHIPSHAPE_SYSTEMCTL:-systemctl}"

log() { echo "shipshape-userdata: $*" >&2; }
die() { log "error: $*"; exit 1; }

# TOML basic strings: refuse anything that would need escaping rather than escape it;
# IDs, registries and settings never contain quotes, backslashes or control chars.
toml_str() {
    case "$1" in
    *[\"\\]* | *[[:cntrl:]]*) die "value not allowed in config (quote, backslash or control character): $1" ;;
    esac
    printf '"%s"' "$1"
}

# "A=1 B=2" -> { "A" = "1", "B" = "2" }
toml_table() {
    local out="" pair key value items
    read -r -a items <<<"$1"
    for pair in "${items[@]}"; do
        case "$pair" in
        ?*=?*) ;;
        *) die "expected KEY=VALUE with both sides non-empty, got: $pair" ;;
        esac
        key="${pair%%=*}"
        value="${pair#*=}"
        key="$(toml_str "$key")"
        value="$(toml_str "$value")"
        out="${out:+$out, }$key = $value"
    done
    printf '{ %s }' "$out"
}

# "a b" -> ["a", "b"]
toml_array() {
    local out="" item items
    read -r -a items <<<"$1"
    for item in "${items[@]}"; do
        item="$(toml_str "$item")"
        out="${out:+$out, }$item"
    done
    printf '[%s]' "$out"
}

if [ ! -x "$bin" ] && [ -n "$SHIPSHAPE_RPM_S3" ]; then
    log "installing shipshape from $SHIPSHAPE_RPM_S3"
    aws s3 cp "$SHIPSHAPE_RPM_S3" /tmp/shipshape.rpm
    dnf install -y /tmp/shipshape.rpm
    rm -f /tmp/shipshape.rpm
fi
[ -x "$bin" ] || die "$bin not found: bake it into the AMI (packaging/packer) or set SHIPSHAPE_RPM_S3"

conf_dir="$root/etc/shipshape"
conf="$conf_dir/shipshape.toml"
mkdir -p "$conf_dir" "$root/etc/ecs"

# Every value is quoted before the file is written, so a bad one stops the script here.
v_cluster="$(toml_str "$CLUSTER")"
v_registry_secrets="$(toml_table "$REGISTRY_SECRETS")"
v_auth_secrets="$(toml_array "$AUTH_SECRETS")"
v_from_s3="$(toml_array "$FROM_S3")"
v_settings="$(toml_table "$ECS_SETTINGS")"
# Only paths differ under a test root; on a host the built-in defaults apply.
ecs_config_line=""
state_line=""
if [ -n "$root" ]; then
    ecs_config_line="ecs_config = $(toml_str "$root/etc/ecs/ecs.config")"
    state_line="state = $(toml_str "$root/var/lib/shipshape/state.json")"
fi

tmp="$(mktemp "$conf_dir/.shipshape.toml.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
cat >"$tmp" <<TOML
# Written by EC2 user data (userdata/ecs-al2023.sh). Secrets by ID only.
[bootstrap]
$ecs_config_line
cluster = $v_cluster
registry_secret = $v_registry_secrets
auth_secret = $v_auth_secrets
from_s3 = $v_from_s3
set = $v_settings

[gc]
$state_line
min_age = "1h"
max_age = "1d"
keep_per_repo = 1
exclude = ["amazon/amazon-ecs-agent:*", "amazon/amazon-ecs-pause:*"]
high_water = "85%"
low_water = "75%"
containers = true

[daemon]
$state_line
disk_check_interval = "60s"

[daemon.jobs.gc]
schedule = "*/30 * * * *"
jitter = "2m"

[daemon.jobs.refresh_auth]
schedule = "0 * * * *"
jitter = "5m"
restart_ecs_on_change = true
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

# Fail closed: without registry auth the instance must not join the cluster. The
# error names the secret or object that failed; ecs.config is left untouched.
"$bin" --config "$conf" bootstrap || die "bootstrap failed; the ECS agent will not start (shipshape-bootstrap.service is RequiredBy ecs.service)"
log "wrote $root/etc/ecs/ecs.config"

# --no-block: user data runs inside cloud-final.service, which these units order after.
"$systemctl" enable shipshape-bootstrap.service
"$systemctl" enable --now --no-block shipshape.service
# A daemon already running (re-run user data, baked AMI) gets the new config: reload
# validates it first (ExecReload runs `shipshape check`); a stopped one is left as is.
"$systemctl" try-reload-or-restart --no-block shipshape.service
log "enabled shipshape-bootstrap.service and shipshape.service"
