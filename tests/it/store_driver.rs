//! The store driver suite: each method of each store trait called directly, on both
//! backends, for what the engine-level conformance suite (store_conformance.rs) does not
//! reach by itself — the schema, by-id reads, due timers left armed, idempotency records,
//! the directory's key lookup, the worker's by-id reads and retries, queue counts and
//! retirement, tokens, rate-limit counters and the janitor's sweeps.

use std::sync::Arc;

use appealflow::domain::{LookupKind, Role};
use appealflow::engine::ManualClock;
use appealflow::jobs::{ACTIONS_QUEUE, NOTIFICATIONS_QUEUE};
use appealflow::store::{
    AppealRecord, DraftRecord, IdempotencyRecord, TimerHandler, TimerRecord, TimerVerdict, TokenRecord, WorkFilter,
};
use chrono::Duration;
use serde_json::json;

use crate::common::{self, TestDb, applicant, engine, monday_morning, request};

on_both_backends!(
    database_names_its_backend_and_reports_a_current_schema_after_a_second_migrate,
    appeals_are_read_by_id_and_by_account_and_their_timers_fall_due_in_order,
    a_timer_the_handler_leaves_stays_armed_and_due,
    an_idempotency_record_is_kept_once_and_read_back,
    the_directory_finds_an_account_by_its_normalised_domain,
    the_worker_reads_one_notification_and_one_action_by_id_and_retries_only_a_failed_action,
    queue_counts_runnable_jobs_and_retires_an_unknown_queue_as_nothing,
    tokens_are_found_by_hash_until_revoked_and_revoked_once,
    rate_limit_counters_count_uncount_and_are_pruned_once_expired,
    the_janitor_sweeps_only_unsubmitted_stale_drafts_and_sees_their_documents,
);

async fn database_names_its_backend_and_reports_a_current_schema_after_a_second_migrate(db: TestDb) {
    let expected = if db.url.starts_with("sqlite") { "sqlite" } else { "postgres" };
    assert_eq!(db.store.backend(), expected);
    assert!(!db.store.scope().is_empty(), "fail points are scoped per database");
    assert_eq!(db.store.pending_migrations().await.unwrap(), Vec::<i64>::new());
    db.store.migrate().await.expect("migrating a current schema is a no-op");
    assert_eq!(db.store.pending_migrations().await.unwrap(), Vec::<i64>::new());
}

async fn appeals_are_read_by_id_and_by_account_and_their_timers_fall_due_in_order(db: TestDb) {
    let engine = engine(&db, Arc::new(ManualClock::new(monday_morning())));
    let out = engine.create(&request("acme"), &applicant(), None).await.unwrap();
    let by_ticket = db.store.appeal_by_ticket(&out.ticket).await.unwrap().unwrap();
    let by_id = db.store.appeal_by_id(&by_ticket.id).await.unwrap().unwrap();
    assert_eq!(by_id, by_ticket);
    assert!(db.store.appeal_by_id("no-such-appeal").await.unwrap().is_none());
    let open: AppealRecord = db.store.open_appeal_for("acme").await.unwrap().expect("acme's appeal is open");
    assert_eq!(open.id, by_id.id);
    assert!(db.store.open_appeal_for("nobody").await.unwrap().is_none());

    // The review SLA's warning falls due first, then the SLA itself.
    let next = db.store.next_timer_due().await.unwrap().expect("an armed timer");
    assert!(db.store.due_timers(next - Duration::seconds(1), 10).await.unwrap().is_empty(), "nothing due before");
    let due: Vec<TimerRecord> = db.store.due_timers(monday_morning() + Duration::days(30), 10).await.unwrap();
    let names: Vec<&str> = due.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["review_sla.warning", "review_sla"]);
    assert_eq!(due[0].due_at, next);
    assert_eq!(
        db.store.due_timers(monday_morning() + Duration::days(30), 1).await.unwrap().len(),
        1,
        "the limit holds"
    );
}

/// A handler that decides nothing can fire now.
struct LeaveArmed;

#[async_trait::async_trait]
impl TimerHandler for LeaveArmed {
    async fn decide(&self, _: &TimerRecord, _: &AppealRecord) -> TimerVerdict {
        TimerVerdict::Leave("the calendar has no published year yet".into())
    }
}

async fn a_timer_the_handler_leaves_stays_armed_and_due(db: TestDb) {
    let engine = engine(&db, Arc::new(ManualClock::new(monday_morning())));
    let out = engine.create(&request("acme"), &applicant(), None).await.unwrap();
    let id = db.store.appeal_by_ticket(&out.ticket).await.unwrap().unwrap().id;
    let later = monday_morning() + Duration::days(30);
    let firings = db.store.fire_due_timers(later, 10, Some(&id), &[], &LeaveArmed).await.unwrap();
    // One firing per appeal per batch (the next would read what this one wrote): the
    // earliest due, decided and left.
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert_eq!(firings[0].timer.name, "review_sla.warning");
    assert_ne!(firings[0].outcome, "fired", "{firings:?}");
    assert_eq!(db.store.due_timers(later, 10).await.unwrap().len(), 2, "left armed, still due");
    assert_eq!(db.store.history(&id).await.unwrap().len(), 1, "the appeal did not move");
}

async fn an_idempotency_record_is_kept_once_and_read_back(db: TestDb) {
    assert!(db.store.idempotency("driver/key-1").await.unwrap().is_none());
    let first = IdempotencyRecord {
        key: "driver/key-1".into(),
        fingerprint: "f1".into(),
        response: json!({ "answer": 1 }),
        created_at: monday_morning(),
    };
    assert!(db.store.remember_idempotency(&first).await.unwrap(), "the first is kept");
    let second = IdempotencyRecord { fingerprint: "f2".into(), response: json!({ "answer": 2 }), ..first.clone() };
    assert!(!db.store.remember_idempotency(&second).await.unwrap(), "a second for the key is not");
    assert_eq!(db.store.idempotency("driver/key-1").await.unwrap(), Some(first));
}

async fn the_directory_finds_an_account_by_its_normalised_domain(db: TestDb) {
    common::import_example_accounts(&db, "driver-suite-key-0123456789", monday_morning()).await;
    let found = db.store.account_by_key(LookupKind::Domain, "ACME.example.").await.unwrap();
    assert_eq!(found.map(|a| a.name), Some("acme-ops".to_string()));
    assert!(db.store.account_by_key(LookupKind::Domain, "nobody.example").await.unwrap().is_none());
    let (account, stored) = db.store.account_record("acme-ops").await.unwrap().expect("acme-ops is imported");
    assert_eq!(account.name, "acme-ops");
    assert!(!stored.is_empty(), "the record as stored, for compare-and-set");
}

async fn the_worker_reads_one_notification_and_one_action_by_id_and_retries_only_a_failed_action(db: TestDb) {
    let engine = engine(&db, Arc::new(ManualClock::new(monday_morning())));
    let out = engine.create(&request("acme"), &applicant(), None).await.unwrap();
    let id = db.store.appeal_by_ticket(&out.ticket).await.unwrap().unwrap().id;
    let all = db.store.notifications(&WorkFilter { appeal_id: Some(id.clone()), ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 1);
    let one = db.store.notification(all[0].id).await.unwrap().expect("read by id");
    assert_eq!(one, all[0]);
    assert!(db.store.notification(i64::MAX).await.unwrap().is_none());
    let pending = WorkFilter { status: Some("pending".into()), ..Default::default() };
    assert_eq!(db.store.notifications(&pending).await.unwrap().len(), 1);
    assert!(db.store.action(i64::MAX).await.unwrap().is_none());
    assert!(!db.store.retry_action(i64::MAX, monday_morning()).await.unwrap(), "no such action: nothing retried");
    assert!(db.store.legacy_effects(10).await.unwrap().is_empty(), "no legacy outbox rows on a new database");
    assert!(db.store.unqueued_work(10).await.unwrap().is_empty(), "the notice's job was enqueued with its commit");
}

async fn queue_counts_runnable_jobs_and_retires_an_unknown_queue_as_nothing(db: TestDb) {
    assert_eq!(db.store.runnable_jobs(&[NOTIFICATIONS_QUEUE, ACTIONS_QUEUE]).await.unwrap(), 0);
    assert!(!db.store.job_to_take(NOTIFICATIONS_QUEUE).await.unwrap(), "no job yet");
    let engine = engine(&db, Arc::new(ManualClock::new(monday_morning())));
    engine.create(&request("acme"), &applicant(), None).await.unwrap();
    assert_eq!(db.store.runnable_jobs(&[NOTIFICATIONS_QUEUE]).await.unwrap(), 1, "the notice's job");
    assert_eq!(db.store.runnable_jobs(&[ACTIONS_QUEUE]).await.unwrap(), 0);
    // What wakes an idle SQLite worker's fetch: a job of that queue, and only of that one.
    assert!(db.store.job_to_take(NOTIFICATIONS_QUEUE).await.unwrap(), "the notice's job is there to take");
    assert!(!db.store.job_to_take(ACTIONS_QUEUE).await.unwrap(), "no action's job");
    assert_eq!(db.store.retire_queue("appealflow.no-such-queue").await.unwrap(), 0);
    assert_eq!(db.store.runnable_jobs(&[NOTIFICATIONS_QUEUE]).await.unwrap(), 1, "other queues untouched");
}

async fn tokens_are_found_by_hash_until_revoked_and_revoked_once(db: TestDb) {
    let token = TokenRecord {
        id: "tok-1".into(),
        name: "ann".into(),
        role: Role::Reviewer,
        token_hash: "hash-1".into(),
        email: None,
        created_at: monday_morning(),
        revoked_at: None,
    };
    db.store.insert_token(&token).await.unwrap();
    assert_eq!(db.store.token_by_hash("hash-1").await.unwrap(), Some(token.clone()));
    assert_eq!(db.store.tokens().await.unwrap(), vec![token]);
    let at = monday_morning() + Duration::hours(1);
    assert!(db.store.revoke_token("tok-1", at).await.unwrap());
    assert!(!db.store.revoke_token("tok-1", at).await.unwrap(), "revoked once");
    assert!(db.store.token_by_hash("hash-1").await.unwrap().is_none(), "a revoked token authenticates nobody");
    assert_eq!(db.store.tokens().await.unwrap()[0].revoked_at, Some(at), "still listed, as revoked");
}

async fn rate_limit_counters_count_uncount_and_are_pruned_once_expired(db: TestDb) {
    let expires = monday_morning() + Duration::minutes(15);
    assert_eq!(db.store.count_hit("drafts:10.0.0.1", 7, expires).await.unwrap(), 1);
    assert_eq!(db.store.count_hit("drafts:10.0.0.1", 7, expires).await.unwrap(), 2);
    assert_eq!(db.store.count_hit("drafts:10.0.0.1", 8, expires).await.unwrap(), 1, "another window counts apart");
    db.store.uncount_hit("drafts:10.0.0.1", 7).await.unwrap();
    assert_eq!(db.store.count_hit("drafts:10.0.0.1", 7, expires).await.unwrap(), 2, "one taken back");
    assert_eq!(db.store.prune_rate_limits(expires - Duration::seconds(1)).await.unwrap(), 0, "not yet expired");
    assert_eq!(db.store.prune_rate_limits(expires + Duration::seconds(1)).await.unwrap(), 2);
    assert_eq!(db.store.count_hit("drafts:10.0.0.1", 7, expires).await.unwrap(), 1, "counted afresh");
}

async fn the_janitor_sweeps_only_unsubmitted_stale_drafts_and_sees_their_documents(db: TestDb) {
    let sha = "ab".repeat(32);
    let draft = |id: &str, ticket: Option<&str>| DraftRecord {
        id: id.into(),
        secret_hash: "h".into(),
        data: json!({ "documents": [{ "kind": "supplementary", "sha256": sha }] }),
        ticket: ticket.map(str::to_string),
        created_at: monday_morning(),
        updated_at: monday_morning(),
    };
    db.store.insert_draft(&draft("stale", None)).await.unwrap();
    db.store.insert_draft(&draft("submitted", Some("4821-0937-5521-6604-3319"))).await.unwrap();
    assert!(db.store.referenced_blobs().await.unwrap().contains(&sha), "a draft's document is referenced");
    let later = monday_morning() + Duration::days(8);
    assert_eq!(db.store.delete_stale_drafts(monday_morning()).await.unwrap(), 0, "none older than that");
    assert_eq!(db.store.delete_stale_drafts(later).await.unwrap(), 1, "only the unsubmitted one");
    assert!(db.store.draft("stale").await.unwrap().is_none());
    assert!(db.store.draft("submitted").await.unwrap().is_some());
}
