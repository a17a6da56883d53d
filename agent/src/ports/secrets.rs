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
    /// The `SecretString` of a secret (name or full ARN; an ARN's region is used).
    async fn get_secret_string(&self, id: &str) -> Result<SecretText, FetchError>;
}

/// Amazon S3, reduced to what bootstrap needs.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// The whole body of an object.
    async fn get_object(&self, bucket: &str, key: &str) -> Result<SecretText, FetchError>;
}
