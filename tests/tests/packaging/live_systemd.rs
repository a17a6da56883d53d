//! The units under a live systemd 252 as PID 1 (`shipshape_tests::systemd`): the built DEB
//! installed in a Debian root filesystem, a stub `ecs.service` and `docker.service`, the
//! private dockerd's socket as `/run/docker.sock`, moto on the host network. One machine,
//! many checks, in the order a host lives them: fail-closed boot, READY, the sandbox
//! probes, recovery through the `.path` unit, the restart on a credential change,
//! watchdog, reload and its failure, journald fields and priorities, stop.

use std::time::Duration;

use serde_json::Value;
use shipshape_tests::aws::creds;
use shipshape_tests::dockerd::Dockerd;
use shipshape_tests::free_port;
use shipshape_tests::moto::Moto;
use shipshape_tests::packaging::packages;
use shipshape_tests::systemd::Machine;

/// Run by a drop-in `ExecStartPre=` inside each service's shipped sandbox: every escape
/// attempt prints `denied` or `open`, and `systemd-run` tries to write /etc.
const PROBE: &str = r#"#!/bin/sh
u="$1"
r() { if "$@" >/dev/null 2>&1; then echo open; else echo denied; fi; }
echo "PROBE $u run=$(r touch /run/probe-$u) run_systemd=$(r touch /run/systemd/system/probe-$u.service) systemd_run=$(r timeout 20 systemd-run --wait --quiet /bin/touch /etc/escaped-$u) bus=$(r timeout 20 busctl --system list)"
"#;

const DENIED: &str = "run=denied run_systemd=denied systemd_run=denied bus=denied";

/// Stub ECS agent: records each start; needs the config bootstrap writes.
const ECS_STUB: &str = "[Unit]\nDescription=stub ECS agent\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c 'test -s /etc/ecs/ecs.config && echo start >> /var/lib/ecs-stub-starts'\n[Install]\nWantedBy=multi-user.target\n";
const DOCKER_STUB: &str = "[Unit]\nDescription=stub docker.service (the engine is the test's private dockerd)\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n";

fn config(metrics_port: u16) -> String {
    format!(
        "[bootstrap]\ncluster = \"live\"\nregistry_secret = {{ \"registry.example.com\" = \"live/registry\" }}\ntimeout = \"5s\"\n\n[daemon.jobs.refresh_auth]\nschedule = \"*/2 * * * * *\"\n\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
    )
}

fn env_dropin(moto: &Moto) -> String {
    let mut s = String::from("[Service]\n");
    for (k, v) in moto.env() {
        s.push_str(&format!("Environment={k}={v}\n"));
    }
    s
}

fn probe_line(m: &Machine, unit: &str) -> String {
    m.sh_ok(&format!(
        "journalctl --no-pager -o cat -u {unit} | grep '^PROBE' | tail -n1"
    ))
    .trim()
    .to_owned()
}

fn starts(m: &Machine) -> usize {
    m.sh("cat /var/lib/ecs-stub-starts 2>/dev/null")
        .stdout
        .lines()
        .count()
}

fn field<'a>(entry: &'a Value, name: &str) -> &'a str {
    entry.get(name).and_then(Value::as_str).unwrap_or("")
}

#[test]
fn units_hold_under_a_live_systemd() {
    let dockerd = Dockerd::start();
    let moto = Moto::start();
    let socket = dockerd.socket_path();
    let m = Machine::boot(&[(socket.as_path(), "/run/docker.sock")]);
    m.copy_in(&packages().deb, "/root/shipshape.deb");
    m.sh_ok("dpkg -i /root/shipshape.deb >/dev/null");

    m.write("/etc/systemd/system/ecs.service", ECS_STUB);
    m.write("/etc/systemd/system/docker.service", DOCKER_STUB);
    m.write("/usr/local/bin/probe", PROBE);
    m.sh_ok("chmod 755 /usr/local/bin/probe");
    let metrics_port = free_port();
    m.write("/etc/shipshape/shipshape.toml", &config(metrics_port));
    for unit in [
        "shipshape.service",
        "shipshape-bootstrap.service",
        "shipshape-gc.service",
    ] {
        let name = unit.trim_end_matches(".service");
        m.write(
            &format!("/etc/systemd/system/{unit}.d/live.conf"),
            &format!(
                "{}ExecStartPre=-/usr/local/bin/probe {name}\n",
                env_dropin(&moto)
            ),
        );
    }
    // A short watchdog period, so the check below sees many pings.
    m.write(
        "/etc/systemd/system/shipshape.service.d/watchdog.conf",
        "[Service]\nWatchdogSec=2s\n",
    );
    m.sh_ok("systemctl daemon-reload && systemctl enable shipshape-bootstrap.service ecs.service >/dev/null 2>&1");

    // Fail-closed boot: the secret does not exist yet, so bootstrap fails and ecs never starts.
    let out = m.sh("systemctl start ecs.service");
    assert_ne!(out.code, 0, "ecs.service started although bootstrap failed");
    assert_eq!(
        m.prop("shipshape-bootstrap.service", "ActiveState"),
        "failed"
    );
    assert_eq!(m.prop("ecs.service", "ActiveState"), "inactive");
    assert_eq!(starts(&m), 0, "the stub ECS agent ran");
    assert!(
        m.sh("test -e /etc/ecs/ecs.config").code != 0,
        "a failed bootstrap wrote ecs.config"
    );
    // …and left its marker in /run/shipshape, the one writable path under the read-only /run.
    const MARKER: &str = "/run/shipshape/bootstrap-failed/etc-ecs-ecs.config";
    assert!(
        m.sh(&format!("test -e {MARKER}")).code == 0,
        "no failure marker inside the sandbox:\n{}",
        m.sh("journalctl --no-pager -o cat -u shipshape-bootstrap -n 10")
            .stdout
    );

    // A binary state file (the old crash loop before READY) is moved aside.
    m.sh_ok("mkdir -p /var/lib/shipshape && printf '\\377\\376\\000\\234' > /var/lib/shipshape/state.json");

    // READY: Type=notify, so `systemctl start` returns only once READY=1 arrived.
    m.sh_ok("systemctl start shipshape.service");
    m.sh_ok("test -s /var/lib/shipshape/state.json.corrupt");
    assert_eq!(m.prop("shipshape.service", "ActiveState"), "active");
    assert_eq!(m.prop("shipshape.service", "SubState"), "running");
    let pid = m.prop("shipshape.service", "MainPID");
    assert!(
        !m.prop("shipshape.service", "StatusText").is_empty(),
        "no STATUS="
    );

    // Recovery after the boot-time failure: once the secret exists, the daemon's
    // refresh_auth writes ecs.config and asks the .path unit, which starts ecs
    // (and re-runs bootstrap before it).
    moto.aws_cli(&[
        "secretsmanager",
        "create-secret",
        "--name",
        "live/registry",
        "--secret-string",
        &creds("first", "pw-1"),
    ]);
    assert!(
        m.wait(Duration::from_secs(30), |m| starts(m) == 1),
        "ecs did not start after bootstrap recovered; daemon log:\n{}\nrestart unit:\n{}",
        m.sh("journalctl --no-pager -o verbose -u shipshape -n 12 | grep -E 'MESSAGE=|ERROR='")
            .stdout,
        m.sh("journalctl --no-pager -o cat -u shipshape-ecs-restart -n 10")
            .stdout
    );
    assert_eq!(m.prop("ecs.service", "ActiveState"), "active");
    assert_eq!(
        m.prop("shipshape-bootstrap.service", "ActiveState"),
        "active"
    );
    assert!(
        m.sh(&format!("test -e {MARKER}")).code != 0,
        "the failure marker outlived the recovery"
    );
    let marker_warnings = m.sh("journalctl --no-pager -o cat -u shipshape -u shipshape-bootstrap | grep -c 'cannot leave the failure marker'");
    assert_eq!(
        marker_warnings.stdout.trim(),
        "0",
        "a run could not write its failure marker"
    );
    let bootstrap_done: u64 = m
        .prop(
            "shipshape-bootstrap.service",
            "ExecMainExitTimestampMonotonic",
        )
        .parse()
        .expect("bootstrap exit timestamp");
    let ecs_start: u64 = m
        .prop("ecs.service", "ExecMainStartTimestampMonotonic")
        .parse()
        .expect("ecs start timestamp");
    assert!(
        bootstrap_done <= ecs_start,
        "ecs started ({ecs_start}) before bootstrap finished ({bootstrap_done})"
    );

    // The restart path: new credentials → ecs.config changes → the .path unit restarts ecs.
    moto.aws_cli(&[
        "secretsmanager",
        "put-secret-value",
        "--secret-id",
        "live/registry",
        "--secret-string",
        &creds("second", "pw-2"),
    ]);
    assert!(
        m.wait(Duration::from_secs(30), |m| starts(m) == 2),
        "ecs was not restarted after the credentials changed:\n{}",
        m.sh("journalctl --no-pager -o cat -u shipshape-ecs-restart -n 10")
            .stdout
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(starts(&m), 2, "ecs restarted although nothing changed");

    // The sandboxes hold: each service's probe ran inside its shipped sandbox.
    m.sh("systemctl start shipshape-gc.service");
    for unit in ["shipshape", "shipshape-bootstrap", "shipshape-gc"] {
        let line = probe_line(&m, unit);
        assert_eq!(
            line,
            format!("PROBE {unit} {DENIED}"),
            "{unit}: an escape was not denied"
        );
        assert!(
            m.sh(&format!("test -e /etc/escaped-{unit}")).code != 0,
            "{unit}: systemd-run escaped"
        );
    }
    // …and the probe can fail: the same script outside the sandbox reaches PID 1.
    let outside = m.sh_ok("/usr/local/bin/probe outside");
    assert!(
        outside.contains("run=open") && outside.contains("systemd_run=open"),
        "the probe cannot see an open path: {outside}"
    );

    // Watchdog at 2 s: after 10 s, the same process, never restarted.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(m.prop("shipshape.service", "MainPID"), pid);
    assert_eq!(m.prop("shipshape.service", "NRestarts"), "0");

    // Reload: a valid config is applied; an invalid one fails `systemctl reload` and the
    // daemon keeps running with the old one.
    m.sh_ok("systemctl reload shipshape.service");
    m.write(
        "/etc/shipshape/shipshape.toml",
        "[daemon]\nno_such_key = 1\n",
    );
    let out = m.sh("systemctl reload shipshape.service");
    assert_ne!(out.code, 0, "systemctl reload accepted an invalid config");
    assert_eq!(m.prop("shipshape.service", "ActiveState"), "active");
    assert_eq!(m.prop("shipshape.service", "MainPID"), pid);
    m.write("/etc/shipshape/shipshape.toml", &config(metrics_port));

    // Journald: structured fields and priorities 3/4/6 as `journalctl -o json` reads them.
    let daemon = m.journal("shipshape.service");
    let starting = daemon
        .iter()
        .find(|e| field(e, "MESSAGE").contains("shipshape daemon starting"))
        .expect("no start line in the daemon's journal");
    assert_eq!(field(starting, "PRIORITY"), "6", "info is not PRIORITY=6");
    assert!(
        daemon
            .iter()
            .any(|e| field(e, "JOB") == "refresh_auth" && field(e, "PRIORITY") == "6"),
        "no refresh_auth line with JOB= at PRIORITY=6"
    );
    let bootstrap = m.journal("shipshape-bootstrap.service");
    assert!(
        bootstrap
            .iter()
            .any(|e| field(e, "PRIORITY") == "3" && field(e, "MESSAGE").contains("live/registry")),
        "bootstrap's failure is not at PRIORITY=3:\n{:#?}",
        bootstrap
            .iter()
            .map(|e| (field(e, "PRIORITY"), field(e, "MESSAGE")))
            .collect::<Vec<_>>()
    );

    // Stop: clean exit, no failure.
    m.sh_ok("systemctl stop shipshape.service");
    assert_eq!(m.prop("shipshape.service", "ActiveState"), "inactive");
    assert_eq!(m.prop("shipshape.service", "Result"), "success");
    assert_eq!(m.prop("shipshape.service", "ExecMainStatus"), "0");
    drop(dockerd);
}
