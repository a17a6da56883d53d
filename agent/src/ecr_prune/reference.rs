//! Image references as ECS, EventBridge, Scheduler and Lambda name them, parsed (pure).
//! An ECR registry host names an account and a region in one of several forms, and a
//! reference protects a repository by name only when account, region and repository
//! all match: a same-named repository in another account or region is another image.

/// One ECR repository as a reference names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrName<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub repository: &'a str,
}

/// What a reference points at inside its repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Tag(&'a str),
    Digest(&'a str),
}

/// The account and region of an ECR registry host, in every form ECR serves:
/// `<acct>.dkr.ecr.<region>.amazonaws.com` (and `.amazonaws.com.cn` in China),
/// FIPS `<acct>.dkr.ecr-fips.<region>.amazonaws.com`, dual-stack
/// `<acct>.dkr-ecr.<region>.on.aws` and dual-stack FIPS `<acct>.dkr-ecr-fips.<region>.on.aws`.
/// A port (`:443`) is ignored; anything else is not an ECR host.
pub fn ecr_host(host: &str) -> Option<(&str, &str)> {
    let host = host.split_once(':').map_or(host, |(h, _)| h);
    let (account, rest) = host.split_once('.')?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let region = if let Some(r) = rest
        .strip_prefix("dkr.ecr.")
        .or_else(|| rest.strip_prefix("dkr.ecr-fips."))
    {
        r.strip_suffix(".amazonaws.com")
            .or_else(|| r.strip_suffix(".amazonaws.com.cn"))?
    } else if let Some(r) = rest
        .strip_prefix("dkr-ecr.")
        .or_else(|| rest.strip_prefix("dkr-ecr-fips."))
    {
        r.strip_suffix(".on.aws")?
    } else {
        return None;
    };
    let plausible = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    plausible.then_some((account, region))
}

/// `host/path:tag` or `host/path@sha256:…` → (name, target); no tag means `latest`.
pub fn split(reference: &str) -> (&str, Target<'_>) {
    if let Some((name, digest)) = reference.split_once('@') {
        return (name, Target::Digest(digest));
    }
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(colon) => (
            &reference[..slash + colon],
            Target::Tag(&reference[slash + colon + 1..]),
        ),
        None => (reference, Target::Tag("latest")),
    }
}

/// The ECR repository an image name (`host/path`, no tag) names, if its host is ECR's.
pub fn ecr_name(name: &str) -> Option<EcrName<'_>> {
    let (host, repository) = name.split_once('/')?;
    let (account, region) = ecr_host(host)?;
    (!repository.is_empty()).then_some(EcrName {
        account,
        region,
        repository,
    })
}

/// Does the image name `name` point at the repository whose URI is `uri` (as
/// DescribeRepositories gives it) and name is `repository`? The same account, region and
/// repository in any host form; an exact URI match when `uri` is not an ECR URI.
pub fn names_repository(name: &str, uri: &str, repository: &str) -> bool {
    if name == uri {
        return true;
    }
    match (ecr_name(name), ecr_name(uri)) {
        (Some(n), Some(local)) => {
            n.account == local.account && n.region == local.region && n.repository == repository
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app";

    #[test]
    fn every_ecr_host_form_parses_to_account_and_region() {
        for (host, region) in [
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com", "us-east-1"),
            (
                "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
                "us-east-1",
            ),
            ("123456789012.dkr-ecr.us-east-1.on.aws", "us-east-1"),
            (
                "123456789012.dkr-ecr-fips.us-gov-west-1.on.aws",
                "us-gov-west-1",
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "cn-north-1",
            ),
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com:443",
                "eu-west-1",
            ),
        ] {
            assert_eq!(ecr_host(host), Some(("123456789012", region)), "{host}");
        }
        for host in [
            "docker.io",
            "public.ecr.aws",
            "12345.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.example.com",
            "123456789012.dkr.ecr..amazonaws.com",
            "localhost:5000",
        ] {
            assert_eq!(ecr_host(host), None, "{host}");
        }
    }

    #[test]
    fn every_host_form_of_the_same_repository_names_it() {
        for name in [
            URI,
            "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/team/app",
            "123456789012.dkr-ecr.us-east-1.on.aws/team/app",
            "123456789012.dkr-ecr-fips.us-east-1.on.aws/team/app",
        ] {
            assert!(names_repository(name, URI, "team/app"), "{name}");
        }
        let cn = "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app";
        assert!(names_repository(
            "123456789012.dkr-ecr.cn-north-1.on.aws/app",
            cn,
            "app"
        ));
    }

    #[test]
    fn another_account_region_or_repository_does_not_name_it() {
        for name in [
            "210987654321.dkr.ecr.us-east-1.amazonaws.com/team/app",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app2",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
            "docker.io/team/app",
            "team/app",
        ] {
            assert!(!names_repository(name, URI, "team/app"), "{name}");
        }
    }

    #[test]
    fn references_split_into_name_and_target() {
        assert_eq!(split("h:5000/a/b:v1"), ("h:5000/a/b", Target::Tag("v1")));
        assert_eq!(split("h:5000/a/b"), ("h:5000/a/b", Target::Tag("latest")));
        assert_eq!(split("a@sha256:x"), ("a", Target::Digest("sha256:x")));
    }
}
