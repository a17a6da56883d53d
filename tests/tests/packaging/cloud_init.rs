//! The cloud-config twin of the ECS user data under cloud-init: it passes `cloud-init
//! schema`, and writes the same shipshape config as the bash script (which the real
//! binary's `check` accepts).

use std::path::Path;

use shipshape_tests::bin::run;
use shipshape_tests::packaging::{yaml_to_json, Sandbox};
use shipshape_tests::tools::{cmd, ok, read, repo, write};

#[test]
fn cloud_config_passes_cloud_init_schema() {
    let out = run(cmd("cloud-init")
        .args(["schema", "--config-file"])
        .arg(repo("userdata/ecs-al2023.yaml")));
    ok(&out, "cloud-init schema");
    assert!(out.stdout.contains("Valid cloud-config"), "{}", out.stdout);
}

/// A throwaway user-data run: a temp dir, the root the script writes under
/// (`SHIPSHAPE_ROOT`), and a stub systemctl (`SHIPSHAPE_SYSTEMCTL`) that records its

#[test]
fn cloud_config_writes_the_same_config_as_the_bash_script() {
    let sb = Sandbox::new();
    let root = &sb.root;
    // /bin/true stands in for shipshape: only the written config is compared here.
    let out = sb.run_userdata("userdata/ecs-al2023.sh", Path::new("/bin/true"), &[]);
    ok(&out, "userdata/ecs-al2023.sh with defaults");
    let root_prefix = root.display().to_string();
    let from_bash: Vec<String> = read(&root.join("etc/shipshape/shipshape.toml"))
        .lines()
        .filter(|l| !l.contains(&root_prefix) && !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let cloud = yaml_to_json(&repo("userdata/ecs-al2023.yaml"));
    let files = cloud["write_files"].as_array().expect("write_files");
    let file = files
        .iter()
        .find(|f| f["path"] == "/etc/shipshape/shipshape.toml")
        .expect("cloud-config writes /etc/shipshape/shipshape.toml");
    let content = file["content"].as_str().expect("content");
    let from_yaml: Vec<String> = content
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    assert_eq!(
        from_yaml, from_bash,
        "the cloud-config twin drifted from the bash script"
    );
    // And the twin's config is valid for the real binary.
    let conf = sb.dir.path().join("cloud.toml");
    write(&conf, content);
    ok(
        &run(shipshape_tests::bin::shipshape()
            .arg("--config")
            .arg(&conf)
            .arg("check")),
        "shipshape check of the cloud-config's file",
    );
    let runcmd = cloud["runcmd"].to_string();
    for step in ["bootstrap", "enable --now --no-block shipshape.service"] {
        assert!(
            runcmd.contains(step),
            "cloud-config runcmd lacks {step}: {runcmd}"
        );
    }
}
