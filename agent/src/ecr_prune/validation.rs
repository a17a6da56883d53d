//! The validation pass after an apply (pure): the repository read again after its
//! deletions, compared with the snapshot it was planned from. A kept index must still
//! have every child it listed, a kept referrer (`subjectManifestDigest` or a cosign
//! `sha256-<hex>.sig|.att|.sbom` tag) its subject. Only what this run could have caused
//! counts: a manifest that was already missing before the run is not a loss.

use std::collections::HashSet;

use serde::Serialize;

use super::grouping::cosign_subject;
use super::snapshot::RepoSnapshot;

/// One loss the pass found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Violation {
    /// A kept index lists a manifest that is gone.
    ChildLost { index: String, child: String },
    /// A kept referrer's subject is gone.
    SubjectLost { referrer: String, subject: String },
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ChildLost { index, child } => {
                write!(f, "kept index {index} lost its child {child}")
            }
            Self::SubjectLost { referrer, subject } => {
                write!(f, "kept referrer {referrer} lost its subject {subject}")
            }
        }
    }
}

/// The pass's result for one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Validation {
    pub indexes_checked: usize,
    pub referrers_checked: usize,
    pub violations: Vec<Violation>,
}

impl Validation {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Compare the repository after the apply with the snapshot before it.
pub fn validate(before: &RepoSnapshot, after: &RepoSnapshot) -> Validation {
    let existed: HashSet<&str> = before.images.iter().map(|i| i.digest.as_str()).collect();
    let present: HashSet<&str> = after.images.iter().map(|i| i.digest.as_str()).collect();
    let lost = |d: &str| existed.contains(d) && !present.contains(d);
    let mut v = Validation::default();
    for img in &after.images {
        if let Some(children) = after.children.get(&img.digest) {
            v.indexes_checked += 1;
            for child in children.iter().filter(|c| lost(c)) {
                v.violations.push(Violation::ChildLost {
                    index: img.digest.clone(),
                    child: child.clone(),
                });
            }
        }
        let subjects: Vec<String> = img
            .subject
            .iter()
            .cloned()
            .chain(img.tags.iter().filter_map(|t| cosign_subject(t)))
            .collect();
        if !subjects.is_empty() {
            v.referrers_checked += 1;
        }
        for subject in subjects.into_iter().filter(|s| lost(s)) {
            v.violations.push(Violation::SubjectLost {
                referrer: img.digest.clone(),
                subject,
            });
        }
    }
    v.violations.dedup();
    v
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::ports::ecr::EcrImage;
    use crate::testing::ecr::{image, index, repository};

    fn snap(images: &[&EcrImage], children: &[(&str, &[&str])]) -> RepoSnapshot {
        RepoSnapshot {
            repository: repository("app"),
            images: images.iter().map(|i| (*i).clone()).collect(),
            children: children
                .iter()
                .map(|(i, c)| ((*i).to_owned(), c.iter().map(|d| (*d).to_owned()).collect()))
                .collect::<HashMap<_, _>>(),
        }
    }

    fn digest(i: &EcrImage) -> &str {
        &i.digest
    }

    #[test]
    fn an_apply_that_kept_units_whole_validates() {
        let idx = index("idx", &["v2"], 5);
        let (a, b) = (image("a", &[], 5), image("b", &[], 5));
        let old = index("old", &["v1"], 1);
        let old_child = image("oc", &[], 1);
        let kids = [digest(&a), digest(&b)];
        let before = snap(
            &[&idx, &a, &b, &old, &old_child],
            &[(digest(&idx), &kids), (digest(&old), &[digest(&old_child)])],
        );
        let after = snap(&[&idx, &a, &b], &[(digest(&idx), &kids)]);
        let v = validate(&before, &after);
        assert!(v.ok(), "{v:?}");
        assert_eq!((v.indexes_checked, v.referrers_checked), (1, 0));
    }

    #[test]
    fn a_kept_index_that_lost_a_child_and_a_referrer_that_lost_its_subject_are_reported() {
        let idx = index("idx", &["v2"], 5);
        let (a, b) = (image("a", &[], 5), image("b", &[], 5));
        let subject = image(&"5".repeat(64), &["v1"], 1);
        let mut sig = image("sig", &[], 1);
        sig.subject = Some(subject.digest.clone());
        let hex = subject.digest.trim_start_matches("sha256:");
        let cosign = image("cosign", &[&format!("sha256-{hex}.sig")], 1);
        let kids = [digest(&a), digest(&b)];
        let before = snap(
            &[&idx, &a, &b, &subject, &sig, &cosign],
            &[(digest(&idx), &kids)],
        );
        let after = snap(&[&idx, &a, &sig, &cosign], &[(digest(&idx), &kids)]);
        let v = validate(&before, &after);
        assert_eq!(v.referrers_checked, 2);
        assert_eq!(
            v.violations,
            vec![
                Violation::ChildLost {
                    index: idx.digest.clone(),
                    child: b.digest.clone()
                },
                Violation::SubjectLost {
                    referrer: sig.digest.clone(),
                    subject: subject.digest.clone()
                },
                Violation::SubjectLost {
                    referrer: cosign.digest.clone(),
                    subject: subject.digest.clone()
                },
            ]
        );
        assert_eq!(
            v.violations[0].to_string(),
            format!("kept index {} lost its child {}", idx.digest, b.digest)
        );
    }

    #[test]
    fn what_was_missing_before_the_run_is_not_a_loss() {
        let idx = index("idx", &["v2"], 5);
        let kids = ["sha256:never-pushed"];
        let before = snap(&[&idx], &[(digest(&idx), &kids)]);
        let v = validate(&before, &before.clone());
        assert!(v.ok());
        assert_eq!(v.indexes_checked, 1);
    }
}
