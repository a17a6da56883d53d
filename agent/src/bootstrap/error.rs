//! The one error type of `bootstrap`. Messages name the source (secret id, S3 URL,
//! path), never a fetched value, and say what to do; usage errors exit 2, the rest 1.

use std::path::PathBuf;
use std::time::Duration;

use crate::ports::secrets::FetchError;

/// Errors of this command area. Messages name the source (secret id, S3 URL, path),
/// never a fetched value.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// No AWS client can be built (no CA certificates): nothing was read or written.
    #[error("{0}")]
    Tls(String),
    #[error("invalid {key}: {message}")]
    Invalid { key: String, message: String },
    #[error(
        "nothing to write: give --cluster, --set, --registry-secret, --auth-secret or --from-s3 \
         (or the same keys in [bootstrap])"
    )]
    NothingToDo,
    #[error(
        "no AWS region for {source_name}: pass --region or set AWS_REGION (a secret given by \
         full ARN uses the ARN's region)"
    )]
    NoRegion { source_name: String },
    #[error(
        "cannot read {source_name}: {error}; {}",
        fetch_hint(source_name, error)
    )]
    Fetch {
        source_name: String,
        error: FetchError,
    },
    #[error(
        "gave up on {source_name} after {} (--timeout), last error: {last}; check network \
         access to AWS and the instance role",
        crate::config::value::format_duration(*timeout)
    )]
    Timeout {
        source_name: String,
        timeout: Duration,
        last: String,
    },
    #[error("interrupted by shutdown while reading {source_name}; nothing was written")]
    Cancelled { source_name: String },
    #[error("{source_name} {message}")]
    Content {
        source_name: String,
        message: String,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}; the existing file was left as it was", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot write {}: {source}; {} was put back, both files are as they were",
        path.display(),
        restored.display()
    )]
    RolledBack {
        path: PathBuf,
        #[source]
        source: std::io::Error,
        restored: PathBuf,
    },
    #[error(
        "cannot write {}: {source}, and putting {} back failed too: {restore_error}; check \
         both files and run bootstrap again",
        path.display(),
        other.display()
    )]
    RollbackFailed {
        path: PathBuf,
        #[source]
        source: std::io::Error,
        other: PathBuf,
        restore_error: std::io::Error,
    },
    #[error(
        "{} is a symbolic link; shipshape never follows links for files holding \
         credentials: point the path at the real file (or replace the link by it), \
         nothing was written",
        path.display()
    )]
    Symlink { path: PathBuf },
    #[error("{} {message}; fix or remove it, nothing was written", path.display())]
    DockerConfig { path: PathBuf, message: String },
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

fn fetch_hint(source_name: &str, error: &FetchError) -> &'static str {
    let s3 = source_name.starts_with("s3://");
    match (error, s3) {
        (FetchError::NotFound(_), false) => "check the secret name or ARN and the region",
        (FetchError::NotFound(_), true) => "check the bucket, key and region",
        (FetchError::AccessDenied(_), false) => {
            "allow secretsmanager:GetSecretValue (and kms:Decrypt for a customer-managed key) \
             to the instance role"
        }
        (FetchError::AccessDenied(_), true) => "allow s3:GetObject on it to the instance role",
        (FetchError::Transient(_), _) => "check network access to AWS and try again",
        (FetchError::Other(_), _) => {
            "the answer was not usable; check the endpoint (AWS_ENDPOINT_URL, a proxy in \
             between) and the secret or object"
        }
    }
}

impl BootstrapError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid { .. } | Self::NothingToDo | Self::NoRegion { .. } => {
                crate::exit::EXIT_USAGE
            }
            _ => crate::exit::EXIT_RUNTIME,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_exit_codes() {
        assert_eq!(BootstrapError::NothingToDo.exit_code(), 2);
        let e = BootstrapError::Fetch {
            source_name: "secret x".into(),
            error: FetchError::NotFound("ResourceNotFoundException".into()),
        };
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("secret x"));
        assert!(e.to_string().contains("check the secret name"));
    }

    #[test]
    fn s3_hints_name_the_s3_permission() {
        let e = BootstrapError::Fetch {
            source_name: "s3://b/k".into(),
            error: FetchError::AccessDenied("AccessDenied".into()),
        };
        assert!(e.to_string().contains("s3:GetObject"), "{e}");
    }

    #[test]
    fn no_hint_points_at_an_error_that_is_not_there() {
        for error in [
            FetchError::Other("HTTP 200".into()),
            FetchError::Transient("x".into()),
        ] {
            let e = BootstrapError::Fetch {
                source_name: "secret x".into(),
                error,
            };
            assert!(!e.to_string().contains("above"), "{e}");
        }
    }
}
