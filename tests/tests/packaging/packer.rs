//! The packer template under packer: `fmt -check` and `validate`, which must also refuse
//! a missing RPM.

use std::path::Path;

use shipshape_tests::bin::run;
use shipshape_tests::packaging::packages;
use shipshape_tests::tools::{cmd, ok, read, repo, tempdir, write};

#[test]
fn packer_template_is_formatted_and_validates() {
    let template = repo("packaging/packer/shipshape-ecs-al2023.pkr.hcl");
    let fmt = run(cmd("packer").args(["fmt", "-check"]).arg(&template));
    ok(&fmt, "packer fmt -check");
    // Debian's packer (1.6.6) predates the `packer { required_plugins }` block that
    // packer >= 1.7 needs to fetch the amazon plugin: validate everything else.
    let text = read(&template);
    let start = text.find("\npacker {").expect("packer block");
    let end = start + text[start..].find("\n}\n").expect("end of packer block") + 3;
    let dir = tempdir();
    write(
        &dir.path().join("t.pkr.hcl"),
        &format!("{}{}", &text[..start], &text[end..]),
    );
    let rpm = &packages().rpm;
    let validate = |rpm: &Path| {
        run(cmd("packer")
            .current_dir(dir.path())
            .env("CHECKPOINT_DISABLE", "1")
            .args(["validate", "-var", "region=eu-west-1", "-var"])
            .arg(format!("rpm={}", rpm.display()))
            .arg("."))
    };
    ok(&validate(rpm), "packer validate");
    let missing = validate(&dir.path().join("missing.rpm"));
    assert_ne!(missing.code, 0, "packer validate accepted a missing RPM");
}
