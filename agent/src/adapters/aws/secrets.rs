//! The `SecretSource` and `ObjectStore` ports on aws-sdk-secretsmanager and
//! aws-sdk-s3. SDK retries are off and each attempt is time-boxed so that
//! bootstrap's own retry loop owns the `--timeout` budget; SDK errors are
//! classified into not-found / access-denied / transient / other.

use std::collections::HashMap;
use std::error::Error as _;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{Region, SdkConfig};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use tokio::sync::Mutex;

use super::{sdk_config, CallLogger};
use crate::ports::secrets::{arn_region, FetchError, ObjectStore, SecretSource, SecretText};

/// Per-attempt bounds; the caller's deadline bounds the total.
fn timeouts(total: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(total.min(Duration::from_secs(5)))
        .operation_attempt_timeout(total.min(Duration::from_secs(30)))
        .build()
}

/// Secrets Manager and S3 clients built from one `SdkConfig`. A secret given by ARN
/// is read in the ARN's region with a client made (once) for that region.
pub struct AwsSecrets {
    sdk: SdkConfig,
    timeouts: TimeoutConfig,
    secrets: Mutex<HashMap<Option<String>, aws_sdk_secretsmanager::Client>>,
    s3: aws_sdk_s3::Client,
}

impl AwsSecrets {
    /// Load the shared SDK configuration (`--region` or the default chain) and build
    /// the clients. `total` is `--timeout`: no single attempt may take longer.
    pub async fn connect(region: Option<&str>, total: Duration) -> Self {
        Self::new(&sdk_config(region).await, total)
    }

    fn new(sdk: &SdkConfig, total: Duration) -> Self {
        let timeouts = timeouts(total);
        // Against a custom endpoint (moto, MinIO) virtual-hosted bucket names do not resolve.
        let custom_endpoint =
            sdk.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        let s3_conf = aws_sdk_s3::config::Builder::from(sdk)
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts.clone())
            .force_path_style(custom_endpoint)
            .interceptor(CallLogger)
            .build();
        Self {
            sdk: sdk.clone(),
            timeouts,
            secrets: Mutex::new(HashMap::new()),
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
        }
    }

    async fn secrets_client(&self, region: Option<String>) -> aws_sdk_secretsmanager::Client {
        let mut clients = self.secrets.lock().await;
        clients
            .entry(region.clone())
            .or_insert_with(|| {
                let mut conf = aws_sdk_secretsmanager::config::Builder::from(&self.sdk)
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(self.timeouts.clone())
                    .interceptor(CallLogger);
                if let Some(r) = region {
                    conf = conf.region(Region::new(r));
                }
                aws_sdk_secretsmanager::Client::from_conf(conf.build())
            })
            .clone()
    }
}

#[async_trait]
impl SecretSource for AwsSecrets {
    fn has_region(&self) -> bool {
        self.sdk.region().is_some()
    }

    async fn get_secret_string(&self, id: &str) -> Result<SecretText, FetchError> {
        let client = self.secrets_client(arn_region(id)).await;
        let out = client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(classify)?;
        if let Some(s) = out.secret_string() {
            return Ok(SecretText::new(s));
        }
        match out.secret_binary() {
            Some(blob) => String::from_utf8(blob.as_ref().to_vec())
                .map(SecretText::new)
                .map_err(|_| FetchError::Other("the secret is binary and not UTF-8 text".into())),
            None => Err(FetchError::Other("the secret has no value".into())),
        }
    }
}

#[async_trait]
impl ObjectStore for AwsSecrets {
    fn has_region(&self) -> bool {
        self.sdk.region().is_some()
    }

    async fn get_object(&self, bucket: &str, key: &str) -> Result<SecretText, FetchError> {
        let out = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(classify)?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| FetchError::Transient(format!("reading the body failed: {e}")))?;
        String::from_utf8(body.into_bytes().to_vec())
            .map(SecretText::new)
            .map_err(|_| FetchError::Other("the object is not UTF-8 text".into()))
    }
}

/// The sources of a run that names none (only `--cluster`/`--set`): no AWS
/// configuration is loaded, so such a run never waits for IMDS. Every call fails;
/// none is made, since the settings name no secret and no object.
#[derive(Debug, Default, Clone, Copy)]
pub struct NotConnected;

const NOT_CONNECTED: &str = "AWS was not set up for this run (no secret or S3 source given)";

#[async_trait]
impl SecretSource for NotConnected {
    fn has_region(&self) -> bool {
        true
    }

    async fn get_secret_string(&self, _id: &str) -> Result<SecretText, FetchError> {
        Err(FetchError::Other(NOT_CONNECTED.into()))
    }
}

#[async_trait]
impl ObjectStore for NotConnected {
    fn has_region(&self) -> bool {
        true
    }

    async fn get_object(&self, _bucket: &str, _key: &str) -> Result<SecretText, FetchError> {
        Err(FetchError::Other(NOT_CONNECTED.into()))
    }
}

/// Service error codes that mean "try again".
const TRANSIENT_CODES: [&str; 9] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalServiceError",
];

/// Map an SDK error onto the port's error kinds. Only service codes, messages and
/// transport errors are used; no request or response body is ever included.
fn classify<E>(err: SdkError<E, HttpResponse>) -> FetchError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or("").to_owned();
            let message = one_line(service.err().message().unwrap_or(""));
            let text = match (code.is_empty(), message.is_empty()) {
                (false, false) => format!("{code}: {message}"),
                (false, true) => code.clone(),
                (true, false) => format!("HTTP {status}: {message}"),
                (true, true) => format!("HTTP {status}"),
            };
            if (200..300).contains(&status) {
                // A success status with a body that is not the operation's answer.
                FetchError::Other(format!(
                    "the answer (HTTP {status}) is not a valid AWS response{}",
                    if code.is_empty() {
                        String::new()
                    } else {
                        format!(" ({code})")
                    }
                ))
            } else if status >= 500 || status == 429 || TRANSIENT_CODES.contains(&code.as_str()) {
                FetchError::Transient(text)
            } else if status == 404
                || matches!(
                    code.as_str(),
                    "ResourceNotFoundException" | "NoSuchKey" | "NoSuchBucket" | "NotFound"
                )
            {
                FetchError::NotFound(text)
            } else if status == 403 || code.starts_with("AccessDenied") {
                FetchError::AccessDenied(text)
            } else {
                FetchError::Other(text)
            }
        }
        // Timeouts, connection failures, and credential resolution (IMDS not yet
        // up at boot) all surface here: worth another attempt.
        SdkError::TimeoutError(_) => FetchError::Transient("the request timed out".into()),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            FetchError::Transient(short_chain(&err))
        }
        _ => FetchError::Other(short_chain(&err)),
    }
}

/// The error's cause chain on one line, e.g. "dispatch failure: io error: Connection refused".
fn short_chain<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: std::error::Error + 'static,
{
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p == &text) {
            parts.push(text);
        }
        source = s.source();
    }
    let joined = parts.join(": ");
    let text = if joined.is_empty() {
        DisplayErrorContext(err).to_string()
    } else {
        joined
    };
    one_line(&text)
}

/// Errors are shown on one line; the credential chain's message spans several.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn not_connected_refuses_every_call() {
        let e = NotConnected.get_secret_string("id").await.unwrap_err();
        assert!(!e.is_transient(), "{e}");
        assert!(NotConnected.get_object("b", "k").await.is_err());
    }

    #[test]
    fn messages_become_one_line() {
        assert_eq!(
            one_line("no credentials:\n  Environment: x\n  Profile: y"),
            "no credentials: Environment: x Profile: y"
        );
    }
}
