//! Grouping a repository's manifests into units (pure): an image index with its child
//! and attestation manifests, plus its referrers (`subjectManifestDigest`, or cosign's
//! `sha256-<hex>.sig|.att|.sbom` tags). Rules count and age units, never bare children,
//! so a multi-arch image or a signature is kept or expired as a whole. An image ECR
//! gives no push time counts as pushed `now`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::ports::ecr::EcrImage;

/// One unit: what rules see as "an image".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The digest shown for the unit: its newest root.
    pub digest: String,
    /// Tags of the unit's roots (an index or plain image), which rules select on.
    pub tags: Vec<String>,
    /// Every tag in the unit, referrers' included (for `--protect-tag`).
    pub all_tags: Vec<String>,
    /// Push time of the newest root.
    pub pushed_at: DateTime<Utc>,
    /// Newest pull of any member, else `pushed_at` (for `sinceImagePulled`).
    pub last_used: DateTime<Utc>,
    pub bytes: u64,
    /// Every member with its deletion stage: 0 = referrers and roots, 1 = children of
    /// an index, 2 = grandchildren… ECR refuses to delete a manifest an index still lists.
    pub members: Vec<(String, u8)>,
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

struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[rb] = ra;
        }
    }
}

/// Group `images` into units. `children` maps an index digest to the digests its
/// manifest lists. A child shared by two indexes joins them into one unit (it may go
/// only when both go). Units come back newest first; `now` stands in for a missing push
/// time (`pushed_at`).
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
    let mut uf = UnionFind {
        parent: (0..images.len()).collect(),
    };
    // child index → parent indexes present in the repository
    let mut parents: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut is_referrer = vec![false; images.len()];
    for (i, img) in images.iter().enumerate() {
        if let Some(list) = children.get(&img.digest) {
            for child in list {
                if let Some(&c) = position.get(child.as_str()) {
                    if c != i {
                        parents.entry(c).or_default().push(i);
                        uf.union(i, c);
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
                    uf.union(s, i);
                }
            }
        }
    }
    let mut components: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..images.len() {
        let root = uf.find(i);
        components.entry(root).or_default().push(i);
    }
    let mut units: Vec<Unit> = components
        .into_values()
        .map(|members| build_unit(images, &members, &parents, &is_referrer, now))
        .collect();
    units.sort_by(|a, b| {
        b.pushed_at
            .cmp(&a.pushed_at)
            .then_with(|| a.digest.cmp(&b.digest))
    });
    units
}

fn build_unit(
    images: &[EcrImage],
    members: &[usize],
    parents: &HashMap<usize, Vec<usize>>,
    is_referrer: &[bool],
    now: DateTime<Utc>,
) -> Unit {
    let pushed = |i: usize| pushed_at(&images[i], now);
    let is_child = |i: usize| parents.contains_key(&i);
    let mut roots: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&i| !is_child(i) && !is_referrer[i])
        .collect();
    if roots.is_empty() {
        // Only possible with a cycle of references; treat every member as a root.
        roots = members.to_vec();
    }
    // Depth of each member below the roots, so indexes are deleted before children.
    let mut depth: HashMap<usize, u8> = HashMap::new();
    for &m in members {
        depth.insert(m, stage(m, parents, 0));
    }
    let newest = roots
        .iter()
        .copied()
        .max_by(|&a, &b| {
            pushed(a)
                .cmp(&pushed(b))
                .then_with(|| images[b].digest.cmp(&images[a].digest))
        })
        .unwrap_or(members[0]);
    let tags: BTreeSet<String> = roots.iter().flat_map(|&i| images[i].tags.clone()).collect();
    let all_tags: BTreeSet<String> = members
        .iter()
        .flat_map(|&i| images[i].tags.clone())
        .collect();
    let last_used = members
        .iter()
        .map(|&i| images[i].last_pulled.unwrap_or_else(|| pushed(i)))
        .max()
        .unwrap_or_else(|| pushed(newest))
        .max(pushed(newest));
    let mut ordered: Vec<(String, u8)> = members
        .iter()
        .map(|&i| {
            (
                images[i].digest.clone(),
                depth.get(&i).copied().unwrap_or(0),
            )
        })
        .collect();
    ordered.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    Unit {
        digest: images[newest].digest.clone(),
        tags: tags.into_iter().collect(),
        all_tags: all_tags.into_iter().collect(),
        pushed_at: pushed(newest),
        last_used,
        bytes: members.iter().map(|&i| images[i].size).sum(),
        members: ordered,
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
    fn shared_child_joins_two_indexes() {
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
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].digest, "sha256:i2");
        assert_eq!(units[0].tags, vec!["a".to_owned(), "b".to_owned()]);
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
