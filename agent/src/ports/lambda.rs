//! The Lambda port of `ecr-prune`: functions, their published versions and aliases, and
//! the image each version runs, as facts. Which versions protect an image is the core's
//! decision (`ecr_prune::lambda`). Each method is one API operation (or its pagination).

pub use super::ecr::ApiError;

/// One function of ListFunctions (its `$LATEST`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Function {
    pub name: String,
    /// `PackageType` (`Image` or `Zip`); None when Lambda sent none.
    pub package_type: Option<String>,
}

impl Function {
    /// A function deployed as a container image (the only kind that uses ECR).
    pub fn is_image(&self) -> bool {
        self.package_type.as_deref() == Some("Image")
    }
}

/// One alias of ListAliases.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Alias {
    pub name: String,
    /// `FunctionVersion`: the version the alias points to.
    pub version: String,
    /// `RoutingConfig.AdditionalVersionWeights` keys: versions it also routes to.
    pub weighted: Vec<String>,
}

/// What GetFunction tells about the code of one version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FunctionCode {
    /// `Code.ImageUri` as deployed (may name a tag).
    pub image_uri: Option<String>,
    /// `Code.ResolvedImageUri`: `…@sha256:…`, the digest Lambda runs.
    pub resolved_image_uri: Option<String>,
}

#[async_trait::async_trait]
pub trait LambdaApi: Send + Sync {
    /// Every function (ListFunctions, all pages of 50).
    async fn list_functions(&self) -> Result<Vec<Function>, ApiError>;
    /// Version names of one function, `$LATEST` included (ListVersionsByFunction, all
    /// pages of 50).
    async fn list_versions(&self, function: &str) -> Result<Vec<String>, ApiError>;
    /// Every alias of one function (ListAliases, all pages of 50).
    async fn list_aliases(&self, function: &str) -> Result<Vec<Alias>, ApiError>;
    /// The code of one version or alias (GetFunction with `Qualifier`).
    async fn function_code(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<FunctionCode, ApiError>;
}
