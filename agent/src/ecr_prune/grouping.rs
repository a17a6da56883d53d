//! Grouping a repository's manifests into units (pure). A unit is one root (an image
//! index or plain image that no index in the repository lists, or a child that carries
//! tags of its own) with everything below it: the children its manifest lists
//! (recursively) and the referrers (`subjectManifestDigest`, or cosign's
//! `sha256-<hex>.sig|.att|.sbom` tags) of any of those. Rules count and age units, never
//! bare children, so a multi-arch image or a signature is kept or expired as a whole.
//! A child that two indexes list belongs to BOTH units: units may overlap, and the
//! planner deletes a shared manifest only when every unit holding it expires
//! (`planner::plan_repository`). An image ECR gives no push time counts as pushed `now`.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::ports::ecr::EcrImage;

/// One unit: what rules see as "an image".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The unit's root digest.
    pub digest: String,
    /// Tags of the unit's root (an index or plain image), which rules select on.
    pub tags: Vec<String>,
    /// Every tag in the unit, referrers' included (for `--protect-tag`).
    pub all_tags: Vec<String>,
    /// Push time of the root.
    pub pushed_at: DateTime<Utc>,
    /// Newest pull of the root or a member no other unit holds, else `pushed_at`
    /// (for `sinceImagePulled`).
    pub last_used: DateTime<Utc>,
    pub bytes: u64,
    /// Every member with its deletion stage: 0 = referrers and roots, 1 = children of
    /// an index, 2 = grandchildren… ECR refuses to delete a manifest an index still lists.
    pub members: Vec<(String, u8)>,
    /// The root is an image index or manifest list (not a plain image).
    pub root_is_index: bool,
}

impl Unit {
    pub fn image_count(&self) -> usize {
        self.members.len()
    }

    pub fn contains(&self, digest: &str) -> bool {
        self.members.iter().any(|(d, _)| d == digest)
    }
}

/// When an image was pushed, for rules and protections. ECR may leave `imagePushedAt`
/// out; an unknown age must never make an image look old enough to expire, so such an
/// image counts as pushed `now`.
pub fn pushed_at(image: &EcrImage, now: DateTime<Utc>) -> DateTime<Utc> {
    image.pushed_at.unwrap_or(now)
}

/// The subject digest a cosign tag points at (`sha256-<hex>.sig` → `sha256:<hex>`).
pub fn cosign_subject(tag: &str) -> Option<String> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, suffix) = rest.split_once('.')?;
    if !matches!(suffix, "sig" | "att" | "sbom") {
        return None;
    }
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(format!("sha256:{hex}"))
}

/// Group `images` into units. `children` maps an index digest to the digests its
/// manifest lists. A child shared by several indexes is a member of each of their
/// units (it may go only when all of them go). Units come back newest first; `now`
/// stands in for a missing push time (`pushed_at`).
pub fn group(
    images: &[EcrImage],
    children: &HashMap<String, Vec<String>>,
    now: DateTime<Utc>,
) -> Vec<Unit> {
    let position: HashMap<&str, usize> = images
        .iter()
        .enumerate()
        .map(|(i, img)| (img.digest.as_str(), i))
        .collect();
    // child → parent indexes present; index → its present children; subject → referrers
    let mut parents: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut listed: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut referrers: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut is_referrer = vec![false; images.len()];
    for (i, img) in images.iter().enumerate() {
        if let Some(list) = children.get(&img.digest) {
            for child in list {
                if let Some(&c) = position.get(child.as_str()) {
                    if c != i {
                        parents.entry(c).or_default().push(i);
                        listed.entry(i).or_default().push(c);
                    }
                }
            }
        }
        let subjects = img
            .subject
            .iter()
            .cloned()
            .chain(img.tags.iter().filter_map(|t| cosign_subject(t)));
        for subject in subjects {
            if let Some(&s) = position.get(subject.as_str()) {
                if s != i {
                    is_referrer[i] = true;
                    referrers.entry(s).or_default().push(i);
                }
            }
        }
    }
    // A root: not a referrer of a present subject, and either listed by no index or
    // tagged itself (a tag makes a child pullable on its own, so rules see it).
    let is_root =
        |i: usize| !is_referrer[i] && (!parents.contains_key(&i) || !images[i].tags.is_empty());
    let mut closures: Vec<(usize, BTreeSet<usize>)> = Vec::new();
    let mut covered = vec![false; images.len()];
    for root in (0..images.len()).filter(|&i| is_root(i)) {
        let members = closure(root, &listed, &referrers);
        for &m in &members {
            covered[m] = true;
        }
        closures.push((root, members));
    }
    // Whatever no root reaches (a cycle of references) is a unit of its own, so nothing
    // is silently left out of the plan.
    for i in 0..images.len() {
        if !covered[i] {
            let members = closure(i, &listed, &referrers);
            for &m in &members {
                covered[m] = true;
            }
            closures.push((i, members));
        }
    }
    let mut holders: HashMap<usize, usize> = HashMap::new();
    for (_, members) in &closures {
        for &m in members {
            *holders.entry(m).or_default() += 1;
        }
    }
    let mut units: Vec<Unit> = closures
        .iter()
        .map(|(root, members)| build_unit(images, *root, members, &parents, &holders, now))
        .collect();
    units.sort_by(|a, b| {
        b.pushed_at
            .cmp(&a.pushed_at)
            .then_with(|| a.digest.cmp(&b.digest))
    });
    units
}

/// `root` with everything it lists (recursively) and the referrers of all of those.
fn closure(
    root: usize,
    listed: &HashMap<usize, Vec<usize>>,
    referrers: &HashMap<usize, Vec<usize>>,
) -> BTreeSet<usize> {
    let mut members = BTreeSet::new();
    let mut todo = vec![root];
    while let Some(m) = todo.pop() {
        if !members.insert(m) {
            continue;
        }
        todo.extend(listed.get(&m).into_iter().flatten().copied());
        todo.extend(referrers.get(&m).into_iter().flatten().copied());
    }
    members
}

fn build_unit(
    images: &[EcrImage],
    root: usize,
    members: &BTreeSet<usize>,
    parents: &HashMap<usize, Vec<usize>>,
    holders: &HashMap<usize, usize>,
    now: DateTime<Utc>,
) -> Unit {
    let pushed = |i: usize| pushed_at(&images[i], now);
    let all_tags: BTreeSet<String> = members
        .iter()
        .flat_map(|&i| images[i].tags.clone())
        .collect();
    // A pull of a manifest other units share says nothing about THIS release (pulling
    // release 3 pulls the child it shares with release 1), so only the root and what
    // this unit alone holds count for `sinceImagePulled`.
    let last_used = members
        .iter()
        .filter(|&&i| i == root || holders.get(&i).copied().unwrap_or(1) == 1)
        .map(|&i| images[i].last_pulled.unwrap_or_else(|| pushed(i)))
        .max()
        .unwrap_or_else(|| pushed(root))
        .max(pushed(root));
    let mut ordered: Vec<(String, u8)> = members
        .iter()
        .map(|&i| {
            let depth = if i == root { 0 } else { stage(i, parents, 0) };
            (images[i].digest.clone(), depth)
        })
        .collect();
    ordered.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    Unit {
        digest: images[root].digest.clone(),
        tags: images[root].tags.clone(),
        all_tags: all_tags.into_iter().collect(),
        pushed_at: pushed(root),
        last_used,
        bytes: members.iter().map(|&i| images[i].size).sum(),
        members: ordered,
        root_is_index: images[root].is_index(),
    }
}

/// Longest chain of index parents above `i` (bounded: nesting is shallow in practice).
fn stage(i: usize, parents: &HashMap<usize, Vec<usize>>, seen: u8) -> u8 {
    if seen >= 8 {
        return seen;
    }
    match parents.get(&i) {
        None => 0,
        Some(ps) => {
            1 + ps
                .iter()
                .map(|&p| stage(p, parents, seen + 1))
                .max()
                .unwrap_or(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ecr::{image, index, now, ts};

    fn group(images: &[EcrImage], children: &HashMap<String, Vec<String>>) -> Vec<Unit> {
        super::group(images, children, now())
    }

    #[test]
    fn missing_push_time_counts_as_now() {
        let mut unknown = image("unknown", &["v0"], 1);
        unknown.pushed_at = None;
        assert_eq!(pushed_at(&unknown, now()), now());
        let units = group(&[image("a", &["v1"], 50), unknown], &HashMap::new());
        assert_eq!(units[0].digest, "sha256:unknown", "newest first");
        assert_eq!(units[0].pushed_at, now());
        assert_eq!(units[0].last_used, now());
    }

    #[test]
    fn plain_images_are_one_unit_each() {
        let imgs = vec![image("a", &["v1"], 1), image("b", &["v2"], 2)];
        let units = group(&imgs, &HashMap::new());
        assert_eq!(units.len(), 2);
        assert_eq!(units[0].digest, "sha256:b", "newest first");
        assert_eq!(units[0].tags, vec!["v2".to_owned()]);
    }

    #[test]
    fn index_children_and_attestations_form_one_unit() {
        let imgs = vec![
            index("idx", &["v1"], 5),
            image("amd64", &[], 4),
            image("arm64", &[], 4),
            image("att", &[], 4),
        ];
        let children = HashMap::from([(
            "sha256:idx".to_owned(),
            vec![
                "sha256:amd64".into(),
                "sha256:arm64".into(),
                "sha256:att".into(),
            ],
        )]);
        let units = group(&imgs, &children);
        assert_eq!(units.len(), 1);
        let u = &units[0];
        assert_eq!(u.digest, "sha256:idx");
        assert_eq!(u.tags, vec!["v1".to_owned()]);
        assert_eq!(u.image_count(), 4);
        assert_eq!(
            u.members[0],
            ("sha256:idx".to_owned(), 0),
            "index deleted first"
        );
        assert!(u.members[1..].iter().all(|(_, s)| *s == 1));
        assert_eq!(u.pushed_at, ts(5));
    }

    #[test]
    fn cosign_signature_joins_its_subject() {
        let hex = "a".repeat(64);
        let subject = EcrImage {
            digest: format!("sha256:{hex}"),
            ..image("x", &["v1"], 1)
        };
        let sig = image("sig", &[&format!("sha256-{hex}.sig")], 3);
        let units = group(&[subject, sig], &HashMap::new());
        assert_eq!(units.len(), 1);
        assert_eq!(
            units[0].tags,
            vec!["v1".to_owned()],
            "signature tag is not a rule tag"
        );
        assert_eq!(units[0].all_tags.len(), 2);
        assert_eq!(
            units[0].pushed_at,
            ts(1),
            "aged by the subject, not the signature"
        );
    }

    #[test]
    fn subject_manifest_digest_referrer_joins() {
        let mut sbom = image("sbom", &[], 2);
        sbom.subject = Some("sha256:app".into());
        let units = group(&[image("app", &[], 1), sbom], &HashMap::new());
        assert_eq!(units.len(), 1);
        assert!(units[0].tags.is_empty());
        assert_eq!(units[0].digest, "sha256:app");
    }

    #[test]
    fn orphan_signature_is_its_own_unit() {
        let hex = "b".repeat(64);
        let sig = image("sig", &[&format!("sha256-{hex}.sig")], 3);
        let units = group(&[sig, image("other", &["v"], 1)], &HashMap::new());
        assert_eq!(units.len(), 2);
    }

    #[test]
    fn a_shared_child_belongs_to_every_index_that_lists_it() {
        let imgs = vec![
            index("i1", &["a"], 1),
            index("i2", &["b"], 2),
            image("c", &[], 1),
        ];
        let children = HashMap::from([
            ("sha256:i1".to_owned(), vec!["sha256:c".to_owned()]),
            ("sha256:i2".to_owned(), vec!["sha256:c".to_owned()]),
        ]);
        let units = group(&imgs, &children);
        assert_eq!(units.len(), 2, "two releases stay two units");
        assert_eq!(units[0].digest, "sha256:i2");
        assert_eq!(units[0].tags, vec!["b".to_owned()]);
        assert_eq!(units[1].tags, vec!["a".to_owned()]);
        assert!(units.iter().all(|u| u.contains("sha256:c")));
    }

    #[test]
    fn a_pull_of_a_shared_child_does_not_refresh_other_releases() {
        let mut c = image("c", &[], 1);
        c.last_pulled = Some(ts(9));
        let mut own = image("own", &[], 1);
        own.last_pulled = Some(ts(7));
        let imgs = vec![index("i1", &["a"], 1), index("i2", &["b"], 2), c, own];
        let children = HashMap::from([
            (
                "sha256:i1".to_owned(),
                vec!["sha256:c".to_owned(), "sha256:own".to_owned()],
            ),
            ("sha256:i2".to_owned(), vec!["sha256:c".to_owned()]),
        ]);
        let units = group(&imgs, &children);
        assert_eq!(units[1].digest, "sha256:i1");
        assert_eq!(
            units[1].last_used,
            ts(7),
            "own child's pull counts, shared one's not"
        );
        assert_eq!(units[0].last_used, ts(2));
    }

    #[test]
    fn a_tagged_child_is_also_a_unit_of_its_own() {
        let imgs = vec![index("i", &["v1"], 2), image("amd", &["v1-amd64"], 1)];
        let children = HashMap::from([("sha256:i".to_owned(), vec!["sha256:amd".to_owned()])]);
        let units = group(&imgs, &children);
        assert_eq!(units.len(), 2);
        assert!(units[0].contains("sha256:amd"), "still in its index's unit");
        assert_eq!(units[1].tags, vec!["v1-amd64".to_owned()]);
    }

    #[test]
    fn a_referrer_of_a_child_goes_with_the_child() {
        let mut sbom = image("sbom", &[], 3);
        sbom.subject = Some("sha256:c".into());
        let imgs = vec![index("i", &["v"], 2), image("c", &[], 1), sbom];
        let children = HashMap::from([("sha256:i".to_owned(), vec!["sha256:c".to_owned()])]);
        let units = group(&imgs, &children);
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].image_count(), 3);
    }

    #[test]
    fn a_cycle_is_still_planned() {
        let imgs = vec![index("x", &[], 1), index("y", &[], 1)];
        let children = HashMap::from([
            ("sha256:x".to_owned(), vec!["sha256:y".to_owned()]),
            ("sha256:y".to_owned(), vec!["sha256:x".to_owned()]),
        ]);
        let units = group(&imgs, &children);
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].image_count(), 2);
    }

    #[test]
    fn nested_index_orders_by_depth() {
        let imgs = vec![
            index("top", &["v"], 1),
            index("mid", &[], 1),
            image("leaf", &[], 1),
        ];
        let children = HashMap::from([
            ("sha256:top".to_owned(), vec!["sha256:mid".to_owned()]),
            ("sha256:mid".to_owned(), vec!["sha256:leaf".to_owned()]),
        ]);
        let units = group(&imgs, &children);
        assert_eq!(
            units[0].members,
            vec![
                ("sha256:top".into(), 0),
                ("sha256:mid".into(), 1),
                ("sha256:leaf".into(), 2)
            ]
        );
    }

    #[test]
    fn missing_children_are_ignored() {
        let children = HashMap::from([("sha256:i".to_owned(), vec!["sha256:gone".to_owned()])]);
        let units = group(&[index("i", &["v"], 1)], &children);
        assert_eq!(units[0].image_count(), 1);
    }

    #[test]
    fn last_used_takes_newest_pull() {
        let mut a = image("a", &["v"], 1);
        a.last_pulled = Some(ts(9));
        let units = group(&[a], &HashMap::new());
        assert_eq!(units[0].last_used, ts(9));
    }

    #[test]
    fn cosign_subject_parsing() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(
            cosign_subject(&format!("sha256-{hex}.att")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(cosign_subject(&format!("sha256-{hex}.txt")), None);
        assert_eq!(cosign_subject("sha256-abc.sig"), None);
        assert_eq!(cosign_subject("v1.sig"), None);
    }
}
