//! The protection rules, in the order SPEC lists them: in use by a container
//! (by ID), excluded, ECS agent image, younger than min-age, newest N of its
//! repository; then the parents of protected images (the engine would refuse them).

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::since;
use crate::image_gc::policy::{ecs_agent_matcher, Policy};
use crate::image_gc::reason::ImageReason;
use crate::ports::docker::{ContainerInfo, ImageInfo};
use crate::shared::reference::{repo_of, short_id};

/// Image ID → the first container that stays and uses it. A container protects
/// its image by ID: a tag that moved does not matter, the container still holds
/// the old image.
pub(super) fn users<'a>(
    containers: &'a [ContainerInfo],
    removed: &HashSet<&str>,
) -> HashMap<&'a str, &'a ContainerInfo> {
    let mut users: HashMap<&str, &ContainerInfo> = HashMap::new();
    for c in containers {
        if !removed.contains(c.id.as_str()) {
            users.entry(c.image_id.as_str()).or_insert(c);
        }
    }
    users
}

/// Per image (listing order): the first rule that protects it, if any.
pub(super) fn protection(
    images: &[ImageInfo],
    users: &HashMap<&str, &ContainerInfo>,
    last_used: &[DateTime<Utc>],
    policy: &Policy,
    now: DateTime<Utc>,
) -> Vec<Option<ImageReason>> {
    let newest = newest_per_repo(images, policy.keep_per_repo);
    let ecs = ecs_agent_matcher();
    images
        .iter()
        .enumerate()
        .map(|(idx, img)| {
            if let Some(c) = users.get(img.id.as_str()) {
                return Some(ImageReason::InUse {
                    container: short_id(&c.id).to_owned(),
                });
            }
            if let Some(p) = policy
                .excludes
                .matching(&img.id, &img.repo_tags, &img.repo_digests)
            {
                return Some(ImageReason::Excluded {
                    pattern: p.to_owned(),
                });
            }
            if policy.protect_ecs_agent && img.repo_tags.iter().any(|t| ecs.is_match(t)) {
                return Some(ImageReason::EcsAgent);
            }
            if since(now, last_used[idx]) < policy.min_age {
                return Some(ImageReason::Young {
                    min_age: policy.min_age,
                });
            }
            newest.get(&idx).map(|repo| ImageReason::NewestOfRepo {
                keep: policy.keep_per_repo,
                repo: repo.clone(),
            })
        })
        .collect()
}

/// The engine refuses to delete the parent of an image that stays; say so up
/// front: walk up from every protected image, protecting each ancestor.
pub(super) fn protect_parents(
    images: &[ImageInfo],
    by_id: &HashMap<&str, usize>,
    protection: &mut [Option<ImageReason>],
) {
    let protected_now: Vec<usize> = (0..images.len())
        .filter(|&i| protection[i].is_some())
        .collect();
    for start in protected_now {
        let mut child = start;
        while let Some(&parent) = images[child]
            .parent_id
            .as_deref()
            .and_then(|p| by_id.get(p))
        {
            if protection[parent].is_some() {
                break;
            }
            protection[parent] = Some(ImageReason::ParentOfKept {
                child: short_id(&images[child].id).to_owned(),
            });
            child = parent;
        }
    }
}

/// Image index → the repository whose newest `keep` it is among. An image counts
/// once in every repository it has a tag in; dangling images belong to none.
fn newest_per_repo(images: &[ImageInfo], keep: u32) -> HashMap<usize, String> {
    let mut out = HashMap::new();
    if keep == 0 {
        return out;
    }
    let mut repos: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, img) in images.iter().enumerate() {
        let mut seen = HashSet::new();
        for tag in &img.repo_tags {
            let repo = repo_of(tag);
            if seen.insert(repo) {
                repos.entry(repo).or_default().push(i);
            }
        }
    }
    let mut names: Vec<&&str> = repos.keys().collect();
    names.sort();
    let keep = usize::try_from(keep).unwrap_or(usize::MAX);
    for name in names {
        let mut members = repos[*name].clone();
        members.sort_by_key(|&i| (Reverse(images[i].created), images[i].id.as_str()));
        for &i in members.iter().take(keep) {
            out.entry(i).or_insert_with(|| (*name).to_owned());
        }
    }
    out
}
