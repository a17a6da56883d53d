//! The layer rules of ARCHITECTURE.md checked on the sources of `agent/src`: today, that
//! only the adapters (and the fakes in `testing/`) import the AWS SDK. The IAM check
//! (`packaging::iam`) scans only `adapters/` for SDK calls, so a call elsewhere would
//! escape it.

use shipshape_tests::tools::{read, repo};

#[test]
fn only_adapters_import_the_aws_sdk() {
    let mut offenders = Vec::new();
    let mut stack = vec![repo("agent/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                if !path.ends_with("adapters") && !path.ends_with("testing") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs")
                && read(&path).contains("aws_sdk_")
            {
                offenders.push(path.display().to_string());
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "aws_sdk_* used outside adapters: {offenders:?}"
    );
}
