//! The background half on a manual clock, on SQLite and on PostgreSQL: SLA warning and
//! breach at the right instants with the leads notified, rejection → notice delivered →
//! window → resubmission before the deadline or expiry one second after it, approval →
//! every action applied once → closed with the security notice, the manual task of the
//! "Other" item, a permanently failing account endpoint leaving the appeal flagged, and
//! the rendered notifications. Deterministic: the production worker runs on a manual
//! clock, and `Running::run_until` fires each timer at its own due instant and lets the
//! worker do all the work it causes before the clock moves on.

use crate::common;

use std::sync::{Arc, Mutex};

use crate::common::{TestDb, at};
use appealflow::app::intake::{Intake, LocalFiles};
use appealflow::app::work::Work;
use appealflow::domain::draft::DraftInput;
use appealflow::domain::{Actor, Role, TicketNumber};
use appealflow::engine::ManualClock;
use appealflow::jobs::Running;
use appealflow::startup::WorkConfig;
use appealflow::store::{ActionStatus, NotificationRecord, NotificationStatus, WorkFilter};
use appealflow::workflow::Fire;
use chrono::{DateTime, Utc};

on_both_backends!(
    sla_warning_and_breach_fire_at_their_instants_and_notify_the_leads,
    the_leads_are_the_active_lead_tokens_with_an_email_and_the_configured_list,
    rejection_notice_delivery_opens_the_window_and_a_resubmission_before_the_deadline_is_accepted,
    the_window_expires_one_second_after_its_deadline_and_the_applicant_is_told,
    approval_applies_every_action_once_sends_the_security_notice_and_closes,
    the_other_item_waits_for_a_reviewer_to_mark_its_manual_task_done,
    a_permanently_failing_account_endpoint_leaves_the_appeal_approved_and_flagged,
    an_undeliverable_rejection_notice_still_opens_the_window_and_alerts_the_leads,
    a_retried_sms_that_finally_gives_up_falls_back_to_email_which_opens_the_window,
    a_notice_never_attempted_is_overtaken_by_its_deadline,
    a_stop_during_a_burn_down_ends_after_the_batch_in_hand,
    outbox_rows_an_earlier_version_left_are_carried_out_once_at_start,
);

const KEY: &str = "worker-test-key-0123456789";

use crate::common::examples;

pub(crate) struct Harness {
    pub(crate) db: TestDb,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) intake: Arc<Intake>,
    work: Arc<Work>,
    worker: Option<Running>,
    _blobs: tempfile::TempDir,
}

async fn harness_with(db: TestDb, work_config: WorkConfig) -> Harness {
    // Monday 9 March 2026, 10:00 in Shanghai.
    let clock = Arc::new(ManualClock::new(common::monday_morning()));
    let blobs = tempfile::tempdir().unwrap();
    let app = common::app(&db, clock.clone(), &work_config, Some(common::intake_config(blobs.path(), KEY)));
    let (intake, work) = (app.intake().expect("built with intake").clone(), app.work.clone());
    let worker = common::start_app_worker(&app);
    common::import_example_accounts(&db, KEY, clock.now_utc()).await;
    Harness { db, clock, intake, work, worker: Some(worker), _blobs: blobs }
}

trait Now {
    fn now_utc(&self) -> DateTime<Utc>;
}

impl Now for ManualClock {
    fn now_utc(&self) -> DateTime<Utc> {
        appealflow::engine::Clock::now(self)
    }
}

pub(crate) async fn harness(db: TestDb) -> Harness {
    harness_with(db, WorkConfig { lead_emails: vec!["leads@example.com".into()], ..Default::default() }).await
}

pub(crate) fn draft(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> DraftInput {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(examples().join(name)).unwrap()).unwrap();
    edit(&mut v);
    serde_json::from_value(v).unwrap()
}

impl Harness {
    pub(crate) async fn submit(&self, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> TicketNumber {
        let files = LocalFiles { base: examples() };
        self.intake.submit(draft(name, edit), &files, None).await.unwrap().ticket
    }

    pub(crate) async fn fire(&self, ticket: &TicketNumber, transition: &str, reasons: &[&str]) {
        let mut cmd = Fire::new(transition);
        cmd.reasons = reasons.iter().map(|r| r.to_string()).collect();
        self.work.engine().fire(ticket, &cmd, &Actor::new("ann", Role::Reviewer), None).await.unwrap();
    }

    pub(crate) async fn run_until(&self, rfc3339: &str) {
        let worker = self.worker.as_ref().expect("the worker runs");
        let report = worker.run_until(&self.clock, at(rfc3339), std::time::Duration::from_secs(60)).await.unwrap();
        assert_eq!(report.dead_jobs, 0, "{report:?}");
    }

    pub(crate) async fn record(&self, ticket: &TicketNumber) -> appealflow::store::AppealRecord {
        self.db.store.appeal_by_ticket(ticket).await.unwrap().unwrap()
    }

    async fn history(&self, ticket: &TicketNumber) -> Vec<(String, DateTime<Utc>)> {
        let id = self.record(ticket).await.id;
        self.db.store.history(&id).await.unwrap().into_iter().map(|e| (e.transition, e.at)).collect()
    }

    pub(crate) async fn notifications(&self, ticket: &TicketNumber) -> Vec<NotificationRecord> {
        let id = self.record(ticket).await.id;
        self.db.store.notifications(&WorkFilter { appeal_id: Some(id), ..Default::default() }).await.unwrap()
    }
}

async fn sla_warning_and_breach_fire_at_their_instants_and_notify_the_leads(db: TestDb) {
    let h = harness(db).await;
    let t = h.submit("draft-individual.json", |_| {}).await;
    // Received Monday: Tue, Wed, Thu count; warning at Thursday 00:00, breach at Friday 00:00.
    h.run_until("2026-03-11T23:59:59+08:00").await;
    assert!(!h.history(&t).await.iter().any(|(n, _)| n == "sla_warning"));
    h.run_until("2026-03-12T00:00:00+08:00").await;
    let history = h.history(&t).await;
    let warning = history.iter().find(|(n, _)| n == "sla_warning").expect("warning fired");
    assert_eq!(warning.1, at("2026-03-12T00:00:00+08:00"));
    h.run_until("2026-03-13T00:00:01+08:00").await;
    let history = h.history(&t).await;
    let breach = history.iter().find(|(n, _)| n == "sla_breached").expect("breach fired");
    assert_eq!(breach.1, at("2026-03-13T00:00:00+08:00"));
    assert_eq!(h.record(&t).await.state, "submitted", "neither changes the state");
    let leads: Vec<_> = h.notifications(&t).await.into_iter().filter(|n| n.recipient == "leads@example.com").collect();
    assert_eq!(leads.iter().map(|n| n.template.as_str()).collect::<Vec<_>>(), ["sla_warning", "sla_breach"]);
    assert!(leads.iter().all(|n| n.channel == "email" && n.status == NotificationStatus::Sent));
    assert!(leads[1].body.contains(&t.to_string()), "{}", leads[1].body);
    assert!(leads[1].body.contains("2026-03-13 00:00 +08:00"), "the breach names the deadline: {}", leads[1].body);
}

async fn the_leads_are_the_active_lead_tokens_with_an_email_and_the_configured_list(db: TestDb) {
    use appealflow::app::access::create_token;
    let h = harness(db).await;
    let store = h.db.store.as_ref();
    let now = h.clock.now_utc();
    create_token(store, Role::Lead, "lee", Some("lee@example.com"), now).await.unwrap();
    create_token(store, Role::Lead, "lee (laptop)", Some("lee@example.com"), now).await.unwrap();
    create_token(store, Role::Lead, "max", None, now).await.unwrap();
    let (_, gone) = create_token(store, Role::Lead, "old", Some("old-lead@example.com"), now).await.unwrap();
    store.revoke_token(&gone.id, now).await.unwrap();
    create_token(store, Role::Reviewer, "ann", Some("ann@example.com"), now).await.unwrap();
    assert!(matches!(
        create_token(store, Role::Lead, "bad", Some("not an address"), now).await,
        Err(appealflow::app::access::TokenError::Email(_))
    ));
    assert_eq!(h.work.lead_emails().await.unwrap(), ["leads@example.com", "lee@example.com"]);

    let t = h.submit("draft-individual.json", |_| {}).await;
    h.run_until("2026-03-13T00:00:01+08:00").await;
    let mut sent: Vec<(String, String)> = h
        .notifications(&t)
        .await
        .into_iter()
        .filter(|n| n.template.starts_with("sla_"))
        .map(|n| (n.template, n.recipient))
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            ("sla_breach".into(), "leads@example.com".into()),
            ("sla_breach".into(), "lee@example.com".into()),
            ("sla_warning".into(), "leads@example.com".into()),
            ("sla_warning".into(), "lee@example.com".into()),
        ],
        "each active lead's address once, plus the list; not the revoked lead's, not a reviewer's"
    );
}

async fn reject(h: &Harness) -> TicketNumber {
    let t = h.submit("draft-individual.json", |_| {}).await;
    h.fire(&t, "claim", &[]).await;
    h.fire(&t, "reject", &["missing_documents: supplementary"]).await;
    t
}

async fn rejection_notice_delivery_opens_the_window_and_a_resubmission_before_the_deadline_is_accepted(db: TestDb) {
    let h = harness(db).await;
    let t = reject(&h).await;
    assert_eq!(h.record(&t).await.state, "rejected", "the window waits for the notice");
    h.run_until("2026-03-09T10:00:00+08:00").await;
    assert_eq!(h.record(&t).await.state, "resubmission_window");
    let notice = h.notifications(&t).await.into_iter().find(|n| n.template == "appeal_rejected").unwrap();
    assert_eq!(notice.status, NotificationStatus::Sent);
    // The reasons in words, in the applicant's language (zh-CN: the draft names none).
    assert!(notice.body.contains("缺少材料：补充材料"), "{}", notice.body);
    // Delivered Monday: the window closes at the end of Thursday 12 March, Shanghai time.
    assert!(notice.body.contains("2026-03-13 00:00 +08:00"), "{}", notice.body);
    h.run_until("2026-03-12T23:59:59+08:00").await;
    let reminder = h.notifications(&t).await.into_iter().find(|n| n.template == "window_reminder");
    assert!(reminder.is_some_and(|r| r.status == NotificationStatus::Sent), "the reminder went out 24 hours before");
    let files = LocalFiles { base: examples() };
    let out = h.intake.resubmit(&t, draft("draft-individual.json", |_| {}), &files, None).await.unwrap();
    assert_eq!(out.state, "submitted");
}

async fn the_window_expires_one_second_after_its_deadline_and_the_applicant_is_told(db: TestDb) {
    let h = harness(db).await;
    let t = reject(&h).await;
    h.run_until("2026-03-13T00:00:00+08:00").await;
    let record = h.record(&t).await;
    assert_eq!((record.state.as_str(), record.outcome.as_deref()), ("closed", Some("expired")));
    let expired = h.history(&t).await.into_iter().find(|(n, _)| n == "expire").unwrap();
    assert_eq!(expired.1, at("2026-03-13T00:00:00+08:00"));
    let told: Vec<_> = h.notifications(&t).await.into_iter().filter(|n| n.template == "window_expired").collect();
    assert!(!told.is_empty() && told.iter().all(|n| n.status == NotificationStatus::Sent));
    let files = LocalFiles { base: examples() };
    h.clock.set(at("2026-03-13T00:00:01+08:00"));
    let late = h.intake.resubmit(&t, draft("draft-individual.json", |_| {}), &files, None).await.unwrap_err();
    assert!(late.to_string().contains("start a new appeal"), "{late}");
}

async fn approval_applies_every_action_once_sends_the_security_notice_and_closes(db: TestDb) {
    let h = harness(db).await;
    let t = h
        .submit("draft-enterprise.json", |d| {
            d["items"] =
                serde_json::json!(["reset_password", "detach_mfa", "clear_security_questions", "clear_ip_logon_mask"])
        })
        .await;
    h.fire(&t, "claim", &[]).await;
    h.fire(&t, "approve", &[]).await;
    // An enterprise's secure phone: four-eyes. Nothing is applied on the first approval.
    h.run_until("2026-03-09T10:00:30+08:00").await;
    let record = h.record(&t).await;
    assert_eq!(record.state, "awaiting_second_approval");
    let none = h.db.store.actions(&WorkFilter { appeal_id: Some(record.id.clone()), ..Default::default() }).await;
    assert!(none.unwrap().is_empty(), "no account action before the second approval");
    let second = Actor::new("bea", Role::Lead);
    h.work.engine().fire(&t, &Fire::new("confirm_approval"), &second, None).await.unwrap();
    // The secure phone rotates: the change waits out its 24-hour cooling-off, and the
    // "not you?" notice goes to the phone and email it would replace.
    h.run_until("2026-03-09T10:01:00+08:00").await;
    let record = h.record(&t).await;
    assert_eq!(record.state, "cooling_off");
    let none = h.db.store.actions(&WorkFilter { appeal_id: Some(record.id.clone()), ..Default::default() }).await;
    assert!(none.unwrap().is_empty(), "no account action during the cooling-off");
    let pending: Vec<_> = h.notifications(&t).await.into_iter().filter(|n| n.template == "change_pending").collect();
    let to: Vec<_> = pending.iter().map(|n| (n.channel.as_str(), n.recipient.as_str())).collect();
    assert_eq!(to, [("sms", "+8613900001111"), ("email", "it@acme.example")]);
    assert!(pending.iter().all(|n| n.status.to_string() == "sent"), "{pending:?}");
    h.run_until("2026-03-10T10:00:00+08:00").await;
    assert_eq!(h.record(&t).await.state, "cooling_off", "24 hours have not passed");
    h.run_until("2026-03-10T10:01:00+08:00").await;
    let record = h.record(&t).await;
    assert_eq!((record.state.as_str(), record.outcome.as_deref()), ("closed", Some("completed")));
    let ended = h.db.store.history(&record.id).await.unwrap();
    assert!(ended.iter().any(|e| e.transition == "cooling_off_elapsed" && e.actor == "appealflow"), "{ended:?}");
    let actions =
        h.db.store.actions(&WorkFilter { appeal_id: Some(record.id.clone()), ..Default::default() }).await.unwrap();
    let names: Vec<_> = actions.iter().map(|a| (a.action.as_str(), a.status.as_str(), a.attempts)).collect();
    assert_eq!(
        names,
        [
            ("rotate_secure_phone", "succeeded", 1),
            ("detach_mfa", "succeeded", 1),
            ("clear_security_questions", "succeeded", 1),
            ("clear_ip_logon_mask", "succeeded", 1)
        ]
    );
    let account = h.db.store.account("acme-ops").await.unwrap().unwrap();
    assert_eq!(account.security.secure_phone.unwrap().as_e164(), "+8613712345678");
    assert!(!account.security.mfa_attached && !account.security.security_questions_set);
    assert_eq!(account.security.ip_logon_mask, None);
    // Running again changes nothing: every action's key was applied once, in the ledger.
    h.run_until("2026-03-10T10:02:00+08:00").await;
    let ledger = h.db.store.ledger().await.unwrap();
    let mut keys: Vec<&str> = ledger.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    let mut expected: Vec<&str> = actions.iter().map(|a| a.idempotency_key.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(keys, expected, "one ledger row per action key");
    assert!(ledger.iter().all(|(_, c)| c.account == "acme-ops"));
    let notices: Vec<_> = h.notifications(&t).await.into_iter().filter(|n| n.template == "security_notice").collect();
    let to: Vec<_> = notices.iter().map(|n| (n.channel.as_str(), n.recipient.as_str())).collect();
    assert_eq!(
        to,
        [("sms", "+8613900001111"), ("email", "it@acme.example")],
        "the previous phone and the security email"
    );
    assert!(notices[0].body.contains("+86 137****5678"), "{}", notices[0].body);
    let completed = h.notifications(&t).await.into_iter().filter(|n| n.template == "action_completed").count();
    assert_eq!(completed, 4);
}

async fn the_other_item_waits_for_a_reviewer_to_mark_its_manual_task_done(db: TestDb) {
    let h = harness(db).await;
    let t = h
        .submit("draft-individual.json", |d| {
            d["items"] = serde_json::json!(["other"]);
            d["supplementary_content"] = serde_json::json!("The account was frozen after a risk check.");
        })
        .await;
    h.fire(&t, "claim", &[]).await;
    h.fire(&t, "approve", &[]).await;
    h.run_until("2026-03-10T10:00:00+08:00").await;
    assert_eq!(h.record(&t).await.state, "approved", "waits for the manual task");
    h.work.complete_manual(&t, &Actor::new("ann", Role::Reviewer), None).await.unwrap();
    h.run_until("2026-03-10T10:01:00+08:00").await;
    let record = h.record(&t).await;
    assert_eq!(record.outcome.as_deref(), Some("completed"));
    let task = h.db.store.actions(&WorkFilter { appeal_id: Some(record.id), ..Default::default() }).await.unwrap();
    assert_eq!(task[0].done_by.as_deref(), Some("ann"));
}

#[derive(Default)]
struct Recorded(Mutex<Vec<(String, String)>>);

async fn a_permanently_failing_account_endpoint_leaves_the_appeal_approved_and_flagged(db: TestDb) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    let recorded = Arc::new(Recorded::default());
    let r = recorded.clone();
    let app = axum::Router::new().route(
        "/{action}",
        post(move |axum::extract::Path(action): axum::extract::Path<String>, headers: HeaderMap| {
            let r = r.clone();
            async move {
                let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                r.0.lock().unwrap().push((action, key));
                (StatusCode::UNPROCESSABLE_ENTITY, "account is locked")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let h = harness_with(db, WorkConfig { actions_url: Some((url, "s3cret".into())), ..Default::default() }).await;
    let t = h.submit("draft-individual.json", |d| d["items"] = serde_json::json!(["detach_mfa"])).await;
    h.fire(&t, "claim", &[]).await;
    h.fire(&t, "approve", &[]).await;
    h.run_until("2026-03-09T10:05:00+08:00").await;
    let record = h.record(&t).await;
    assert_eq!(record.state, "approved", "a permanently failed action leaves the appeal approved");
    let failed = h.db.store.actions(&WorkFilter { status: Some("failed".into()), ..Default::default() }).await.unwrap();
    assert!(failed.iter().all(|a| a.status == ActionStatus::Failed));
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].ticket, t);
    assert!(failed[0].last_error.as_deref().unwrap_or("").contains("422"), "{:?}", failed[0].last_error);
    let calls = recorded.0.lock().unwrap().clone();
    assert_eq!(calls, [("detach_mfa".to_string(), failed[0].idempotency_key.clone())], "a 4xx is not retried");
}

// ------------------------------------------------------- an undeliverable notice

/// A notification webhook on loopback that records what it received and answers each
/// request with the status `answer` gives for (channel, recipient).
struct Webhook {
    url: String,
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
}

async fn webhook(answer: fn(&str, &str) -> u16) -> Webhook {
    use axum::http::StatusCode;
    use axum::routing::post;
    let seen: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/notify",
        post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let s = s.clone();
            async move {
                let field = |k: &str| body[k].as_str().unwrap_or_default().to_string();
                let (channel, recipient) = (field("channel"), field("recipient"));
                s.lock().unwrap().push((field("template"), channel.clone(), recipient.clone()));
                StatusCode::from_u16(answer(&channel, &recipient)).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Webhook { url, seen }
}

async fn harness_with_webhook(db: TestDb, hook: &Webhook) -> Harness {
    harness_with(
        db,
        WorkConfig {
            lead_emails: vec!["leads@example.com".into()],
            notify_webhook: Some((hook.url.clone(), "hook-secret".into())),
            ..Default::default()
        },
    )
    .await
}

/// The applicant's SMS gateway refuses the number (400) and the mail server refuses the
/// address: the rejection notice goes SMS first, then email, both fail for good — and the
/// appeal still moves on. The window opens, the leads are told, the progress query shows
/// the rejection with its reasons and deadline, and the applicant can continue.
async fn an_undeliverable_rejection_notice_still_opens_the_window_and_alerts_the_leads(db: TestDb) {
    let hook = webhook(|_, to| if to == "leads@example.com" { 200 } else { 400 }).await;
    let h = harness_with_webhook(db, &hook).await;
    let t = reject(&h).await;
    h.run_until("2026-03-09T10:00:00+08:00").await;
    let record = h.record(&t).await;
    assert_eq!(record.state, "resubmission_window", "the window opened without the notice");
    let history: Vec<String> = h.history(&t).await.into_iter().map(|(n, _)| n).collect();
    assert_eq!(history.last().map(String::as_str), Some("notice_undeliverable"), "{history:?}");
    let notices: Vec<_> = h.notifications(&t).await.into_iter().filter(|n| n.template == "appeal_rejected").collect();
    let chain: Vec<_> = notices.iter().map(|n| (n.channel.as_str(), n.status, n.attempts)).collect();
    assert_eq!(
        chain,
        [("sms", NotificationStatus::Failed, 1), ("email", NotificationStatus::Failed, 1)],
        "SMS first; email only after SMS failed for good; a 4xx is not retried"
    );
    let seen = hook.seen.lock().unwrap().clone();
    let rejected: Vec<_> = seen.iter().filter(|(t, _, _)| t == "appeal_rejected").map(|(_, c, _)| c.as_str()).collect();
    assert_eq!(rejected, ["sms", "email"], "in that order");
    let alert = h.notifications(&t).await.into_iter().find(|n| n.template == "notice_undeliverable").unwrap();
    assert_eq!((alert.recipient.as_str(), alert.status), ("leads@example.com", NotificationStatus::Sent));
    assert!(alert.body.contains("2026-03-13 00:00 +08:00"), "the leads see the deadline: {}", alert.body);

    let progress = h.intake.progress(&t.to_string(), "13812345678").await.unwrap();
    assert_eq!(progress.stage, "rejected");
    assert_eq!(progress.reasons, ["missing_documents: supplementary"]);
    assert_eq!(progress.continue_until.as_deref(), Some("2026-03-13T00:00:00+08:00"), "{progress:?}");
    let files = LocalFiles { base: examples() };
    let out = h.intake.resubmit(&t, draft("draft-individual.json", |_| {}), &files, None).await.unwrap();
    assert_eq!(out.state, "submitted", "the applicant can always continue");
}

/// A 5xx is retried, and a retried SMS that finally gives up falls back to email, which
/// is delivered and opens the window as any delivery does.
async fn a_retried_sms_that_finally_gives_up_falls_back_to_email_which_opens_the_window(db: TestDb) {
    let hook = webhook(|channel, _| if channel == "sms" { 503 } else { 200 }).await;
    let h = harness_with_webhook(db, &hook).await;
    let t = reject(&h).await;
    h.run_until("2026-03-09T10:00:00+08:00").await;
    assert_eq!(h.record(&t).await.state, "resubmission_window");
    let history: Vec<String> = h.history(&t).await.into_iter().map(|(n, _)| n).collect();
    assert_eq!(history.last().map(String::as_str), Some("notice_delivered"), "{history:?}");
    let notices: Vec<_> = h.notifications(&t).await.into_iter().filter(|n| n.template == "appeal_rejected").collect();
    let attempts = appealflow::jobs::DEFAULT_MAX_ATTEMPTS as i64;
    let chain: Vec<_> = notices.iter().map(|n| (n.channel.as_str(), n.status, n.attempts)).collect();
    assert_eq!(chain, [("sms", NotificationStatus::Failed, attempts), ("email", NotificationStatus::Sent, 1)]);
    assert!(notices[0].last_error.as_deref().is_some_and(|e| e.contains("503")), "{:?}", notices[0].last_error);
    let dead = h.db.store.jobs(&appealflow::store::JobFilter { dead_only: true, ..Default::default() }).await.unwrap();
    assert_eq!(dead, [], "giving up on a channel is the notification's record, not a dead job");
}

/// No worker at all delivers the notice: the rejected state's own deadline moves the
/// appeal on after 12 hours (the backstop that needs no external system).
async fn a_notice_never_attempted_is_overtaken_by_its_deadline(db: TestDb) {
    let mut h = harness(db).await;
    h.worker.take().unwrap().stop().await.unwrap();
    let t = reject(&h).await;
    let notice = h.notifications(&t).await.into_iter().find(|n| n.template == "appeal_rejected").unwrap();
    assert_eq!(notice.status, NotificationStatus::Pending, "queued, and nobody delivers it");
    h.clock.set(at("2026-03-09T21:59:59+08:00"));
    assert!(h.work.engine().run_due_timers(100).await.unwrap().is_empty(), "not before its 12 hours");
    h.clock.set(at("2026-03-09T22:00:00+08:00"));
    h.work.engine().run_due_timers(100).await.unwrap();
    let record = h.record(&t).await;
    assert_eq!(record.state, "resubmission_window", "the deadline fired");
    let fired = h.history(&t).await.into_iter().find(|(n, _)| n == "notice_undeliverable").unwrap();
    assert_eq!(fired.1, at("2026-03-09T22:00:00+08:00"));
}

/// A worker asked to stop during a burn-down commits the batch in hand and stops: the
/// rest of the backlog stays armed for the next run (which fires it), where the stop used
/// to wait for the whole backlog — half a minute at 66,000 due timers, past the grace
/// period its jobs get.
async fn a_stop_during_a_burn_down_ends_after_the_batch_in_hand(db: TestDb) {
    let mut h = harness(db).await;
    h.worker.take().unwrap().stop().await.unwrap();
    for i in 0..6 {
        h.work.engine().create(&common::request(&format!("burn{i}")), &common::applicant(), None).await.unwrap();
    }
    // Every review SLA and its warning are due.
    h.clock.set(at("2026-03-20T00:00:00+08:00"));
    let due = async || h.db.store.due_timers(h.clock.now_utc(), 1000).await.unwrap().len();
    let backlog = due().await;
    assert_eq!(backlog, 12, "each appeal's SLA and its warning");
    // One timer a batch; the stop is raised before the timer loop's first batches end
    // (one in each lane: two on PostgreSQL).
    let settings =
        appealflow::jobs::WorkerSettings { timer_batch: 1, ..appealflow::jobs::WorkerSettings::simulation() };
    common::start_worker_with(&h.db, h.work.clone(), settings).stop().await.unwrap();
    let left = due().await;
    let lanes = h.db.store.timer_lanes();
    assert!(left >= backlog - lanes, "at most the batches in hand fired: {left} of {backlog} still due");
    let worker = common::start_worker(&h.db, h.work.clone());
    common::settle(&worker).await;
    worker.stop().await.unwrap();
    assert_eq!(due().await, 0, "the next run fired the rest");
    let fired =
        h.db.store
            .timers(None)
            .await
            .unwrap()
            .into_iter()
            .filter(|t| t.status == appealflow::store::TimerStatus::Fired)
            .count();
    assert!(fired >= backlog, "{fired} fired");
}

// ----------------------------------------------------- upgrading from the outbox

/// Outbox rows an earlier version committed but had not carried out (its relay ran
/// after the commit) are carried out once when the worker starts — under the key they
/// were recorded with — and marked done; a second start finds nothing.
async fn outbox_rows_an_earlier_version_left_are_carried_out_once_at_start(db: TestDb) {
    let mut h = harness(db).await;
    h.worker.take().unwrap().stop().await.unwrap();
    let t = h.submit("draft-individual.json", |_| {}).await;
    let record = h.record(&t).await;
    let key = format!("{}:1:9:notify:window_reminder", record.id);
    let insert =
        "INSERT INTO outbox (appeal_id, event_seq, effect, template, recipient, idempotency_key, status, created_at)
                  VALUES ($1, 1, 'notify', 'window_reminder', 'applicant', $2, 'queued', $3)";
    if h.db.url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&h.db.url).await.unwrap();
        sqlx::query(insert)
            .bind(&record.id)
            .bind(&key)
            .bind("2026-03-09T02:00:00.000000Z")
            .execute(&pool)
            .await
            .unwrap();
    } else {
        let pool = sqlx::PgPool::connect(&h.db.url).await.unwrap();
        sqlx::query(insert).bind(&record.id).bind(&key).bind(common::monday_morning()).execute(&pool).await.unwrap();
    }
    assert_eq!(h.db.store.legacy_effects(10).await.unwrap().len(), 1);
    let worker = common::start_worker(&h.db, h.work.clone());
    common::settle(&worker).await;
    worker.stop().await.unwrap();
    assert_eq!(h.db.store.legacy_effects(10).await.unwrap(), [], "marked done");
    let made: Vec<_> = h.notifications(&t).await.into_iter().filter(|n| n.idempotency_key.starts_with(&key)).collect();
    assert_eq!(made.len(), 2, "SMS and email, keyed by the outbox row: {made:?}");
    assert!(made.iter().all(|n| n.status == NotificationStatus::Sent));
    // Started again: nothing left to adopt, nothing made twice.
    let counts = h.db.store.row_counts().await.unwrap();
    assert_eq!(h.work.adopt_earlier_work(appealflow::jobs::LEGACY_EFFECTS_QUEUE).await.unwrap(), (0, 0));
    assert_eq!(h.db.store.row_counts().await.unwrap(), counts);
}
