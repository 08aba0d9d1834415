//! Workflow versions with appeals in flight, on SQLite and PostgreSQL: the review SLA
//! changes from 3 to 2 business days in version 2 while appeals are open. Appeals that
//! started on version 1 keep their deadlines and are decided on version 1; new appeals
//! start on version 2; a migrated appeal is re-armed as its migration says. `workflow
//! check` validates every version and every migration; `workflow graph --version` draws
//! any.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use appealflow::domain::{Actor, Role, TicketNumber};
use appealflow::engine::{Engine, EngineError, ManualClock};
use appealflow::store::TimerStatus;
use appealflow::workflow::{Fire, Refusal};

use crate::common::{self, TestDb, applicant, at, request, reviewer};

on_both_backends!(a_shorter_review_sla_applies_to_new_appeals_while_old_ones_keep_theirs_until_migrated);

const MIGRATION: &str = r#"[migration]
from = 1
to = 2
description = "reviews are due within 2 business days"

[timers]
review_sla = "rearm"
"#;

/// A workflows folder: the shipped one, and — with `v2` — the shipped definition kept as
/// `account-appeal/v1/`, a version 2 reviewing within 2 business days as the current one,
/// and the migration from 1 to 2 (`migration`).
pub(crate) fn workflows(root: &Path, v2: bool, migration: &str) {
    common::copy_dir(&common::workflows_dir(), root);
    if !v2 {
        return;
    }
    let dir = root.join("account-appeal");
    let v1 = std::fs::read_to_string(dir.join("workflow.toml")).unwrap();
    // Version 1 shares the workflow's templates (its folder has none of its own).
    std::fs::create_dir_all(dir.join("v1")).unwrap();
    std::fs::write(dir.join("v1").join("workflow.toml"), &v1).unwrap();
    assert_eq!(v1.matches("\nversion = 1\n").count(), 1);
    assert_eq!(v1.matches("after = { business_days = 3 }").count(), 1);
    let v2 = v1
        .replace("\nversion = 1\n", "\nversion = 2\n")
        .replace("after = { business_days = 3 }", "after = { business_days = 2 }");
    std::fs::write(dir.join("workflow.toml"), v2).unwrap();
    std::fs::create_dir_all(dir.join("migrations")).unwrap();
    std::fs::write(dir.join("migrations").join("1-to-2.toml"), migration).unwrap();
}

fn engine_on(db: &TestDb, dir: &Path, clock: Arc<ManualClock>) -> Arc<Engine> {
    common::app_in(db, dir, clock, &Default::default(), None).work.engine().clone()
}

async fn review_due(engine: &Engine, t: &TicketNumber) -> Option<chrono::DateTime<chrono::Utc>> {
    let record = engine.store().appeal_by_ticket(t).await.unwrap().unwrap();
    let timers = engine.store().timers(Some(&record.id)).await.unwrap();
    timers.iter().find(|r| r.name == "review_sla" && r.status == TimerStatus::Armed).map(|r| r.due_at)
}

async fn version_of(engine: &Engine, t: &TicketNumber) -> i64 {
    appealflow::app::show(engine, t).await.unwrap().workflow_version
}

async fn a_shorter_review_sla_applies_to_new_appeals_while_old_ones_keep_theirs_until_migrated(db: TestDb) {
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    workflows(old.path(), false, "");
    workflows(new.path(), true, MIGRATION);
    // Monday 9 March 2026, 10:00 in Shanghai: on version 1, reviews are due at the end of
    // Thursday; on version 2, at the end of Wednesday.
    let clock = Arc::new(ManualClock::new(common::monday_morning()));
    let (thursday, wednesday) = (at("2026-03-13T00:00:00+08:00"), at("2026-03-12T00:00:00+08:00"));

    let v1 = engine_on(&db, old.path(), clock.clone());
    let a = v1.create(&request("acme-a"), &applicant(), None).await.unwrap().ticket;
    let c = v1.create(&request("acme-c"), &applicant(), None).await.unwrap().ticket;
    assert_eq!(review_due(&v1, &a).await, Some(thursday));

    // Version 2 is deployed: new appeals start on it, with its rule.
    let v2 = engine_on(&db, new.path(), clock.clone());
    assert_eq!(v2.versions().all().count(), 2);
    let b = v2.create(&request("acme-b"), &applicant(), None).await.unwrap().ticket;
    assert_eq!(version_of(&v2, &b).await, 2);
    assert_eq!(review_due(&v2, &b).await, Some(wednesday));
    // An appeal in flight stays on version 1, its deadline as armed, and is decided on it.
    assert_eq!(version_of(&v2, &a).await, 1);
    v2.fire(&a, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap();
    assert_eq!((version_of(&v2, &a).await, review_due(&v2, &a).await), (1, Some(thursday)));
    // Rejected and resubmitted, a arms a new review SLA: by version 1's rule, 3 days.
    let mut reject = Fire::new("reject");
    reject.reasons = vec!["missing_documents: proof_of_payment".into()];
    v2.fire(&a, &reject, &reviewer("ann"), None).await.unwrap();
    v2.fire(&a, &Fire::new("notice_delivered"), &Actor::system(), None).await.unwrap();
    v2.fire(&a, &Fire::new("resubmit"), &applicant(), None).await.unwrap();
    assert_eq!((version_of(&v2, &a).await, review_due(&v2, &a).await), (1, Some(thursday)));

    // An explicit migration moves c: its review SLA re-armed by version 2's rule, from
    // when it was armed; the history names both versions.
    let admin = Actor::new("ada", Role::Admin);
    let moved = v2.migrate(&c, 2, &admin).await.unwrap();
    assert_eq!((moved.transition.as_str(), moved.state.as_str()), ("migrate", "submitted"));
    assert_eq!((version_of(&v2, &c).await, review_due(&v2, &c).await), (2, Some(wednesday)));
    let view = appealflow::app::show(&v2, &c).await.unwrap();
    let event = view.history.last().unwrap();
    assert_eq!((event.transition.as_str(), event.actor.as_str()), ("migrate", "ada"));
    let cancelled = view.timers.iter().filter(|t| t.name == "review_sla" && t.status == "cancelled").count();
    assert_eq!(cancelled, 1, "the old deadline is cancelled, not left armed: {:?}", view.timers);
    // Refused, naming the field, and nothing changes: again, backwards, to an unknown one.
    let version = view.version;
    for (ticket, to, why) in [(&c, 2, "already runs on v2"), (&b, 1, "no migration from v2 to v1"), (&a, 7, "v1 to v7")]
    {
        let err = v2.migrate(ticket, to, &admin).await.unwrap_err();
        assert!(matches!(&err, EngineError::Invalid(e) if e[0].field == "to"), "{err}");
        assert!(err.to_string().contains(why), "{err}");
    }
    assert_eq!(appealflow::app::show(&v2, &c).await.unwrap().version, version);

    // Wednesday's end: b's and c's reviews are overdue; a's is not (its warning fires).
    let breached = |runs: Vec<appealflow::store::TimerFiring>| -> Vec<String> {
        runs.iter().filter(|r| r.timer.name == "review_sla").map(|r| r.timer.ticket.to_string()).collect()
    };
    clock.set(wednesday + chrono::Duration::seconds(1));
    let fired = breached(v2.run_due_timers(100).await.unwrap());
    assert!(fired.contains(&b.to_string()) && fired.contains(&c.to_string()), "{fired:?}");
    assert!(!fired.contains(&a.to_string()), "{fired:?}");
    clock.set(thursday + chrono::Duration::seconds(1));
    let fired = breached(v2.run_due_timers(100).await.unwrap());
    assert!(fired.contains(&a.to_string()), "{fired:?}");

    // A process without version 1 refuses to decide a's appeal rather than guess.
    let only = tempfile::tempdir().unwrap();
    workflows(only.path(), true, MIGRATION);
    std::fs::remove_dir_all(only.path().join("account-appeal/v1")).unwrap();
    std::fs::remove_dir_all(only.path().join("account-appeal/migrations")).unwrap();
    let v2_only = engine_on(&db, only.path(), clock.clone());
    let err = v2_only.fire(&a, &Fire::new("claim"), &reviewer("ann"), None).await.unwrap_err();
    assert!(matches!(&err, EngineError::Refused(Refusal::NotLoaded(_))), "{err}");
    assert!(err.to_string().contains("runs on account-appeal v1, which is not loaded"), "{err}");
}

fn appealflow(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_appealflow")).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn workflow_check_validates_every_version_and_every_migration() {
    let dir = tempfile::tempdir().unwrap();
    workflows(dir.path(), true, MIGRATION);
    let root = dir.path().to_str().unwrap();
    let (code, out, err) = appealflow(&["workflow", "check", root]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("v1/workflow.toml: workflow \"account-appeal\" v1 is valid"), "{out}");
    assert!(out.contains("account-appeal/workflow.toml: workflow \"account-appeal\" v2 is valid"), "{out}");
    assert!(out.contains("1-to-2.toml: migration v1 -> v2 is valid"), "{out}");

    // `workflow graph --version` draws any loaded version, and names those loaded. (The
    // two versions differ only in a duration, which a graph does not show: v1 is drawn
    // from its own file, as `workflow check` of that file alone would load it.)
    let (code, one, _) = appealflow(&["workflow", "graph", root, "--version", "1"]);
    assert_eq!(code, 0);
    let (_, alone, _) = appealflow(&["workflow", "graph", dir.path().join("account-appeal/v1").to_str().unwrap()]);
    assert!(one.starts_with("stateDiagram-v2\n") && one == alone, "{one}");
    let (code, _, err) = appealflow(&["workflow", "graph", root, "--version", "3"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--version: no version 3 is loaded (loaded: 1, 2)"), "{err}");

    // A migration that does not fit its versions is refused, naming the file and entry.
    let broken = [
        (
            "[migration]\nfrom = 1\nto = 2\n[states]\nsubmitted = \"limbo\"\n",
            "states.submitted: v2 has no state \"limbo\"",
        ),
        ("[migration]\nfrom = 1\nto = 2\n[states]\nsubmitted = \"closed\"\n", "never closes an appeal"),
        ("[migration]\nfrom = 1\nto = 2\n[timers]\negg_timer = \"keep\"\n", "timers.egg_timer: v1 has no timer"),
        ("[migration]\nfrom = 1\nto = 3\n", "from 1 to 3: name the file 1-to-3.toml"),
        ("[migration]\nfrom = 1\nto = 2\n[timers]\nreview_sla = \"snooze\"\n", "line 5: unknown variant `snooze`"),
        ("[migration]\nfrom = 1\nto = 2\n[timers]\nreview_sla = \"cancel\"\n", "`cancel`: v2 runs \"review_sla\""),
    ];
    for (text, problem) in broken {
        let dir = tempfile::tempdir().unwrap();
        workflows(dir.path(), true, text);
        let (code, out, err) = appealflow(&["workflow", "check", dir.path().to_str().unwrap()]);
        assert_eq!(code, 2, "{text}: {out}{err}");
        assert!(out.contains("migrations/1-to-2.toml") && out.contains(problem), "{text}: {out}");
    }
    // The folder's own file is the newest version; a migration file is named for its versions.
    let dir = tempfile::tempdir().unwrap();
    workflows(dir.path(), true, MIGRATION);
    let wf = dir.path().join("account-appeal");
    std::fs::rename(wf.join("v1"), wf.join("v3")).unwrap();
    let v3 =
        std::fs::read_to_string(wf.join("v3/workflow.toml")).unwrap().replace("\nversion = 1\n", "\nversion = 3\n");
    std::fs::write(wf.join("v3/workflow.toml"), v3).unwrap();
    std::fs::rename(wf.join("migrations/1-to-2.toml"), wf.join("migrations/one-to-two.toml")).unwrap();
    let (code, out, _) = appealflow(&["workflow", "check", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(out.contains("workflow.version: is 2, but v3 is loaded too"), "{out}");
    assert!(out.contains("one-to-two.toml: migration: from 1 to 2: name the file 1-to-2.toml"), "{out}");

    // A version folder whose file says another version is refused.
    let dir = tempfile::tempdir().unwrap();
    workflows(dir.path(), true, MIGRATION);
    std::fs::rename(dir.path().join("account-appeal/v1"), dir.path().join("account-appeal/v3")).unwrap();
    let (code, out, _) = appealflow(&["workflow", "check", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(out.contains("v3/workflow.toml: workflow.version: is 1, but the folder says v3"), "{out}");
}
