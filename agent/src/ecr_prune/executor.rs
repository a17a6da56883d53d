//! Carrying out one repository's plan: BatchDeleteImage with at most 100 digests per
//! call, indexes before their children (a new call starts where the deletion stage
//! changes, since ECR refuses to delete a manifest an index still lists), every
//! `failures[]` entry reported (ImageNotFound counts as gone), stopping between calls
//! when cancelled.

use tokio_util::sync::CancellationToken;

use super::planner::RepoPlan;
use crate::ports::ecr::{DeleteFailure, EcrApi, FailureCode, ECR_BATCH_MAX};

/// What happened to one repository's deletions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Digests ECR deleted (or already had not).
    pub deleted: usize,
    /// Failures other than ImageNotFound.
    pub failures: Vec<DeleteFailure>,
    /// A whole call failed (after the SDK's retries); the rest was not attempted.
    pub error: Option<String>,
    pub cancelled: bool,
}

/// Split the ordered deletions into calls: at most 100 ids, and a stage never shares a
/// call with the stage above it.
pub fn batches(deletions: &[(String, u8)]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut stage = None;
    for (digest, s) in deletions {
        let stage_changed = stage.is_some_and(|prev| prev != *s);
        if current.len() == ECR_BATCH_MAX || (stage_changed && !current.is_empty()) {
            out.push(std::mem::take(&mut current));
        }
        stage = Some(*s);
        current.push(digest.clone());
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Delete what `plan` expires. The caller has already checked the plan is not refused.
pub async fn execute(ecr: &dyn EcrApi, plan: &RepoPlan, cancel: &CancellationToken) -> Outcome {
    let mut outcome = Outcome::default();
    for batch in batches(&plan.deletions()) {
        if cancel.is_cancelled() {
            outcome.cancelled = true;
            break;
        }
        match ecr.batch_delete(&plan.name, &batch).await {
            Ok(failures) => {
                let mut failed = 0;
                for f in failures {
                    if f.code == FailureCode::ImageNotFound {
                        tracing::debug!(repository = %plan.name, image = %f.digest, "already gone");
                        continue;
                    }
                    tracing::warn!(
                        repository = %plan.name,
                        image = %f.digest,
                        code = %f.code,
                        reason = %f.reason,
                        "delete failed"
                    );
                    failed += 1;
                    outcome.failures.push(f);
                }
                outcome.deleted += batch.len() - failed;
            }
            Err(e) => {
                outcome.error = Some(e.to_string());
                break;
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::ecr_prune::grouping::group;
    use crate::ecr_prune::planner::{Action, Reason, UnitPlan};
    use crate::testing::ecr::{image, index, now, FakeEcr};

    fn expire_all(
        name: &str,
        images: &[crate::ports::ecr::EcrImage],
        children: &HashMap<String, Vec<String>>,
    ) -> RepoPlan {
        let units = group(images, children, now());
        RepoPlan {
            name: name.into(),
            images_before: images.len(),
            images_after: 0,
            units: units
                .into_iter()
                .map(|unit| UnitPlan {
                    unit,
                    action: Action::Expire,
                    reason: Reason::Rule(1),
                })
                .collect(),
            refused: None,
        }
    }

    #[test]
    fn batches_hold_at_most_100_and_split_stages() {
        let d: Vec<(String, u8)> = (0..250).map(|i| (format!("d{i}"), 0)).collect();
        assert_eq!(
            batches(&d).iter().map(Vec::len).collect::<Vec<_>>(),
            vec![100, 100, 50]
        );
        let mut mixed: Vec<(String, u8)> = (0..3).map(|i| (format!("i{i}"), 0)).collect();
        mixed.extend((0..4).map(|i| (format!("c{i}"), 1)));
        assert_eq!(
            batches(&mixed).iter().map(Vec::len).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert!(batches(&[]).is_empty());
    }

    #[tokio::test]
    async fn deletes_250_in_three_calls() {
        let images: Vec<_> = (0..250).map(|i| image(&format!("x{i}"), &[], 1)).collect();
        let ecr = FakeEcr::with(vec![("app", images.clone())]);
        let out = execute(
            &ecr,
            &expire_all("app", &images, &HashMap::new()),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(out.deleted, 250);
        assert_eq!(*ecr.delete_batches.lock().unwrap(), vec![100, 100, 50]);
        assert!(ecr.digests("app").is_empty());
    }

    #[tokio::test]
    async fn index_goes_in_an_earlier_call_than_children() {
        let images = vec![
            index("idx", &["v"], 1),
            image("a", &[], 1),
            image("b", &[], 1),
        ];
        let children = HashMap::from([(
            "sha256:idx".to_owned(),
            vec!["sha256:a".to_owned(), "sha256:b".to_owned()],
        )]);
        let ecr = FakeEcr::with(vec![("app", images.clone())]);
        let out = execute(
            &ecr,
            &expire_all("app", &images, &children),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(out.deleted, 3);
        assert_eq!(*ecr.delete_batches.lock().unwrap(), vec![1, 2]);
    }

    #[tokio::test]
    async fn failures_are_reported_and_not_found_is_fine() {
        let images = vec![image("a", &[], 1), image("b", &[], 1), image("c", &[], 1)];
        let mut ecr = FakeEcr::with(vec![("app", images.clone())]);
        ecr.delete_failures.insert(
            "sha256:b".into(),
            FailureCode::ImageReferencedByManifestList,
        );
        ecr.delete_failures
            .insert("sha256:c".into(), FailureCode::ImageNotFound);
        let out = execute(
            &ecr,
            &expire_all("app", &images, &HashMap::new()),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(out.deleted, 2);
        assert_eq!(out.failures.len(), 1);
        assert_eq!(
            out.failures[0].code,
            FailureCode::ImageReferencedByManifestList
        );
    }

    #[tokio::test]
    async fn cancelled_before_a_call_stops() {
        let images: Vec<_> = (0..5).map(|i| image(&format!("x{i}"), &[], 1)).collect();
        let ecr = FakeEcr::with(vec![("app", images.clone())]);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let out = execute(&ecr, &expire_all("app", &images, &HashMap::new()), &cancel).await;
        assert!(out.cancelled);
        assert_eq!(ecr.calls("BatchDeleteImage"), 0);
    }
}
