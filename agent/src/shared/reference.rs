//! Image references as the engine prints them: the familiar form (Docker Hub's
//! `docker.io/library/` dropped), the repository of `repo:tag` / `repo@digest`, and the
//! short ID. Pure string helpers shared by gc's policy, its docker-gc matcher and its
//! executor.

/// A reference in the engine's familiar form: Docker Hub's `docker.io/` (and
/// `library/` for official images) dropped, as `docker images` prints it.
pub fn familiar(reference: &str) -> &str {
    for hub in ["docker.io/", "index.docker.io/", "registry-1.docker.io/"] {
        if let Some(rest) = reference.strip_prefix(hub) {
            let rest = rest.strip_prefix("library/").unwrap_or(rest);
            return rest;
        }
    }
    reference
}

/// The repository part of `repo:tag` (or `repo@digest`); a registry port is not a tag.
pub fn repo_of(reference: &str) -> &str {
    if let Some((repo, _)) = reference.split_once('@') {
        return repo;
    }
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(colon) => &reference[..slash + colon],
        None => reference,
    }
}

/// The 12-character short form of an ID, as `docker` prints it.
pub fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_of_handles_registry_ports_and_digests() {
        assert_eq!(repo_of("redis:7"), "redis");
        assert_eq!(repo_of("localhost:5000/app:1"), "localhost:5000/app");
        assert_eq!(repo_of("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(repo_of("app@sha256:abcd"), "app");
    }
}
