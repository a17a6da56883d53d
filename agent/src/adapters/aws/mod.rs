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

/// Load the SDK configuration once per process.
pub async fn sdk_config(region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_owned()));
    }
    loader.load().await
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
