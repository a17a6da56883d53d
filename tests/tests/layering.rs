//! The layer rules of ARCHITECTURE.md, checked on the sources of `agent/src` (test code
//! — `#[cfg(test)]` modules, `tests.rs`, `*_tests.rs`, `fakes.rs`, `testing/` — aside):
//! only adapters touch the SDKs, bollard, statvfs and the wall clock; only the
//! composition root (`app.rs`) builds adapters; nothing imports `app`; the cores use
//! no CLI type, no other core and of the config only its values and layering; the
//! bottom layers import nothing above them; planners are pure. The IAM check
//! (`packaging::iam`) scans only `adapters/` for SDK calls, so a call elsewhere would
//! escape it — one more reason for the first rule.

use std::path::PathBuf;

use shipshape_tests::tools::{read, repo, rs_files};

const CORES: [&str; 4] = ["bootstrap", "image_gc", "ecr_prune", "daemon"];

/// Pure planners: no tokio, no adapter, no clock.
const PLANNERS: [&str; 8] = [
    "image_gc/planner.rs",
    "image_gc/planner/",
    "ecr_prune/planner.rs",
    "ecr_prune/rules.rs",
    "ecr_prune/grouping.rs",
    "bootstrap/plan.rs",
    "bootstrap/ecs_config.rs",
    "daemon/schedule.rs",
];

/// Below the cores: values, ports and shared helpers.
const BOTTOM: [&str; 6] = [
    "exit.rs",
    "config/value.rs",
    "config/layer.rs",
    "ports",
    "shared/",
    "last_use/",
];

/// Each non-test source file of `agent/src`, relative path and text without its
/// test modules.
fn sources() -> Vec<(String, String)> {
    rs_files(&repo("agent/src"))
        .into_iter()
        .filter(|(rel, _)| {
            !rel.starts_with("testing/") && !rel.ends_with("tests.rs") && !rel.ends_with("fakes.rs")
        })
        .map(|(rel, path): (String, PathBuf)| {
            let text = read(&path);
            let code = match text.find("#[cfg(test)]\nmod ") {
                Some(i) => text[..i].to_owned(),
                None => text,
            };
            let code: String = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .map(|l| format!("{l}\n"))
                .collect();
            (rel, code)
        })
        .collect()
}

/// `rel` files (matching `scope`) whose code contains any of `needles`.
fn offenders(scope: impl Fn(&str) -> bool, needles: &[&str]) -> Vec<String> {
    sources()
        .into_iter()
        .filter(|(rel, _)| scope(rel))
        .flat_map(|(rel, code)| {
            needles
                .iter()
                .filter(|n| code.contains(**n))
                .map(|n| format!("{rel}: {n}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn in_core(rel: &str) -> Option<&'static str> {
    CORES
        .into_iter()
        .find(|c| rel.starts_with(&format!("{c}/")))
}

#[test]
fn only_adapters_touch_sdks_bollard_statvfs_mman_and_the_wall_clock() {
    let needles = [
        "aws_sdk_",
        "aws_config",
        "bollard::",
        "nix::sys::statvfs",
        "nix::sys::mman",
        "Utc::now()",
        "SystemTime::now()",
        "Local::now()",
    ];
    let mut bad = Vec::new();
    for (rel, code) in sources() {
        if rel.starts_with("adapters/") {
            continue;
        }
        // Naming an adapter module (in app.rs) is not using the crate it wraps.
        let code = code.replace("adapters::bollard", "adapters::");
        bad.extend(
            needles
                .iter()
                .filter(|n| code.contains(**n))
                .map(|n| format!("{rel}: {n}")),
        );
    }
    assert!(bad.is_empty(), "outside adapters/: {bad:#?}");
}

#[test]
fn only_the_composition_root_builds_adapters() {
    let bad = offenders(
        |rel| rel != "app.rs" && !rel.starts_with("adapters/"),
        &["crate::adapters", "shipshape::adapters"],
    );
    assert!(bad.is_empty(), "adapters used outside app.rs: {bad:#?}");
}

#[test]
fn nothing_imports_the_composition_root() {
    let bad = offenders(|rel| rel != "app.rs" && rel != "main.rs", &["crate::app"]);
    assert!(bad.is_empty(), "imports of app: {bad:#?}");
}

#[test]
fn cores_use_no_cli_type_no_other_core_and_only_config_values() {
    let mut bad = Vec::new();
    for (rel, code) in sources() {
        let Some(core) = in_core(&rel) else { continue };
        for line in code.lines() {
            let uses = |path: &str| line.contains(&format!("crate::{path}"));
            if uses("cli") || uses("app") || uses("error::") {
                bad.push(format!("{rel}: {}", line.trim()));
            }
            if uses("config") && !uses("config::value") && !uses("config::layer") {
                bad.push(format!("{rel}: {}", line.trim()));
            }
            for other in CORES.iter().filter(|o| **o != core) {
                if uses(&format!("{other}::")) {
                    bad.push(format!("{rel}: {}", line.trim()));
                }
            }
        }
    }
    assert!(bad.is_empty(), "upward or sideways imports: {bad:#?}");
}

#[test]
fn the_bottom_layers_import_nothing_above_them() {
    let bad = offenders(
        |rel| BOTTOM.iter().any(|b| rel.starts_with(b)),
        &[
            "crate::bootstrap",
            "crate::image_gc",
            "crate::ecr_prune",
            "crate::daemon",
            "crate::cli",
            "crate::app",
            "crate::adapters",
            "crate::error::",
            "crate::config::File",
            "crate::config::load",
        ],
    );
    assert!(bad.is_empty(), "bottom layer imports upward: {bad:#?}");
}

#[test]
fn planners_are_pure() {
    let bad = offenders(
        |rel| PLANNERS.iter().any(|p| rel.starts_with(p)),
        &["tokio", "crate::adapters", "::now()", "std::fs", "async fn"],
    );
    assert!(bad.is_empty(), "impure planner: {bad:#?}");
}
