//! Ports for `bootstrap`'s sources: a Secrets Manager secret's string and an S3
//! object's bytes. Errors say only what kind of failure happened (the retry loop
//! decides on that) and carry the service's message — never the fetched value.

use std::fmt;

use async_trait::async_trait;

/// Why a fetch failed. `Transient` is retried until the deadline; the rest fail at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("not found ({0})")]
    NotFound(String),
    #[error("access denied ({0})")]
    AccessDenied(String),
    #[error("transient error ({0})")]
    Transient(String),
    #[error("{0}")]
    Other(String),
}

impl FetchError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// A fetched value that may hold credentials. Its `Debug` never shows the content.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretText(<redacted>, {} bytes)", self.0.len())
    }
}

/// AWS Secrets Manager, reduced to what bootstrap needs.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// Whether a default region is known (`--region`, the environment, a profile or
    /// IMDS). Without one only secrets given by full ARN can be read.
    fn has_region(&self) -> bool;

    /// The `SecretString` of a secret (name or full ARN; an ARN's region is used).
    async fn get_secret_string(&self, id: &str) -> Result<SecretText, FetchError>;
}

/// Amazon S3, reduced to what bootstrap needs.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Whether a region is known; without one no object can be read.
    fn has_region(&self) -> bool;

    /// The whole body of an object.
    async fn get_object(&self, bucket: &str, key: &str) -> Result<SecretText, FetchError>;
}

/// The region of a Secrets Manager ARN (`arn:PARTITION:secretsmanager:REGION:…`):
/// such a secret is read in its own region, whatever the default is.
pub fn arn_region(id: &str) -> Option<String> {
    let mut parts = id.splitn(6, ':');
    let (arn, _partition, service, region) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (arn == "arn" && service == "secretsmanager" && !region.is_empty()).then(|| region.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_regions() {
        assert_eq!(
            arn_region("arn:aws:secretsmanager:eu-west-1:123456789012:secret:hub-AbCdEf")
                .as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            arn_region("arn:aws-cn:secretsmanager:cn-north-1:1:secret:x").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(arn_region("prod/gitlab-registry"), None);
        assert_eq!(arn_region("arn:aws:s3:::bucket"), None);
    }

    #[test]
    fn secret_text_debug_hides_the_value() {
        let t = SecretText::new("CANARY");
        assert_eq!(format!("{t:?}"), "SecretText(<redacted>, 6 bytes)");
    }
}
