//! The canary: a password planted in secrets, S3 objects and config so that tests can
//! prove it never reaches an output. It is looked for in every form a leak could take —
//! plain, base64, and base64 of `user:password` as in a Docker `auth` field.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::bin::Output;

/// The planted password.
pub const CANARY: &str = "CANARY-7f3a9c-pw";
/// The user name that goes with it where a test needs one.
pub const CANARY_USER: &str = "canary-user";

/// Every form in which the canary could leak.
pub fn canary_forms() -> Vec<String> {
    vec![
        CANARY.to_owned(),
        B64.encode(CANARY),
        B64.encode(format!("{CANARY_USER}:{CANARY}")),
    ]
}

/// Panics, naming `what` and the form found, when the canary is in stdout or stderr.
pub fn assert_no_canary(out: &Output, what: &str) {
    for form in canary_forms() {
        assert!(
            !out.stdout.contains(&form) && !out.stderr.contains(&form),
            "{what}: canary form {form:?} leaked\nstdout: {}\nstderr: {}",
            out.stdout,
            out.stderr
        );
    }
}
