//! The ECR port of `ecr-prune`: what the core needs from ECR (and the images quota from
//! Service Quotas), in this crate's own types. Each method is one API operation (or its
//! pagination), so the snapshot code controls batching and the call count stays
//! visible. The port returns facts as ECR gives them; the core decides what they mean.

use std::fmt;

use chrono::{DateTime, Utc};

/// One repository as DescribeRepositories returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub name: String,
    /// `<account>.dkr.ecr.<region>.amazonaws.com/<name>`: how ECS refers to it.
    pub uri: String,
}

/// One manifest in a repository (DescribeImages' `imageDetails` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrImage {
    pub digest: String,
    pub tags: Vec<String>,
    /// `imagePushedAt`; ECR may leave it out (the core decides what that means).
    pub pushed_at: Option<DateTime<Utc>>,
    pub size: u64,
    pub last_pulled: Option<DateTime<Utc>>,
    pub manifest_media_type: Option<String>,
    pub artifact_media_type: Option<String>,
    /// The manifest this one refers to (OCI referrers: signatures, SBOMs).
    pub subject: Option<String>,
    /// `imageStatus` ARCHIVED: moved to the archive storage class, not an active image.
    pub archived: bool,
}

impl EcrImage {
    /// Image indexes (multi-arch) and Docker manifest lists have children to learn.
    pub fn is_index(&self) -> bool {
        matches!(
            self.manifest_media_type.as_deref(),
            Some("application/vnd.oci.image.index.v1+json")
                | Some("application/vnd.docker.distribution.manifest.list.v2+json")
        )
    }
}

/// Why ECR did not delete one image (BatchDeleteImage `failures[].failureCode`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FailureCode {
    /// The image is already gone: for a prune, as good as deleted.
    ImageNotFound,
    /// An index still lists this manifest.
    ImageReferencedByManifestList,
    ImageInaccessible,
    ImageTagDoesNotMatchDigest,
    InvalidImageDigest,
    InvalidImageTag,
    KmsError,
    MissingDigestAndTag,
    UpstreamAccessDenied,
    UpstreamTooManyRequests,
    UpstreamUnavailable,
    /// A code this build does not know, as ECR sent it (`Unknown` when none was sent).
    Other(String),
}

impl FailureCode {
    /// ECR's code names, as the API documents them.
    const NAMED: [(&'static str, FailureCode); 11] = [
        ("ImageNotFound", Self::ImageNotFound),
        (
            "ImageReferencedByManifestList",
            Self::ImageReferencedByManifestList,
        ),
        ("ImageInaccessible", Self::ImageInaccessible),
        (
            "ImageTagDoesNotMatchDigest",
            Self::ImageTagDoesNotMatchDigest,
        ),
        ("InvalidImageDigest", Self::InvalidImageDigest),
        ("InvalidImageTag", Self::InvalidImageTag),
        ("KmsError", Self::KmsError),
        ("MissingDigestAndTag", Self::MissingDigestAndTag),
        ("UpstreamAccessDenied", Self::UpstreamAccessDenied),
        ("UpstreamTooManyRequests", Self::UpstreamTooManyRequests),
        ("UpstreamUnavailable", Self::UpstreamUnavailable),
    ];

    /// The code for ECR's name of it; unknown names are kept as they are.
    pub fn from_code(code: &str) -> Self {
        Self::NAMED
            .iter()
            .find(|(name, _)| *name == code)
            .map_or_else(|| Self::Other(code.to_owned()), |(_, c)| c.clone())
    }

    /// ECR's name of the code (what reports show).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(code) => code,
            known => Self::NAMED
                .iter()
                .find(|(_, c)| c == known)
                .map_or("Unknown", |(name, _)| name),
        }
    }
}

impl fmt::Display for FailureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for FailureCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One entry of BatchDeleteImage's `failures[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    pub digest: String,
    pub code: FailureCode,
    /// `failureReason`, ECR's words.
    pub reason: String,
}

/// A failed API call, already rendered for people (operation, what, SDK message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct ApiError {
    pub operation: &'static str,
    pub message: String,
}

impl ApiError {
    /// One short line for a warning: the operation and the message up to where the SDK
    /// starts dumping the raw response (` (ResponseError(…`, ` (ServiceError(…`), at most
    /// 200 characters. The full message stays in `message` for errors that stop a run.
    pub fn brief(&self) -> String {
        let mut text = self.message.lines().next().unwrap_or_default();
        for cut in [
            " (ResponseError",
            " (ServiceError",
            " (DispatchFailure",
            " (TimeoutError",
            " (ConstructionFailure",
        ] {
            if let Some(i) = text.find(cut) {
                text = &text[..i];
            }
        }
        let mut short: String = text.chars().take(200).collect();
        if short.len() < text.len() {
            short.push('…');
        }
        format!("{}: {}", self.operation, short.trim_end())
    }
}

/// Largest id list BatchGetImage and BatchDeleteImage accept.
pub const ECR_BATCH_MAX: usize = 100;

#[async_trait::async_trait]
pub trait EcrApi: Send + Sync {
    /// Every repository (DescribeRepositories, all pages of 1000).
    async fn list_repositories(&self) -> Result<Vec<Repository>, ApiError>;
    /// Every image of `repo` (DescribeImages, all pages of 1000).
    async fn describe_images(&self, repo: &str) -> Result<Vec<EcrImage>, ApiError>;
    /// One BatchGetImage call for at most 100 index digests: digest → manifest bytes.
    async fn get_manifests(
        &self,
        repo: &str,
        digests: &[String],
    ) -> Result<Vec<(String, String)>, ApiError>;
    /// One BatchDeleteImage call for at most 100 digests; per-image failures returned.
    async fn batch_delete(
        &self,
        repo: &str,
        digests: &[String],
    ) -> Result<Vec<DeleteFailure>, ApiError>;
    /// The account's images-per-repository quota (Service Quotas), if readable.
    async fn images_per_repository_quota(&self) -> Result<Option<u64>, ApiError>;
    /// The caller's ARN as STS GetCallerIdentity gives it.
    async fn caller_arn(&self) -> Result<String, ApiError>;
    /// The registry's pull-time update exclusion list (ListPullTimeUpdateExclusions,
    /// all pages of 1000): principals whose pulls do not update `lastRecordedPullTime`.
    async fn pull_time_exclusions(&self) -> Result<Vec<String>, ApiError>;
    /// RegisterPullTimeUpdateExclusion for one principal.
    async fn register_pull_time_exclusion(&self, principal: &str) -> Result<(), ApiError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brief_is_one_short_line() {
        let dump = format!(
            "service error: AccessDeniedException: not allowed (ServiceError(ServiceError {{ raw: Response {{ {} }} }}))\nmore",
            "x".repeat(2000)
        );
        let e = ApiError {
            operation: "GetServiceQuota",
            message: dump,
        };
        assert_eq!(
            e.brief(),
            "GetServiceQuota: service error: AccessDeniedException: not allowed"
        );
        let long = ApiError {
            operation: "X",
            message: "y".repeat(500),
        };
        assert!(long.brief().chars().count() <= 204 && !long.brief().contains('\n'));
    }

    #[test]
    fn failure_codes_round_trip_and_unknown_ones_are_kept() {
        for (name, code) in &FailureCode::NAMED {
            assert_eq!(&FailureCode::from_code(name), code);
            assert_eq!(code.as_str(), *name);
        }
        let other = FailureCode::from_code("SomethingNew");
        assert_eq!(other, FailureCode::Other("SomethingNew".into()));
        assert_eq!(other.to_string(), "SomethingNew");
    }
}
