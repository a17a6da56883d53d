//! Honest pull times: BatchGetImage (how the snapshot reads index manifests) updates an
//! image's `lastRecordedPullTime` (aws/containers-roadmap#2390), so without care the
//! pruner's own reads make images look recently pulled to `sinceImagePulled` rules —
//! ours and ECR's own lifecycle policies. Before any read, the caller's principal is put
//! on the registry's pull-time update exclusion list (listed first, registered only when
//! missing; it stays registered: it is the pruner's own role). Where the API is missing
//! or denied, one warning says `sinceImagePulled` may be skewed; the run goes on.

use crate::ports::ecr::EcrApi;

/// What the exclusion step did (for the log and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    /// `--no-pull-time-exclusion`.
    OptedOut,
    AlreadyListed(String),
    Registered(String),
    /// The API could not be used: the warning's text.
    Unavailable(String),
}

/// The IAM principal ECR's exclusion list names for a caller ARN: an assumed-role
/// session (`arn:aws:sts::123456789012:assumed-role/Pruner/i-0abc`) is its role
/// (`arn:aws:iam::123456789012:role/Pruner`); users and roles are themselves. A role
/// created under a path (`role/service/Pruner`) cannot be recovered from the session
/// ARN; its exclusion then has to be registered by hand (see README).
pub fn principal_of(caller: &str) -> String {
    let Some(rest) = caller.strip_prefix("arn:") else {
        return caller.to_owned();
    };
    let mut parts = rest.splitn(5, ':');
    let (Some(partition), Some("sts"), Some(_), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return caller.to_owned();
    };
    if let Some(role) = resource
        .strip_prefix("assumed-role/")
        .and_then(|r| r.split('/').next())
    {
        return format!("arn:{partition}:iam::{account}:role/{role}");
    }
    // STS names IAM users under `iam`; an emulator (moto) says `sts::…:user/…`.
    if resource.starts_with("user/") {
        return format!("arn:{partition}:iam::{account}:{resource}");
    }
    caller.to_owned()
}

/// Make sure the caller is excluded from pull-time updates (unless `enabled` is false).
pub async fn ensure(ecr: &dyn EcrApi, enabled: bool) -> Exclusion {
    if !enabled {
        return Exclusion::OptedOut;
    }
    let outcome = async {
        let principal = principal_of(&ecr.caller_arn().await?);
        if ecr.pull_time_exclusions().await?.contains(&principal) {
            return Ok(Exclusion::AlreadyListed(principal));
        }
        ecr.register_pull_time_exclusion(&principal).await?;
        Ok::<_, crate::ports::ecr::ApiError>(Exclusion::Registered(principal))
    }
    .await;
    match outcome {
        Ok(Exclusion::Registered(p)) => {
            tracing::info!(principal = %p, "registered for the pull-time update exclusion: our reads no longer count as pulls");
            Exclusion::Registered(p)
        }
        Ok(done) => done,
        Err(e) => {
            let text = format!(
                "cannot use the pull-time update exclusion ({}); sinceImagePulled may be skewed by our own reads",
                e.brief()
            );
            tracing::warn!("{text}");
            Exclusion::Unavailable(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ecr::FakeEcr;

    #[test]
    fn an_assumed_role_session_is_its_role() {
        assert_eq!(
            principal_of("arn:aws:sts::123456789012:assumed-role/Pruner/i-0abc"),
            "arn:aws:iam::123456789012:role/Pruner"
        );
        assert_eq!(
            principal_of("arn:aws-cn:sts::123456789012:assumed-role/P/s"),
            "arn:aws-cn:iam::123456789012:role/P"
        );
        assert_eq!(
            principal_of("arn:aws:sts::123456789012:user/moto"),
            "arn:aws:iam::123456789012:user/moto"
        );
        for same in [
            "arn:aws:iam::123456789012:user/ci",
            "arn:aws:iam::123456789012:role/R",
            "junk",
        ] {
            assert_eq!(principal_of(same), same);
        }
    }

    #[tokio::test]
    async fn registers_once_then_finds_itself_listed() {
        let ecr = FakeEcr::default();
        let me = "arn:aws:iam::123456789012:role/Pruner".to_owned();
        assert_eq!(ensure(&ecr, true).await, Exclusion::Registered(me.clone()));
        assert_eq!(ensure(&ecr, true).await, Exclusion::AlreadyListed(me));
        assert_eq!(ecr.calls("RegisterPullTimeUpdateExclusion"), 1);
        assert_eq!(ensure(&ecr, false).await, Exclusion::OptedOut);
        assert_eq!(ecr.calls("GetCallerIdentity"), 2);
    }

    #[tokio::test]
    async fn an_unavailable_api_is_one_warning() {
        let ecr = FakeEcr {
            exclusions_unavailable: true,
            ..FakeEcr::default()
        };
        let Exclusion::Unavailable(text) = ensure(&ecr, true).await else {
            panic!("not unavailable");
        };
        assert!(text.contains("sinceImagePulled may be skewed"), "{text}");
        assert!(!text.contains('\n'));
    }
}
