//! Lambda functions that run container images: the digest each version that can run
//! next resolved to (GetFunction → `Code.ResolvedImageUri`). What can run next is
//! `$LATEST`, the newest `keep` published versions, and every version an alias points
//! or routes to. An endpoint that does not serve Lambda has no function there: one
//! warning, and the run goes on; any other error fails the run closed.

use std::collections::BTreeMap;

use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::snapshot::{unavailable, EcsUsage};
use crate::ports::ecr::ApiError;
use crate::ports::lambda::{Alias, LambdaApi};

/// Qualifier (version) → the chain that makes it run next ("lambda fn alias prod →
/// version 3"), aliases first: the newest `keep` numbered versions and `$LATEST` too.
pub fn versions_in_use(
    function: &str,
    versions: &[String],
    aliases: &[Alias],
    keep: usize,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for a in aliases {
        out.entry(a.version.clone()).or_insert_with(|| {
            format!("lambda {function} alias {} → version {}", a.name, a.version)
        });
        for w in &a.weighted {
            out.entry(w.clone()).or_insert_with(|| {
                format!(
                    "lambda {function} alias {} (weighted) → version {w}",
                    a.name
                )
            });
        }
    }
    let mut numbered: Vec<u64> = versions.iter().filter_map(|v| v.parse().ok()).collect();
    numbered.sort_unstable_by(|a, b| b.cmp(a));
    for v in numbered.into_iter().take(keep) {
        out.entry(v.to_string())
            .or_insert_with(|| format!("lambda {function} version {v}, one of its latest {keep}"));
    }
    out.entry("$LATEST".to_owned())
        .or_insert_with(|| format!("lambda {function} $LATEST"));
    out
}

/// The digests (and references) Lambda container-image functions run next.
pub async fn read_lambda(
    api: &dyn LambdaApi,
    keep: usize,
    concurrency: usize,
) -> Result<EcsUsage, ApiError> {
    let functions = match api.list_functions().await {
        Ok(f) => f,
        Err(e) if unavailable(&e) => {
            tracing::warn!(
                "Lambda is not available on this endpoint ({}); no function's image is protected",
                e.brief()
            );
            return Ok(EcsUsage::default());
        }
        Err(e) => return Err(e),
    };
    let images: Vec<String> = functions
        .into_iter()
        .filter(|f| f.is_image())
        .map(|f| f.name)
        .collect();
    let qualifiers: Vec<(String, BTreeMap<String, String>)> = stream::iter(images)
        .map(|function| async move {
            let (versions, aliases) =
                tokio::join!(api.list_versions(&function), api.list_aliases(&function));
            let in_use = versions_in_use(&function, &versions?, &aliases?, keep);
            Ok::<_, ApiError>((function, in_use))
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let reads = qualifiers.into_iter().flat_map(|(function, in_use)| {
        in_use
            .into_iter()
            .map(move |(qualifier, origin)| (function.clone(), qualifier, origin))
    });
    let codes: Vec<(String, crate::ports::lambda::FunctionCode)> = stream::iter(reads)
        .map(|(function, qualifier, origin)| async move {
            let code = api.function_code(&function, &qualifier).await?;
            Ok::<_, ApiError>((origin, code))
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let mut usage = EcsUsage::default();
    for (origin, code) in codes {
        match (code.resolved_image_uri, code.image_uri) {
            (Some(resolved), _) => match resolved.split_once('@') {
                Some((_, digest)) => {
                    let chain = format!("{origin} → {digest}");
                    usage.add_digest_from(digest.to_owned(), chain.clone());
                    usage.origins.entry(resolved.clone()).or_insert(chain);
                    usage.references.insert(resolved);
                }
                None => usage.add_image_from(resolved, &origin),
            },
            (None, Some(image)) => {
                tracing::warn!(
                    "{origin}: Lambda reported no resolved image digest; protecting {image} by its tag"
                );
                usage.add_image_from(image, &origin);
            }
            (None, None) => {}
        }
    }
    tracing::debug!(digests = usage.digests.len(), "Lambda usage read");
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::lambda::FunctionCode;
    use crate::testing::usage::{FakeFunction, FakeLambda};

    fn alias(name: &str, version: &str, weighted: &[&str]) -> Alias {
        Alias {
            name: name.into(),
            version: version.into(),
            weighted: weighted.iter().map(|w| (*w).to_owned()).collect(),
        }
    }

    fn resolved(digest: &str) -> FunctionCode {
        FunctionCode {
            image_uri: Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/fn:live".into()),
            resolved_image_uri: Some(format!(
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/fn@{digest}"
            )),
        }
    }

    #[test]
    fn latest_aliased_weighted_and_the_newest_versions_run_next() {
        let versions: Vec<String> = ["$LATEST", "1", "2", "3", "10", "11"]
            .iter()
            .map(|v| (*v).to_owned())
            .collect();
        let aliases = [alias("prod", "2", &["3"]), alias("beta", "11", &[])];
        let in_use = versions_in_use("fn", &versions, &aliases, 2);
        let keys: Vec<&str> = in_use.keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["$LATEST", "10", "11", "2", "3"]);
        assert_eq!(in_use["2"], "lambda fn alias prod → version 2");
        assert_eq!(in_use["3"], "lambda fn alias prod (weighted) → version 3");
        assert_eq!(in_use["11"], "lambda fn alias beta → version 11");
        assert_eq!(in_use["10"], "lambda fn version 10, one of its latest 2");
        assert_eq!(in_use["$LATEST"], "lambda fn $LATEST");
    }

    fn fake() -> FakeLambda {
        let mut f = FakeLambda::default();
        let mut versions = BTreeMap::new();
        versions.insert("$LATEST".to_owned(), resolved("sha256:latest"));
        versions.insert("1".to_owned(), resolved("sha256:v1"));
        versions.insert("2".to_owned(), resolved("sha256:v2"));
        versions.insert("3".to_owned(), resolved("sha256:v3"));
        f.functions.insert(
            "fn".into(),
            FakeFunction {
                package_type: Some("Image".into()),
                versions,
                aliases: vec![alias("prod", "1", &[])],
            },
        );
        f.functions.insert(
            "zip".into(),
            FakeFunction {
                package_type: Some("Zip".into()),
                ..FakeFunction::default()
            },
        );
        f
    }

    #[tokio::test]
    async fn image_functions_protect_the_digests_they_resolved() {
        let f = fake();
        let usage = read_lambda(&f, 1, 2).await.unwrap();
        let digests: Vec<&str> = usage.digests.iter().map(String::as_str).collect();
        assert_eq!(digests, vec!["sha256:latest", "sha256:v1", "sha256:v3"]);
        assert_eq!(
            usage.origins["sha256:v1"],
            "lambda fn alias prod → version 1 → sha256:v1"
        );
        assert_eq!(f.calls("GetFunction"), 3, "one per version that runs next");
        assert_eq!(
            f.calls("ListVersionsByFunction"),
            1,
            "not for the zip function"
        );
    }

    #[test]
    fn a_lambda_chain_reads_as_in_use_by_lambda_from_any_account() {
        use crate::ecr_prune::planner::Reason;
        let chain = "lambda fn alias prod → version 1 → sha256:v1";
        assert_eq!(
            Reason::InUseByEcs(chain.into()).to_string(),
            format!("in use by Lambda ({chain})")
        );
        let other =
            format!("account 210987654321 (role arn:aws:iam::210987654321:role/r): {chain}");
        assert!(Reason::InUseByEcs(other)
            .to_string()
            .starts_with("in use by Lambda (account 210987654321"));
        assert!(
            Reason::InUseByEcs("schedule nightly, task definition etl:7: repo:v1".into())
                .to_string()
                .starts_with("in use by ECS (")
        );
    }

    #[tokio::test]
    async fn an_unavailable_lambda_is_skipped_and_a_denied_read_fails_closed() {
        let mut f = fake();
        f.unavailable = true;
        assert!(read_lambda(&f, 1, 2).await.unwrap().digests.is_empty());
        f.unavailable = false;
        f.get_denied = true;
        let e = read_lambda(&f, 1, 2).await.unwrap_err();
        assert_eq!(e.operation, "GetFunction");
    }
}
