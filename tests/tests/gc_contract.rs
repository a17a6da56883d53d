//! The contract of the fake engine (`shipshape::testing::docker::FakeDocker`): each of its
//! image-removal and tagging rules is a scenario run twice, against the fake and against a
//! private dockerd through the real adapter (`BollardEngine`), and both runs must give the
//! same answer to every step and leave the same images with the same tags. A rule the fake
//! has without a scenario here is a defect (STYLE.md, habit 8).
//!
//! `repo@digest` references only appear through a registry: the digest scenario pushes to
//! and pulls from Debian's docker-registry through the private dockerd, then builds the
//! fake from the engine's own listing, so both start from the very same references.

use std::collections::BTreeMap;

use shipshape::adapters::bollard::BollardEngine;
use shipshape::ports::docker::{
    ContainerState, DockerEngine, DockerError, DockerEvent, EventAction, EventScope, ImageInfo,
};
use shipshape::testing::docker::{container, full_id, image, FakeDocker};
use shipshape_tests::dockerd::Dockerd;
use shipshape_tests::images::{self, ImageSpec};
use shipshape_tests::registry::DigestRegistry;

const OLD: i64 = 1_600_000_000;

/// One image of a scenario: a key (hex, so the fake can make an ID of it), its tags,
/// the key of its legacy parent.
struct Img {
    key: &'static str,
    tags: &'static [&'static str],
    parent: Option<&'static str>,
}

enum Step {
    /// `DELETE /images/{reference}`; `id:<key>` means the image's full ID.
    Remove(&'static str),
    /// `POST /images/{id of key}/tag?repo&tag`.
    Tag(&'static str, &'static str, &'static str),
}

struct Scenario {
    name: &'static str,
    images: Vec<Img>,
    /// Keys of images a created (never started) container uses.
    containers: Vec<&'static str>,
    steps: Vec<Step>,
}

/// What a run saw: each step's answer, then each image's tags (`None`: gone).
type Seen = (Vec<String>, BTreeMap<String, Option<Vec<String>>>);

fn answer<T>(result: Result<T, DockerError>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(DockerError::NotFound(_)) => "404".into(),
        Err(DockerError::Conflict(_)) => "409".into(),
        Err(e) => format!("error: {e}"),
    }
}

async fn play(engine: &dyn DockerEngine, s: &Scenario, ids: &BTreeMap<&str, String>) -> Seen {
    let resolve = |r: &str| match r.strip_prefix("id:") {
        Some(key) => ids[key].clone(),
        None => r.to_owned(),
    };
    let mut answers = Vec::new();
    for step in &s.steps {
        answers.push(match step {
            Step::Remove(r) => answer(engine.remove_image(&resolve(r)).await),
            Step::Tag(key, repo, tag) => answer(engine.tag_image(&ids[key], repo, tag).await),
        });
    }
    let listed = engine.list_images().await.expect("list images");
    let by_id: BTreeMap<&str, &ImageInfo> = listed.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut state = BTreeMap::new();
    for img in &s.images {
        let id = ids[img.key].as_str();
        // An untagged intermediate is not a top-level image: ask for it by ID.
        let tags = match by_id.get(id) {
            Some(i) => Some(i.repo_tags.clone()),
            None => engine
                .inspect_image(id)
                .await
                .expect("inspect")
                .map(|i| i.repo_tags),
        };
        state.insert(
            img.key.to_owned(),
            tags.map(|mut t| {
                t.sort();
                t
            }),
        );
    }
    (answers, state)
}

fn on_fake(s: &Scenario) -> Seen {
    let infos: Vec<ImageInfo> = s
        .images
        .iter()
        .map(|i| {
            let mut info = image(i.key, i.tags, 48, 10);
            info.parent_id = i.parent.map(full_id);
            info
        })
        .collect();
    let containers = s
        .containers
        .iter()
        .enumerate()
        .map(|(n, key)| container(&format!("c{n}"), key, key, ContainerState::Created))
        .collect();
    let fake = FakeDocker::new(infos, containers);
    let ids = s.images.iter().map(|i| (i.key, full_id(i.key))).collect();
    runtime().block_on(play(&fake, s, &ids))
}

fn on_dockerd(d: &Dockerd, s: &Scenario) -> Seen {
    let index: BTreeMap<&str, usize> = s
        .images
        .iter()
        .enumerate()
        .map(|(n, i)| (i.key, n))
        .collect();
    let specs: Vec<ImageSpec> = s
        .images
        .iter()
        .map(|i| {
            let mut spec = match i.parent {
                Some(p) => ImageSpec::child("x:x", OLD, index[p]),
                None => ImageSpec::new("x:x", OLD),
            };
            spec.repo_tags = i.tags.iter().map(|t| t.to_string()).collect();
            spec
        })
        .collect();
    let loaded = images::load(d, &specs);
    let ids: BTreeMap<&str, String> = s.images.iter().map(|i| i.key).zip(loaded).collect();
    for (n, key) in s.containers.iter().enumerate() {
        d.docker_ok([
            "create",
            "--network",
            "none",
            "--name",
            &format!("{}-{n}", s.name),
            &ids[key],
            "sh",
        ]);
    }
    runtime().block_on(async {
        let engine = BollardEngine::connect_to(d.host()).await.expect("connect");
        play(&engine, s, &ids).await
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn img(key: &'static str, tags: &'static [&'static str]) -> Img {
    Img {
        key,
        tags,
        parent: None,
    }
}

fn scenarios() -> Vec<Scenario> {
    use Step::{Remove, Tag};
    vec![
        Scenario {
            name: "two-tags-one-repo",
            images: vec![img("a1", &["app:1", "app:latest"])],
            containers: vec![],
            steps: vec![Remove("id:a1"), Remove("app:1"), Remove("id:a1")],
        },
        Scenario {
            name: "tags-across-repos",
            images: vec![img("b1", &["m1/x:1", "m2/x:1"])],
            containers: vec![],
            steps: vec![Remove("id:b1"), Remove("m2/x:1"), Remove("id:b1")],
        },
        Scenario {
            name: "single-tag-by-id",
            images: vec![img("c1", &["solo:1"]), img("c2", &[])],
            containers: vec![],
            steps: vec![Remove("id:c1"), Remove("id:c2")],
        },
        Scenario {
            name: "last-tag-by-name-deletes",
            images: vec![img("d1", &["solo:2"])],
            containers: vec![],
            steps: vec![Remove("solo:2")],
        },
        Scenario {
            name: "container-single-tag",
            images: vec![img("e1", &["used:1"])],
            containers: vec!["e1"],
            steps: vec![Remove("used:1"), Remove("id:e1")],
        },
        Scenario {
            name: "container-two-tags",
            // The untag goes through although a container uses the image: why the
            // executor puts removed tags back on a conflict.
            images: vec![img("f1", &["used:2", "used:latest"])],
            containers: vec!["f1"],
            steps: vec![Remove("used:2"), Remove("id:f1"), Tag("f1", "used", "2")],
        },
        Scenario {
            name: "dependent-child",
            images: vec![
                img("a2", &["base:1"]),
                Img {
                    key: "a3",
                    tags: &["child:1"],
                    parent: Some("a2"),
                },
            ],
            containers: vec![],
            // By ID: refused; by its last tag: untagged, kept for the child; the child's
            // delete leaves the parent (`noprune`), which then goes by ID.
            steps: vec![
                Remove("id:a2"),
                Remove("base:1"),
                Remove("id:a3"),
                Remove("id:a2"),
            ],
        },
        Scenario {
            name: "not-found",
            images: vec![img("b2", &["gone:1"])],
            containers: vec![],
            steps: vec![
                Remove("nope:1"),
                Remove("id:b2"),
                Remove("id:b2"),
                Remove("gone:1"),
            ],
        },
        Scenario {
            name: "tag-moves",
            images: vec![img("b3", &["mv:latest", "mv:1"]), img("b4", &["mv:2"])],
            containers: vec![],
            steps: vec![Tag("b4", "mv", "latest"), Tag("b3", "mv", "1")],
        },
    ]
}

#[test]
fn the_fake_engine_refuses_and_accepts_exactly_what_dockerd_does() {
    let d = Dockerd::start();
    let mut differences = Vec::new();
    for s in scenarios() {
        let fake = on_fake(&s);
        let real = on_dockerd(&d, &s);
        if fake != real {
            differences.push(format!(
                "{}:\n  fake:    {fake:?}\n  dockerd: {real:?}",
                s.name
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

#[test]
fn the_contract_expects_the_engine_rules_the_executor_relies_on() {
    // Pinned answers, so a fake and an engine that agree on something else still fail.
    let expect = |name: &str| {
        scenarios()
            .into_iter()
            .find(|s| s.name == name)
            .map(|s| on_fake(&s).0)
    };
    assert_eq!(expect("two-tags-one-repo").unwrap(), ["409", "ok", "ok"]);
    assert_eq!(expect("tags-across-repos").unwrap(), ["409", "ok", "ok"]);
    assert_eq!(expect("container-single-tag").unwrap(), ["409", "409"]);
    assert_eq!(expect("container-two-tags").unwrap(), ["ok", "409", "ok"]);
    assert_eq!(
        expect("dependent-child").unwrap(),
        ["409", "ok", "ok", "ok"]
    );
    assert_eq!(expect("not-found").unwrap(), ["404", "ok", "404", "404"]);
}

/// What an engine showed about a tag's traces: `LastTagTime` before the tag, the tag
/// events of the image in the window around it (and their time inside it), the
/// `LastTagTime` after it (inside the window), and tag events replayed for a window
/// that ended before.
type TagTrace = (bool, usize, bool, bool, usize);

/// `at_tag` runs just before the tag call (the fake takes its clock from it).
async fn trace_a_tag(engine: &dyn DockerEngine, id: &str, at_tag: &dyn Fn()) -> TagTrace {
    let before = engine
        .inspect_image(id)
        .await
        .expect("inspect")
        .and_then(|i| i.last_tag_time);
    let t0 = chrono::Utc::now();
    at_tag();
    engine.tag_image(id, "app", "2").await.expect("tag");
    let t1 = chrono::Utc::now();
    let inside = |t: Option<chrono::DateTime<chrono::Utc>>| t.is_some_and(|t| t >= t0 && t <= t1);
    let tags_of = |events: &[shipshape::ports::docker::DockerEvent]| -> Vec<Option<chrono::DateTime<chrono::Utc>>> {
        events
            .iter()
            .filter(|e| e.scope == EventScope::Image && e.action == EventAction::Tag && e.actor_id == id)
            .map(|e| e.time)
            .collect()
    };
    let window = engine.replay_events(t0, t1).await.expect("replay");
    let tags = tags_of(&window);
    let after = engine
        .inspect_image(id)
        .await
        .expect("inspect")
        .and_then(|i| i.last_tag_time);
    let earlier = engine
        .replay_events(
            t0 - chrono::Duration::hours(1),
            t0 - chrono::Duration::milliseconds(1),
        )
        .await
        .expect("replay");
    (
        before.is_some(),
        tags.len(),
        tags.iter().all(|t| inside(*t)),
        inside(after),
        tags_of(&earlier).len(),
    )
}

/// The fake's event log and `LastTagTime` (what gc dates images by): a loaded image has
/// no tag time; the tag API logs one `tag` event naming the image by ID and sets the
/// tag time, both at the moment of the call; a replay returns only its window.
#[test]
fn the_fake_engine_logs_tags_and_tag_times_as_dockerd_does() {
    let d = Dockerd::start();
    let loaded = images::load(&d, &[ImageSpec::new("app:1", OLD)]);
    let real = runtime().block_on(async {
        let engine = BollardEngine::connect_to(d.host()).await.expect("connect");
        trace_a_tag(&engine, &loaded[0], &|| {}).await
    });
    let fake = FakeDocker::new(vec![image("aa", &["app:1"], 48, 10)], vec![]);
    // The fake's own actions happen when its clock says: the moment of the call.
    let at_tag = || fake.with(|s| s.clock = Some(chrono::Utc::now()));
    let fake_trace = runtime().block_on(trace_a_tag(&fake, &full_id("aa"), &at_tag));
    assert_eq!(fake_trace, real, "fake vs dockerd (tag traces)");
    assert_eq!(real, (false, 1, true, true, 0));
}

/// What a digest run saw: each step's answer, then per image its tags and digests
/// (`None`: gone).
type SeenRefs = (
    Vec<String>,
    BTreeMap<String, Option<(Vec<String>, Vec<String>)>>,
);

/// Play `steps` (references: `id:<key>` an image's ID, `@<key>` its digest reference,
/// `R/` the registry host; `Tag(key, repo, tag)`) and read every image's references back.
async fn play_refs(
    engine: &dyn DockerEngine,
    steps: &[Step],
    ids: &BTreeMap<&str, (String, String)>,
    registry: &str,
) -> SeenRefs {
    let resolve = |r: &str| {
        if let Some(key) = r.strip_prefix("id:") {
            ids[key].0.clone()
        } else if let Some(key) = r.strip_prefix('@') {
            ids[key].1.clone()
        } else {
            r.replace("R/", &format!("{registry}/"))
        }
    };
    let mut answers = Vec::new();
    for step in steps {
        answers.push(match step {
            Step::Remove(r) => answer(engine.remove_image(&resolve(r)).await),
            Step::Tag(key, repo, tag) => {
                answer(engine.tag_image(&ids[key].0, &resolve(repo), tag).await)
            }
        });
    }
    let listed = engine.list_images().await.expect("list images");
    let state = ids
        .iter()
        .map(|(key, (id, _))| {
            let refs = listed.iter().find(|i| &i.id == id).map(|i| {
                let mut tags = i.repo_tags.clone();
                let mut digests = i.repo_digests.clone();
                tags.sort();
                digests.sort();
                (tags, digests)
            });
            ((*key).to_owned(), refs)
        })
        .collect();
    (answers, state)
}

/// The digest steps, in order, with the answers the engine's rules give.
fn digest_steps() -> Vec<(Step, &'static str)> {
    use Step::{Remove, Tag};
    vec![
        // w: `web:prod` + `R/web@…` — one tag, two repositories: not by ID.
        (Remove("id:w"), "409"),
        (Remove("web:prod"), "ok"),
        (Remove("id:w"), "ok"),
        // p: digest-only, by its digest: the last reference, so the image goes.
        (Remove("@p"), "ok"),
        (Remove("id:p"), "404"),
        // q: digest-only, used by a created container: by digest and by ID refused.
        (Remove("@q"), "409"),
        (Remove("id:q"), "409"),
        // s: `R/same:push` + `R/same@…`: the repository's last tag takes its digests.
        (Remove("R/same:push"), "ok"),
        (Remove("id:s"), "404"),
        // t: two tags and a digest in one repository: one tag by name, then by ID.
        (Remove("id:t"), "409"),
        (Remove("R/two:push"), "ok"),
        (Remove("id:t"), "ok"),
        // f: a fully qualified Docker Hub name is the familiar one.
        (Remove("docker.io/library/web2:1"), "ok"),
        (Tag("f", "docker.io/library/web2", "2"), "ok"),
        (Remove("web2:2"), "ok"),
        // u: tagging a digest-only image in another repository.
        (Tag("u", "R/other", "1"), "ok"),
        (Remove("id:u"), "409"),
    ]
}

#[test]
fn digest_references_are_refused_and_accepted_alike_by_the_fake_and_dockerd() {
    let d = Dockerd::start();
    let registry = DigestRegistry::start(&d);
    let keys = ["w", "p", "q", "s", "t", "f", "u"];
    let specs: Vec<ImageSpec> = keys
        .iter()
        .map(|k| {
            let mut spec = ImageSpec::new("x:x", OLD);
            spec.repo_tags = if *k == "f" {
                vec!["web2:1".to_owned(), "web2:keep".to_owned()]
            } else {
                Vec::new()
            };
            spec
        })
        .collect();
    let loaded = images::load(&d, &specs);
    let id = |k: &str| loaded[keys.iter().position(|x| *x == k).expect("key")].clone();
    let mut ids: BTreeMap<&str, (String, String)> = BTreeMap::new();
    let w = registry.digest_only(&d, &id("w"), "web");
    d.docker_ok(["tag", &id("w"), "web:prod"]);
    ids.insert("w", (id("w"), w));
    for (key, repo) in [("p", "pinned"), ("q", "pinned2"), ("u", "pinned3")] {
        let digest = registry.digest_only(&d, &id(key), repo);
        ids.insert(key, (id(key), digest));
    }
    d.docker_ok([
        "create",
        "--network",
        "none",
        "--name",
        "uses-q",
        &id("q"),
        "sh",
    ]);
    let s = registry.push(&d, &id("s"), "same");
    ids.insert("s", (id("s"), s));
    let t = registry.push(&d, &id("t"), "two");
    d.docker_ok(["tag", &id("t"), &format!("{}/two:latest", registry.host())]);
    ids.insert("t", (id("t"), t));
    ids.insert("f", (id("f"), String::new()));

    let steps: Vec<Step> = digest_steps().into_iter().map(|(s, _)| s).collect();
    let host = registry.host();
    let (fake, real) = runtime().block_on(async {
        let engine = BollardEngine::connect_to(d.host()).await.expect("connect");
        // The fake starts from the engine's own listing: the same references, byte for byte.
        let fake = FakeDocker::new(
            engine.list_images().await.expect("list"),
            engine.list_containers().await.expect("containers"),
        );
        // `/system/df`: an image with layers of its own holds its whole size alone, on
        // both; neither has build cache here.
        let (fake_df, real_df) = (
            fake.data_usage().await.expect("fake df"),
            engine.data_usage().await.expect("engine df"),
        );
        assert_eq!(fake_df, real_df, "/system/df: fake vs dockerd");
        assert_eq!(real_df.unique_sizes.len(), ids.len());
        let before = play_refs(&fake, &[], &ids, &host).await;
        let real_before = play_refs(&engine, &[], &ids, &host).await;
        assert_eq!(before, real_before);
        // The shapes are the ones named: a tag plus another repository's digest, and
        // digest-only images.
        let refs = |k: &str| before.1[k].clone().expect("present");
        assert_eq!(
            refs("w"),
            (vec!["web:prod".to_owned()], vec![ids["w"].1.clone()])
        );
        assert_eq!(refs("p"), (vec![], vec![ids["p"].1.clone()]));
        let since = chrono::Utc::now() - chrono::Duration::hours(1);
        // The fake's own actions happen when its clock says: inside the window.
        fake.with(|s| s.clock = Some(chrono::Utc::now()));
        let seen = (
            play_refs(&fake, &steps, &ids, &host).await,
            play_refs(&engine, &steps, &ids, &host).await,
        );
        // The tag log: each `Tag` step as (image, familiar reference), on both.
        let until = chrono::Utc::now() + chrono::Duration::milliseconds(200);
        let wanted = ["web2:2".to_owned(), format!("{host}/other:1")];
        let tags_of = |log: Vec<DockerEvent>| -> Vec<(String, String)> {
            log.into_iter()
                .filter(|e| e.scope == EventScope::Image && e.action == EventAction::Tag)
                .filter_map(|e| Some((e.actor_id, e.name?)))
                .filter(|(_, reference)| wanted.contains(reference))
                .collect()
        };
        let fake_log = tags_of(fake.replay_events(since, until).await.expect("fake log"));
        let real_log = tags_of(
            engine
                .replay_events(since, until)
                .await
                .expect("engine log"),
        );
        assert_eq!(fake_log, real_log, "tag log: fake vs dockerd");
        assert_eq!(
            real_log,
            [
                (ids["f"].0.clone(), wanted[0].clone()),
                (ids["u"].0.clone(), wanted[1].clone())
            ]
        );
        seen
    });
    assert_eq!(fake, real, "fake vs dockerd");
    let expected: Vec<String> = digest_steps()
        .into_iter()
        .map(|(_, a)| a.to_owned())
        .collect();
    assert_eq!(real.0, expected, "the engine's answers");
}

/// What a replay of the whole log gave after many tags: how many events, and the
/// references of its first and last tag event.
type RingTrace = (usize, Option<String>, Option<String>);

async fn tag_past_the_ring(
    engine: &dyn DockerEngine,
    id: &str,
    before_tag: &dyn Fn(),
) -> RingTrace {
    for n in 0..300 {
        before_tag();
        engine
            .tag_image(id, "app", &format!("t{n}"))
            .await
            .expect("tag");
    }
    let events = engine
        .replay_events(chrono::DateTime::UNIX_EPOCH, chrono::Utc::now())
        .await
        .expect("replay");
    let tag = |e: &DockerEvent| {
        (e.action == EventAction::Tag)
            .then(|| e.name.clone())
            .flatten()
    };
    (
        events.len(),
        events.iter().find_map(tag),
        events.iter().rev().find_map(tag),
    )
}

/// The fake replays only its last 256 events, as moby keeps only its last 256
/// (`daemon/events`, `eventsLimit`): after 300 tags both give the same 256.
#[test]
fn the_fake_engine_replays_only_its_last_256_events_as_dockerd_does() {
    let d = Dockerd::start();
    let loaded = images::load(&d, &[ImageSpec::new("app:1", OLD)]);
    let real = runtime().block_on(async {
        let engine = BollardEngine::connect_to(d.host()).await.expect("connect");
        tag_past_the_ring(&engine, &loaded[0], &|| {}).await
    });
    let fake = FakeDocker::new(vec![image("aa", &["app:1"], 48, 10)], vec![]);
    let before_tag = || fake.with(|s| s.clock = Some(chrono::Utc::now()));
    let fake_ring = runtime().block_on(tag_past_the_ring(&fake, &full_id("aa"), &before_tag));
    assert_eq!(fake_ring, real, "fake vs dockerd (event ring)");
    assert_eq!(
        real,
        (256, Some("app:t44".to_owned()), Some("app:t299".to_owned()))
    );
}
