//! Carrying out one repository's plan: BatchDeleteImage with at most 100 digests per
//! call, indexes before their children (a new call starts where the deletion stage
//! changes, since ECR refuses to delete a manifest an index still lists), stopping
//! between calls when cancelled. The plan is never changed: the executor returns what
//! happened to each image beside it (ImageNotFound counts as gone).

use std::collections::HashMap;

use tokio_util::sync::CancellationToken;

use super::planner::RepoPlan;
use crate::ports::ecr::{ApiError, DeleteFailure, EcrApi, FailureCode, ECR_BATCH_MAX};

/// Why an image the plan expires was not tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The run was cancelled before its call.
    Cancelled,
    /// An earlier call failed as a whole; the rest is left for the next run.
    EarlierCallFailed,
}

/// What happened to one image the plan expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageOutcome {
    Deleted,
    /// ECR no longer had it (ImageNotFound): as good as deleted.
    AlreadyGone,
    /// ECR refused to delete it (a `failures[]` entry).
    Failed {
        code: FailureCode,
        reason: String,
    },
    /// Its BatchDeleteImage call failed as a whole (after the SDK's retries).
    CallFailed,
    NotAttempted(Skip),
}

/// What happened to one repository's deletions: every digest of
/// `RepoPlan::deletions`, in that order, with its outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deletion {
    pub images: Vec<(String, ImageOutcome)>,
    /// The call that failed as a whole, if one did; no later call was made.
    pub call_error: Option<ApiError>,
}

impl Deletion {
    /// Images ECR deleted, or already had not.
    pub fn deleted(&self) -> usize {
        self.images
            .iter()
            .filter(|(_, o)| matches!(o, ImageOutcome::Deleted | ImageOutcome::AlreadyGone))
            .count()
    }

    /// The images ECR refused to delete, as its `failures[]` entries.
    pub fn failures(&self) -> Vec<DeleteFailure> {
        self.images
            .iter()
            .filter_map(|(digest, o)| match o {
                ImageOutcome::Failed { code, reason } => Some(DeleteFailure {
                    digest: digest.clone(),
                    code: code.clone(),
                    reason: reason.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// Did cancellation leave some images untried?
    pub fn cancelled(&self) -> bool {
        self.images
            .iter()
            .any(|(_, o)| *o == ImageOutcome::NotAttempted(Skip::Cancelled))
    }
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
pub async fn execute(ecr: &dyn EcrApi, plan: &RepoPlan, cancel: &CancellationToken) -> Deletion {
    let mut deletion = Deletion::default();
    let mut skip: Option<Skip> = None;
    for batch in batches(&plan.deletions()) {
        if skip.is_none() && cancel.is_cancelled() {
            skip = Some(Skip::Cancelled);
        }
        if let Some(why) = skip {
            deletion.images.extend(
                batch
                    .into_iter()
                    .map(|d| (d, ImageOutcome::NotAttempted(why))),
            );
            continue;
        }
        match ecr.batch_delete(&plan.name, &batch).await {
            Ok(failures) => deletion
                .images
                .extend(batch_outcomes(&plan.name, batch, failures)),
            Err(e) => {
                deletion
                    .images
                    .extend(batch.into_iter().map(|d| (d, ImageOutcome::CallFailed)));
                deletion.call_error = Some(e);
                skip = Some(Skip::EarlierCallFailed);
            }
        }
    }
    deletion
}

/// One call's outcomes: each digest of `batch` with its `failures[]` entry, if any.
/// An entry naming no digest of the batch is kept (reported), not dropped.
fn batch_outcomes(
    repository: &str,
    batch: Vec<String>,
    failures: Vec<DeleteFailure>,
) -> Vec<(String, ImageOutcome)> {
    let mut by_digest: HashMap<String, DeleteFailure> = HashMap::new();
    let mut stray = Vec::new();
    for f in failures {
        if batch.contains(&f.digest) && !by_digest.contains_key(&f.digest) {
            by_digest.insert(f.digest.clone(), f);
        } else {
            stray.push(f);
        }
    }
    let mut out: Vec<(String, ImageOutcome)> = batch
        .into_iter()
        .map(|digest| {
            let outcome = match by_digest.remove(&digest) {
                None => {
                    tracing::info!(job = "ecr_prune", repository = %repository, digest = %digest, "image deleted");
                    ImageOutcome::Deleted
                }
                Some(f) => failure_outcome(repository, f),
            };
            (digest, outcome)
        })
        .collect();
    // A stray "not found" changes nothing; a stray refusal must still be reported.
    out.extend(stray.into_iter().filter_map(|f| {
        let digest = f.digest.clone();
        match failure_outcome(repository, f) {
            ImageOutcome::AlreadyGone => None,
            outcome => Some((digest, outcome)),
        }
    }));
    out
}

fn failure_outcome(repository: &str, f: DeleteFailure) -> ImageOutcome {
    if f.code == FailureCode::ImageNotFound {
        tracing::debug!(repository = %repository, image = %f.digest, "already gone");
        return ImageOutcome::AlreadyGone;
    }
    tracing::warn!(
        repository = %repository,
        image = %f.digest,
        code = %f.code,
        reason = %f.reason,
        "delete failed"
    );
    ImageOutcome::Failed {
        code: f.code,
        reason: f.reason,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::ecr_prune::grouping::group;
    use crate::ecr_prune::planner::{Reason, UnitPlan};
    use crate::ecr_prune::rules::Action;
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
            archived: 0,
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

    #[test]
    fn each_deleted_image_is_one_info_line_with_job_repository_and_digest() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt;

        type Seen = Arc<Mutex<Vec<(tracing::Level, Vec<(String, String)>)>>>;
        struct Capture(Seen);
        struct Fields(Vec<(String, String)>);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.push((f.name().to_owned(), format!("{v:?}")));
            }
            fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                self.0.push((f.name().to_owned(), v.to_owned()));
            }
        }
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
            fn on_event(
                &self,
                event: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                let mut fields = Fields(Vec::new());
                event.record(&mut fields);
                self.0
                    .lock()
                    .unwrap()
                    .push((*event.metadata().level(), fields.0));
            }
        }
        let seen: Seen = Arc::default();
        let subscriber = tracing_subscriber::registry().with(Capture(Arc::clone(&seen)));
        tracing::subscriber::with_default(subscriber, || {
            // Callsite interest is cached process-wide: another test thread that hit
            // these callsites first, with no subscriber of its own, can leave them
            // cached as "never"; recompute it now that this thread's subscriber exists.
            tracing::callsite::rebuild_interest_cache();
            batch_outcomes(
                "team/app",
                vec!["sha256:a".to_owned(), "sha256:b".to_owned()],
                vec![DeleteFailure {
                    digest: "sha256:b".to_owned(),
                    code: FailureCode::ImageNotFound,
                    reason: "gone".to_owned(),
                }],
            );
        });
        let seen = seen.lock().unwrap();
        let field = |fields: &[(String, String)], key: &str| {
            fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let deleted: Vec<_> = seen
            .iter()
            .filter(|(_, f)| field(f, "message") == "image deleted")
            .collect();
        assert_eq!(deleted.len(), 1, "{seen:?}");
        let (level, fields) = deleted[0];
        assert_eq!(*level, tracing::Level::INFO);
        assert_eq!(field(fields, "job"), "ecr_prune");
        assert_eq!(field(fields, "repository"), "team/app");
        assert_eq!(field(fields, "digest"), "sha256:a");
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
        assert_eq!(out.deleted(), 250);
        assert!(out.images.iter().all(|(_, o)| *o == ImageOutcome::Deleted));
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
        assert_eq!(out.deleted(), 3);
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
        assert_eq!(out.deleted(), 2);
        assert_eq!(
            out.images,
            vec![
                ("sha256:a".into(), ImageOutcome::Deleted),
                (
                    "sha256:b".into(),
                    ImageOutcome::Failed {
                        code: FailureCode::ImageReferencedByManifestList,
                        reason: "injected".into()
                    }
                ),
                ("sha256:c".into(), ImageOutcome::AlreadyGone),
            ]
        );
        assert_eq!(out.failures().len(), 1);
    }

    #[tokio::test]
    async fn cancelled_before_a_call_stops() {
        let images: Vec<_> = (0..5).map(|i| image(&format!("x{i}"), &[], 1)).collect();
        let ecr = FakeEcr::with(vec![("app", images.clone())]);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let out = execute(&ecr, &expire_all("app", &images, &HashMap::new()), &cancel).await;
        assert!(out.cancelled());
        assert_eq!(out.images.len(), 5);
        assert_eq!(out.deleted(), 0);
        assert_eq!(ecr.calls("BatchDeleteImage"), 0);
    }

    #[tokio::test]
    async fn a_failed_call_stops_the_repository_and_marks_the_rest_untried() {
        let images: Vec<_> = (0..150)
            .map(|i| image(&format!("x{i:03}"), &[], 1))
            .collect();
        let mut ecr = FakeEcr::with(vec![("app", images.clone())]);
        ecr.delete_call_fails = true;
        let out = execute(
            &ecr,
            &expire_all("app", &images, &HashMap::new()),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(ecr.calls("BatchDeleteImage"), 1);
        assert_eq!(
            out.call_error.as_ref().map(|e| e.operation),
            Some("BatchDeleteImage")
        );
        let count = |want: &ImageOutcome| out.images.iter().filter(|(_, o)| o == want).count();
        assert_eq!(count(&ImageOutcome::CallFailed), 100);
        assert_eq!(
            count(&ImageOutcome::NotAttempted(Skip::EarlierCallFailed)),
            50
        );
        assert!(!out.cancelled());
    }

    #[test]
    fn a_stray_failure_is_reported_and_a_stray_not_found_ignored() {
        let failure = |digest: &str, code| DeleteFailure {
            digest: digest.into(),
            code,
            reason: String::new(),
        };
        let out = batch_outcomes(
            "app",
            vec!["sha256:a".into()],
            vec![
                failure("?", FailureCode::KmsError),
                failure("sha256:zzz", FailureCode::ImageNotFound),
            ],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], ("sha256:a".into(), ImageOutcome::Deleted));
        assert!(matches!(
            &out[1].1,
            ImageOutcome::Failed {
                code: FailureCode::KmsError,
                ..
            }
        ));
    }
}
