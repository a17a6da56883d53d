//! Shared AWS SDK configuration: the default credential chain (env, profile, IMDSv2),
//! region from `--region`, the environment or IMDS, and `AWS_ENDPOINT_URL[_<SERVICE>]`
//! honoured by the SDK itself (the tests point it at moto this way).

pub mod ecr;
pub mod ecs;
pub mod lambda;
pub mod schedules;
pub mod secrets;

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_smithy_types::retry::RetryConfig;

/// Are there CA certificates where the SDK's TLS connector looks (`SSL_CERT_FILE`,
/// `SSL_CERT_DIR`, else the platform's store)? That connector (aws-smithy's legacy
/// rustls one) asserts it finds some when the first client is built, and with
/// `panic = "abort"` the process — the daemon too — dies without a line saying why; so
/// every AWS command asks here first and fails with one line (exit 1), for an empty
/// store and for one that cannot be read (the connector panics on that as well). Falls
/// short: a store holding only certificates rustls cannot parse passes here and still
/// trips the assert.
pub fn check_ca_certificates() -> Result<(), String> {
    let found = rustls_native_certs::load_native_certs();
    let var =
        |name: &str| std::env::var_os(name).map(|v| format!("{name}={}", v.to_string_lossy()));
    let place = match [var("SSL_CERT_FILE"), var("SSL_CERT_DIR")] {
        [None, None] => "the system certificate store".to_owned(),
        set => set.into_iter().flatten().collect::<Vec<_>>().join(" and "),
    };
    // The connector panics on a load error too, not only on an empty store.
    if let Some(error) = found.errors.first() {
        return Err(format!(
            "cannot read the CA certificates in {place} ({error}); fix or unset SSL_CERT_FILE/SSL_CERT_DIR, or install ca-certificates"
        ));
    }
    if found.certs.is_empty() {
        return Err(format!(
            "no CA certificates found in {place}; install ca-certificates (or point SSL_CERT_FILE at a CA bundle)"
        ));
    }
    Ok(())
}

/// Load the SDK configuration once per process.
pub async fn sdk_config(region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_owned()));
    }
    loader.load().await
}

/// `sdk` (its credentials, endpoint and retry) for another region: the usage of
/// `--usage-region`. With `AWS_ENDPOINT_URL` set (tests) every region goes to that one
/// endpoint and only the signing region differs, which moto keys its state by.
pub fn in_region(sdk: &aws_config::SdkConfig, region: &str) -> aws_config::SdkConfig {
    sdk.to_builder()
        .region(Region::new(region.to_owned()))
        .build()
}

/// The SDK's standard retry for the `ecr-prune` clients: throttling and transient
/// errors retried with exponential backoff, up to 8 attempts.
pub fn standard_retry() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(8)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(20))
}

/// An SDK error as a port error: the operation and the SDK's full message.
pub fn api_error<E: std::error::Error>(
    operation: &'static str,
    e: E,
) -> crate::ports::ecr::ApiError {
    crate::ports::ecr::ApiError {
        operation,
        message: aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
    }
}

/// An SDK timestamp as a chrono one (None when absent or out of range).
pub fn time(t: Option<&aws_smithy_types::DateTime>) -> Option<chrono::DateTime<chrono::Utc>> {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Logs every HTTP attempt of every AWS call at debug level, target
/// `shipshape::aws_call`, with fields `service` and `operation` (never the payload).
/// The API-economy benchmarks and tests count these lines; retries count too.
#[derive(Debug, Default, Clone, Copy)]
pub struct CallLogger;

impl Intercept for CallLogger {
    fn name(&self) -> &'static str {
        "shipshape::CallLogger"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            tracing::debug!(
                target: "shipshape::aws_call",
                service = meta.service(),
                operation = meta.name(),
                "aws call"
            );
        }
        Ok(())
    }
}

/// `sdk` with the credentials of `role_arn`, assumed once through STS (AssumeRole,
/// session `shipshape-ecr-usage`, one hour: usage is read at the start of a run).
pub async fn assume_role(
    sdk: &aws_config::SdkConfig,
    role_arn: &str,
) -> Result<aws_config::SdkConfig, crate::ports::ecr::ApiError> {
    use aws_sdk_sts::config::{Credentials, SharedCredentialsProvider};
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(sdk)
            .interceptor(CallLogger)
            .retry_config(standard_retry())
            .build(),
    );
    let out = sts
        .assume_role()
        .role_arn(role_arn)
        .role_session_name("shipshape-ecr-usage")
        .send()
        .await
        .map_err(|e| api_error("AssumeRole", e))?;
    let c = out
        .credentials()
        .ok_or_else(|| crate::ports::ecr::ApiError {
            operation: "AssumeRole",
            message: "STS returned no credentials".into(),
        })?;
    let expiry = std::time::SystemTime::try_from(*c.expiration()).ok();
    let credentials = Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        expiry,
        "shipshape-usage-role",
    );
    Ok(sdk
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build())
}
