//! Shared AWS SDK configuration: the default credential chain (env, profile, IMDSv2),
//! region from `--region`, the environment or IMDS, and `AWS_ENDPOINT_URL[_<SERVICE>]`
//! honoured by the SDK itself (the tests point it at moto this way).

use aws_config::{BehaviorVersion, Region};

/// Load the SDK configuration once per process.
pub async fn sdk_config(region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_owned()));
    }
    loader.load().await
}
