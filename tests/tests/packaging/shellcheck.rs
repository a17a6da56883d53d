//! The shell scripts under shellcheck: the user data and build/test scripts as bash, the
//! package maintainer scripts as POSIX sh (dash on Debian).

use shipshape_tests::bin::run;
use shipshape_tests::tools::{cmd, ok, repo};

/// One test per dialect, as the original single test ran them.
mod userdata_and_scripts_pass_shellcheck {
    use super::*;

    #[test]
    fn bash_scripts() {
        let bash = run(cmd("shellcheck")
            .arg(repo("userdata/ecs-al2023.sh"))
            .arg(repo("userdata/gitlab-runner.sh"))
            .arg(repo("packaging/build.sh"))
            .arg(repo("scripts/test.sh")));
        ok(&bash, "shellcheck (bash scripts)");
    }

    #[test]
    fn maintainer_scripts() {
        // Maintainer scripts run under /bin/sh (dash on Debian).
        let sh = run(cmd("shellcheck")
            .arg("--shell=sh")
            .arg(repo("packaging/deb/postinst"))
            .arg(repo("packaging/deb/prerm"))
            .arg(repo("packaging/deb/postrm"))
            .arg(repo("packaging/rpm/post.sh"))
            .arg(repo("packaging/rpm/preun.sh"))
            .arg(repo("packaging/rpm/postun.sh")));
        ok(&sh, "shellcheck (maintainer scripts)");
    }
}
