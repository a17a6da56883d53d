//! Adapter for the Lambda port: an aws-sdk-lambda client with the `CallLogger`
//! interceptor and the SDK's standard retry. Pages at the APIs' maxima (50); SDK types
//! never leave this file. Translation only: every function comes back with its package
//! type, and the core decides which ones to follow.

use super::{api_error, standard_retry, CallLogger};
use crate::ports::lambda::{Alias, ApiError, Function, FunctionCode, LambdaApi};

/// Largest page ListFunctions, ListVersionsByFunction and ListAliases give.
const PAGE: i32 = 50;

/// Lambda through the SDK.
pub struct AwsLambda {
    lambda: aws_sdk_lambda::Client,
}

impl AwsLambda {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        let lambda = aws_sdk_lambda::Client::from_conf(
            aws_sdk_lambda::config::Builder::from(sdk)
                .interceptor(CallLogger)
                .retry_config(standard_retry())
                .build(),
        );
        Self { lambda }
    }
}

#[async_trait::async_trait]
impl LambdaApi for AwsLambda {
    async fn list_functions(&self) -> Result<Vec<Function>, ApiError> {
        let functions = self
            .lambda
            .list_functions()
            .max_items(PAGE)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| api_error("ListFunctions", e))?;
        Ok(functions
            .iter()
            .filter_map(|f| {
                Some(Function {
                    name: f.function_name()?.to_owned(),
                    package_type: f.package_type().map(|p| p.as_str().to_owned()),
                })
            })
            .collect())
    }

    async fn list_versions(&self, function: &str) -> Result<Vec<String>, ApiError> {
        let versions = self
            .lambda
            .list_versions_by_function()
            .function_name(function)
            .max_items(PAGE)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| api_error("ListVersionsByFunction", e))?;
        Ok(versions
            .iter()
            .filter_map(|v| v.version().map(str::to_owned))
            .collect())
    }

    async fn list_aliases(&self, function: &str) -> Result<Vec<Alias>, ApiError> {
        let aliases = self
            .lambda
            .list_aliases()
            .function_name(function)
            .max_items(PAGE)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| api_error("ListAliases", e))?;
        Ok(aliases
            .iter()
            .filter_map(|a| {
                let mut weighted: Vec<String> = a
                    .routing_config()
                    .and_then(|r| r.additional_version_weights())
                    .map(|w| w.keys().cloned().collect())
                    .unwrap_or_default();
                weighted.sort();
                Some(Alias {
                    name: a.name()?.to_owned(),
                    version: a.function_version()?.to_owned(),
                    weighted,
                })
            })
            .collect())
    }

    async fn function_code(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<FunctionCode, ApiError> {
        let out = self
            .lambda
            .get_function()
            .function_name(function)
            .qualifier(qualifier)
            .send()
            .await
            .map_err(|e| api_error("GetFunction", e))?;
        Ok(out
            .code()
            .map(|c| FunctionCode {
                image_uri: c.image_uri().map(str::to_owned),
                resolved_image_uri: c.resolved_image_uri().map(str::to_owned),
            })
            .unwrap_or_default())
    }
}
