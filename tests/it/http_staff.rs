//! The reviewers', leads' and admins' API against a real server on loopback, on SQLite
//! and on PostgreSQL: the authorisation matrix, the queue's order and paging,
//! conflicting and stale decisions, idempotent retries, bad input on every route, document
//! downloads, dead-job administration, and the OpenAPI document checked against the
//! router.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::{TestDb, at};
use appealflow::app::access::create_token;
use appealflow::app::intake::{DocumentSource, LocalFiles};
use appealflow::domain::draft::DraftInput;
use appealflow::domain::{AccountInput, Actor, IdHasher, Role, TicketNumber};
use appealflow::engine::{Clock, Engine, ManualClock};
use appealflow::http::api::API;
use appealflow::http::{AppState, HttpConfig};
use appealflow::startup::WorkConfig;
use appealflow::store::{RowCounts, TimerStatus};
use appealflow::workflow::Fire;
use serde_json::{Value, json};

on_both_backends!(
    every_staff_route_answers_each_caller_as_the_matrix_says,
    queue_lists_open_appeals_by_review_deadline_breached_first_and_pages,
    concurrent_approve_and_reject_on_the_same_version_give_one_200_and_one_409,
    stale_if_match_gets_409_with_the_current_state_and_version,
    repeated_posts_with_the_same_idempotency_key_replay_the_first_answer_and_store_one_event,
    bad_input_on_every_staff_route_is_a_problem_document_and_stores_nothing,
    documents_are_served_only_for_the_appeals_own_documents,
    detail_shows_case_documents_actions_and_notifications_never_a_full_recipient,
    lead_reassigns_a_claim_and_every_decision_records_who_made_it,
    admin_lists_jobs_retries_a_dead_one_once_per_key_and_refuses_one_that_is_not_dead,
    admin_sees_the_loaded_workflow_and_calendars,
    openapi_describes_every_route_the_router_serves_and_nothing_else,
    readyz_answers_503_while_the_schema_is_behind_the_build,
    unknown_paths_wrong_methods_and_missing_credentials_answer_problem_documents,
);

const KEY: &str = "http-staff-test-key-0123456789";
const UNKNOWN_TOKEN: &str = "aft_0000000000000000000000000000000000000000000000000000000000000000";

/// What a download answers once every check has passed.
const DOWNLOAD_SERVED: u16 = 200;

use crate::common::examples;

fn example(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(examples().join(name)).unwrap()).unwrap()
}

// ------------------------------------------------------------------------ harness

/// Which example a fresh appeal is made from, on its own copy of the example account.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// `draft-individual.json` (no documents).
    Individual,
    /// `draft-enterprise.json` (three documents).
    Enterprise,
    /// `draft-deregistered.json` (needs the entity-change ticket).
    Deregistered,
    /// The individual draft asking for "other" (a manual task after approval).
    Other,
}

pub(crate) struct Tokens {
    pub(crate) ann: String,
    pub(crate) bob: String,
    pub(crate) lee: String,
    pub(crate) ada: String,
}

pub(crate) struct Harness {
    pub(crate) db: TestDb,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) state: Arc<AppState>,
    base: String,
    client: reqwest::Client,
    pub(crate) tokens: Tokens,
    hasher: IdHasher,
    accounts: Vec<Value>,
    next: AtomicUsize,
    _blobs: tempfile::TempDir,
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    content_type: String,
    pub(crate) headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("{} body is not JSON ({e}): {}", self.status, String::from_utf8_lossy(&self.body))
        })
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A problem document with this status and a `code`; returns the document.
    pub(crate) fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.content_type, "application/problem+json", "{}", self.text());
        let p = self.json();
        assert!(p["code"].as_str().is_some_and(|c| !c.is_empty()), "{p}");
        assert_eq!(p["status"], status, "{p}");
        p
    }
}

pub(crate) async fn harness(db: TestDb) -> Harness {
    // Monday 9 March 2026, 10:00 in Shanghai.
    let clock = Arc::new(ManualClock::new(common::monday_morning()));
    let blobs = tempfile::tempdir().unwrap();
    let work_config = WorkConfig { lead_emails: vec!["leads@example.com".into()], ..Default::default() };
    let app = common::app(&db, clock.clone(), &work_config, Some(common::intake_config(blobs.path(), KEY)));
    let state =
        Arc::new(AppState::new(app.intake().expect("built with intake").clone(), app.work, HttpConfig::default()));

    let hasher = IdHasher::new(KEY.as_bytes()).unwrap();
    let accounts: Vec<Value> = serde_json::from_value(example("accounts.json")).unwrap();
    let imported: Vec<_> = accounts
        .iter()
        .map(|a| serde_json::from_value::<AccountInput>(a.clone()).unwrap().into_account("examples", &hasher).unwrap())
        .collect();
    db.store.put_accounts(&imported, common::monday_morning()).await.unwrap();

    let store = db.store.as_ref();
    let now = common::monday_morning();
    let token = |role, name: &'static str| async move { create_token(store, role, name, None, now).await.unwrap().0 };
    let tokens = Tokens {
        ann: token(Role::Reviewer, "ann").await,
        bob: token(Role::Reviewer, "bob").await,
        lee: token(Role::Lead, "lee").await,
        ada: token(Role::Admin, "ada").await,
    };

    let base = common::spawn_server(state.clone()).await;
    Harness {
        db,
        clock,
        state,
        base,
        client: reqwest::Client::new(),
        tokens,
        hasher,
        accounts,
        next: AtomicUsize::new(0),
        _blobs: blobs,
    }
}

pub(crate) fn ann() -> Actor {
    Actor::new("ann", Role::Reviewer)
}

impl Harness {
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        self.state.engine()
    }

    async fn send_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some((content_type, bytes)) = body {
            req = req.header("content-type", content_type).body(bytes);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let body = res.bytes().await.unwrap().to_vec();
        Reply { status, content_type, headers, body }
    }

    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let body = body.map(|b| ("application/json", serde_json::to_vec(b).unwrap()));
        self.send_raw(method, path, token, body, headers).await
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> Reply {
        self.send("GET", path, Some(token), None, &[]).await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Reply {
        self.send("POST", path, Some(token), body, headers).await
    }

    /// A copy of the example account behind `kind`, under a fresh name and fresh lookup
    /// keys (one open appeal per account), and the example draft pointed at it.
    pub(crate) async fn fresh_draft(&self, kind: Kind) -> DraftInput {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (account, file) = match kind {
            Kind::Individual | Kind::Other => ("wangwu", "draft-individual.json"),
            Kind::Enterprise => ("acme-ops", "draft-enterprise.json"),
            Kind::Deregistered => ("oldco-admin", "draft-deregistered.json"),
        };
        let mut a = self.accounts.iter().find(|a| a["name"] == account).unwrap().clone();
        let mut draft = example(file);
        let name = format!("{account}-{n}");
        a["name"] = json!(name);
        match kind {
            Kind::Individual | Kind::Other => draft["entry_point"]["account"] = json!(name),
            Kind::Enterprise => {
                let domain = format!("acme-{n}.example");
                a["associations"]["domains"] = json!([domain]);
                a["associations"]["email_domains"] = json!([format!("mail.{domain}")]);
                draft["entry_point"]["value"] = json!(domain);
            }
            Kind::Deregistered => {
                let domain = format!("oldco-{n}.example");
                a["associations"]["icp_domains"] = json!([domain]);
                draft["entry_point"]["value"] = json!(domain);
            }
        }
        if let Kind::Other = kind {
            draft["items"] = json!(["other"]);
            draft["supplementary_content"] = json!("The account was frozen after a risk check.");
        }
        let account = serde_json::from_value::<AccountInput>(a).unwrap().into_account("test", &self.hasher).unwrap();
        self.db.store.put_accounts(&[account], self.engine().now()).await.unwrap();
        serde_json::from_value(draft).unwrap()
    }

    async fn submit(&self, kind: Kind) -> TicketNumber {
        self.submit_with(kind, &LocalFiles { base: examples() }).await
    }

    async fn submit_with(&self, kind: Kind, files: &dyn DocumentSource) -> TicketNumber {
        let draft = self.fresh_draft(kind).await;
        self.state.intake.submit(draft, files, None).await.unwrap().ticket
    }

    pub(crate) async fn fire(&self, ticket: &TicketNumber, transition: &str, actor: &Actor, reasons: &[&str]) {
        let mut cmd = Fire::new(transition);
        cmd.reasons = reasons.iter().map(|r| r.to_string()).collect();
        self.engine().fire(ticket, &cmd, actor, None).await.unwrap_or_else(|e| panic!("{transition}: {e}"));
    }

    pub(crate) async fn held_by_ann(&self, kind: Kind) -> TicketNumber {
        let t = self.submit(kind).await;
        self.fire(&t, "claim", &ann(), &[]).await;
        t
    }

    /// Approved by ann, with the work the approval causes done: its manual task waits.
    async fn approved_with_manual_task(&self) -> TicketNumber {
        let t = self.held_by_ann(Kind::Other).await;
        self.fire(&t, "approve", &ann(), &[]).await;
        self.drain().await;
        t
    }

    /// Runs the production worker until it has nothing left to do.
    pub(crate) async fn drain(&self) {
        let worker = common::start_worker(&self.db, self.state.work.clone());
        common::settle(&worker).await;
        worker.stop().await.unwrap();
    }

    pub(crate) async fn record(&self, ticket: &TicketNumber) -> appealflow::store::AppealRecord {
        self.db.store.appeal_by_ticket(ticket).await.unwrap().unwrap()
    }

    pub(crate) async fn events(&self, ticket: &TicketNumber) -> Vec<appealflow::store::EventRecord> {
        let id = self.record(ticket).await.id;
        self.db.store.history(&id).await.unwrap()
    }

    async fn counts(&self) -> RowCounts {
        self.db.store.row_counts().await.unwrap()
    }

    /// The SHA-256 of the appeal's first document.
    pub(crate) async fn first_sha(&self, ticket: &TicketNumber) -> String {
        let record = self.record(ticket).await;
        record.data["draft"]["documents"][0]["sha256"].as_str().unwrap().to_string()
    }
}

// ------------------------------------------------------------------ authorisation

#[derive(Clone, Copy, Debug)]
enum Caller {
    Anonymous,
    UnknownToken,
    /// bob: a reviewer who does not hold the appeal.
    OtherReviewer,
    /// ann: the reviewer holding the appeal (or who approved it).
    Holder,
    Lead,
    Admin,
}

const CALLERS: [Caller; 6] =
    [Caller::Anonymous, Caller::UnknownToken, Caller::OtherReviewer, Caller::Holder, Caller::Lead, Caller::Admin];

impl Harness {
    fn token(&self, caller: Caller) -> Option<&str> {
        match caller {
            Caller::Anonymous => None,
            Caller::UnknownToken => Some(UNKNOWN_TOKEN),
            Caller::OtherReviewer => Some(&self.tokens.bob),
            Caller::Holder => Some(&self.tokens.ann),
            Caller::Lead => Some(&self.tokens.lee),
            Caller::Admin => Some(&self.tokens.ada),
        }
    }
}

/// What a matrix cell's appeal looks like before the call.
#[derive(Clone, Copy)]
enum Setup {
    /// No appeal needed.
    Nothing,
    /// One enterprise appeal held by ann, shared by every cell (the route changes nothing).
    Shared,
    /// A fresh appeal waiting in the queue.
    Submitted,
    /// A fresh appeal held by ann.
    Held(Kind),
    /// A fresh appeal ann approved, its manual task waiting.
    ManualTask,
    /// A fresh enterprise appeal ann claimed and approved: its secure phone rotation
    /// waits for a second approval (four-eyes).
    AwaitingSecond,
}

struct Cell {
    method: &'static str,
    /// `{ticket}` and `{sha256}` are filled in.
    path: &'static str,
    body: Option<Value>,
    setup: Setup,
    /// anonymous, unknown token, other reviewer, holder, lead, admin
    expect: [u16; 6],
}

fn matrix() -> Vec<Cell> {
    let cell = |method, path, body: Option<Value>, setup, expect| Cell { method, path, body, setup, expect };
    let d = DOWNLOAD_SERVED;
    vec![
        //                                                                     anon unkn  bob  ann  lead admin
        cell("GET", "/v1/queue", None, Setup::Nothing, [401, 401, 200, 200, 200, 200]),
        cell("GET", "/v1/appeals/{ticket}", None, Setup::Shared, [401, 401, 200, 200, 200, 200]),
        cell("GET", "/v1/appeals/{ticket}/documents/{sha256}", None, Setup::Shared, [401, 401, 403, d, d, d]),
        cell("POST", "/v1/appeals/{ticket}/claim", None, Setup::Submitted, [401, 401, 200, 200, 200, 200]),
        cell(
            "POST",
            "/v1/appeals/{ticket}/release",
            None,
            Setup::Held(Kind::Individual),
            [401, 401, 403, 200, 200, 200],
        ),
        cell(
            "POST",
            "/v1/appeals/{ticket}/approve",
            None,
            Setup::Held(Kind::Individual),
            [401, 401, 403, 200, 200, 200],
        ),
        cell(
            "POST",
            "/v1/appeals/{ticket}/reject",
            Some(json!({ "reasons": ["missing_documents: proof_of_payment"] })),
            Setup::Held(Kind::Individual),
            [401, 401, 403, 200, 200, 200],
        ),
        cell(
            "POST",
            "/v1/appeals/{ticket}/link-entity-change",
            Some(json!({ "entity_ticket": "EC-2026-0001", "account": "newco-admin" })),
            Setup::Held(Kind::Deregistered),
            [401, 401, 403, 200, 200, 200],
        ),
        // Four-eyes: anyone but the first approver (and claimer), ann.
        cell(
            "POST",
            "/v1/appeals/{ticket}/confirm-approval",
            None,
            Setup::AwaitingSecond,
            [401, 401, 200, 403, 200, 200],
        ),
        cell(
            "POST",
            "/v1/appeals/{ticket}/send-back",
            Some(json!({ "reasons": ["the letter's stamp is not the company's"] })),
            Setup::AwaitingSecond,
            [401, 401, 200, 403, 200, 200],
        ),
        cell("POST", "/v1/appeals/{ticket}/task-done", None, Setup::ManualTask, [401, 401, 403, 200, 200, 200]),
        cell(
            "POST",
            "/v1/appeals/{ticket}/reassign",
            Some(json!({ "to": "bob" })),
            Setup::Held(Kind::Individual),
            [401, 401, 403, 403, 200, 200],
        ),
        cell("GET", "/v1/admin/jobs", None, Setup::Nothing, [401, 401, 403, 403, 403, 200]),
        // No dead job can be made from here: the admin's answer is "no such job".
        cell("POST", "/v1/admin/jobs/no-such-job/retry", None, Setup::Nothing, [401, 401, 403, 403, 403, 404]),
        cell("GET", "/v1/admin/workflow", None, Setup::Nothing, [401, 401, 403, 403, 403, 200]),
        cell("GET", "/v1/admin/calendars", None, Setup::Nothing, [401, 401, 403, 403, 403, 200]),
        cell("GET", "/openapi.json", None, Setup::Nothing, [200, 200, 200, 200, 200, 200]),
        cell("GET", "/metrics", None, Setup::Nothing, [401, 401, 403, 403, 403, 200]),
    ]
}

async fn every_staff_route_answers_each_caller_as_the_matrix_says(db: TestDb) {
    let h = harness(db).await;
    let shared = h.held_by_ann(Kind::Enterprise).await;
    let shared_sha = h.first_sha(&shared).await;
    let cells = matrix();
    // Every staff route of the table is in the matrix.
    let covered: BTreeSet<(&str, String)> =
        cells.iter().map(|c| (c.method, c.path.replace("no-such-job", "{id}"))).collect();
    for r in API.iter().filter(|r| matches!(r.access, appealflow::http::api::Access::Staff(_))) {
        assert!(covered.contains(&(r.method, r.path.to_string())), "{} {} is not in the matrix", r.method, r.path);
    }
    let mut failures = Vec::new();
    for cell in &cells {
        for (i, caller) in CALLERS.iter().enumerate() {
            let ticket = match cell.setup {
                Setup::Nothing => None,
                Setup::Shared => Some(shared.clone()),
                Setup::Submitted => Some(h.submit(Kind::Individual).await),
                Setup::Held(kind) => Some(h.held_by_ann(kind).await),
                Setup::ManualTask => Some(h.approved_with_manual_task().await),
                Setup::AwaitingSecond => {
                    let t = h.held_by_ann(Kind::Enterprise).await;
                    h.fire(&t, "approve", &ann(), &[]).await;
                    Some(t)
                }
            };
            let path = match &ticket {
                Some(t) => cell.path.replace("{ticket}", t.as_str()).replace("{sha256}", &shared_sha),
                None => cell.path.to_string(),
            };
            let before = match &ticket {
                Some(t) => Some(h.record(t).await.version),
                None => None,
            };
            let counts = h.counts().await;
            let reply = h.send(cell.method, &path, h.token(*caller), cell.body.as_ref(), &[]).await;
            let expected = cell.expect[i];
            if reply.status != expected {
                failures.push(format!(
                    "{} {} as {caller:?}: expected {expected}, got {} {}",
                    cell.method,
                    cell.path,
                    reply.status,
                    reply.text()
                ));
                continue;
            }
            if (200..300).contains(&expected) {
                continue;
            }
            reply.problem(expected);
            // A refused call changes nothing.
            if let (Some(t), Some(v)) = (&ticket, before) {
                assert_eq!(h.record(t).await.version, v, "{} {} as {caller:?}", cell.method, cell.path);
            }
            assert_eq!(h.counts().await, counts, "{} {} as {caller:?}", cell.method, cell.path);
        }
    }
    assert!(failures.is_empty(), "unexpected answers:\n{}", failures.join("\n"));
}

// --------------------------------------------------------------------------- queue

async fn queue_lists_open_appeals_by_review_deadline_breached_first_and_pages(db: TestDb) {
    let h = harness(db).await;
    // x: received Monday; rejected and resubmitted Wednesday, so its SLA restarts then.
    let x = h.submit(Kind::Individual).await;
    h.clock.set(at("2026-03-10T10:00:00+08:00"));
    // y: received Tuesday; due at the end of Friday (Wed, Thu, Fri).
    let y = h.submit(Kind::Individual).await;
    h.clock.set(at("2026-03-11T10:00:00+08:00"));
    h.fire(&x, "claim", &ann(), &[]).await;
    h.fire(&x, "reject", &ann(), &["missing_documents: supplementary"]).await;
    h.fire(&x, "notice_delivered", &Actor::system(), &[]).await;
    let account = h.record(&x).await.account;
    let mut draft = example("draft-individual.json");
    draft["entry_point"]["account"] = json!(account);
    let files = LocalFiles { base: examples() };
    h.state.intake.resubmit(&x, serde_json::from_value(draft).unwrap(), &files, None).await.unwrap();
    // Saturday: y is past its deadline; z arrives and ann claims it; w is approved.
    h.clock.set(at("2026-03-14T10:00:00+08:00"));
    let z = h.submit(Kind::Individual).await;
    h.fire(&z, "claim", &ann(), &[]).await;
    let w = h.held_by_ann(Kind::Individual).await;
    h.fire(&w, "approve", &ann(), &[]).await;
    common::pass_cooling_off(h.engine(), &w).await;

    let page = h.get("/v1/queue", &h.tokens.bob).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let page = page.json();
    let tickets: Vec<&str> = page["items"].as_array().unwrap().iter().map(|i| i["ticket"].as_str().unwrap()).collect();
    assert_eq!(tickets, [y.to_string(), x.to_string(), z.to_string()], "by deadline, not by age: {page}");
    assert_eq!(page["total"], 3);
    assert_eq!(page["states"], json!(["awaiting_second_approval", "submitted", "under_review"]));
    let items = page["items"].as_array().unwrap();
    assert_eq!(items[0]["breached"], true);
    assert_eq!(items[0]["review_due_at"], at("2026-03-14T00:00:00+08:00").to_rfc3339());
    assert_eq!(items[1]["breached"], false);
    assert_eq!(items[1]["review_due_at"], at("2026-03-17T00:00:00+08:00").to_rfc3339(), "restarted at resubmission");
    assert_eq!(items[2]["breached"], false);
    assert_eq!(items[2]["state"], "under_review");
    assert_eq!(items[2]["assignee"], "ann");
    assert_eq!(items[2]["version"], h.record(&z).await.version);
    assert_eq!(items[2]["account"], h.record(&z).await.account);

    // Paging.
    let first = h.get("/v1/queue?per_page=2", &h.tokens.ann).await.json();
    let second = h.get("/v1/queue?per_page=2&page=2", &h.tokens.ann).await.json();
    let third = h.get("/v1/queue?per_page=2&page=3", &h.tokens.ann).await.json();
    let ids = |p: &Value| p["items"].as_array().unwrap().iter().map(|i| i["ticket"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&first), [json!(y.to_string()), json!(x.to_string())]);
    assert_eq!(ids(&second), [json!(z.to_string())]);
    assert!(ids(&third).is_empty());
    assert_eq!(
        (first["page"].clone(), first["per_page"].clone(), third["total"].clone()),
        (json!(1), json!(2), json!(3))
    );
    // The same pages by cursor: `next` leads on, and is absent on the last page.
    let next = first["next"].as_str().expect("a full page that is not the last has a next").to_string();
    let on = h.get(&format!("/v1/queue?per_page=2&after={next}"), &h.tokens.ann).await.json();
    assert_eq!(ids(&on), ids(&second));
    assert_eq!(
        (on["next"].clone(), second["next"].clone(), on["total_capped"].clone()),
        (Value::Null, Value::Null, json!(false))
    );
    assert_eq!(first["counts"][0], json!({"state": "submitted", "count": 2, "capped": false}));

    // Filtering by state: one state, several, and the approved one outside the default.
    let held = h.get("/v1/queue?state=under_review", &h.tokens.lee).await.json();
    assert_eq!(ids(&held), [json!(z.to_string())]);
    let both = h.get("/v1/queue?state=under_review&state=submitted", &h.tokens.lee).await.json();
    assert_eq!(ids(&both).len(), 3);
    let approved = h.get("/v1/queue?state=approved", &h.tokens.ada).await.json();
    assert_eq!(ids(&approved), [json!(w.to_string())]);
    assert_eq!(approved["items"][0]["review_due_at"], Value::Null, "its review SLA was cancelled");
    assert_eq!(approved["items"][0]["breached"], false);
}

// ------------------------------------------------------------------------ conflicts

async fn concurrent_approve_and_reject_on_the_same_version_give_one_200_and_one_409(db: TestDb) {
    let h = harness(db).await;
    for _ in 0..3 {
        let t = h.submit(Kind::Individual).await;
        let claimed = h.post(&format!("/v1/appeals/{}/claim", t.as_str()), &h.tokens.ann, None, &[]).await;
        assert_eq!(claimed.status, 200, "{}", claimed.text());
        let version = claimed.json()["version"].as_i64().unwrap().to_string();
        let reasons = json!({ "reasons": ["documents_not_meeting_requirements"] });
        let approve_path = format!("/v1/appeals/{}/approve", t.as_str());
        let reject_path = format!("/v1/appeals/{}/reject", t.as_str());
        let if_match = [("if-match", version.as_str())];
        let approve = h.post(&approve_path, &h.tokens.ann, None, &if_match);
        let reject = h.post(&reject_path, &h.tokens.ann, Some(&reasons), &if_match);
        let (a, r) = tokio::join!(approve, reject);
        let mut statuses = [a.status, r.status];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "approve: {} / reject: {}", a.text(), r.text());
        let (won, lost) = if a.status == 200 { (a, r) } else { (r, a) };
        let won = won.json();
        let lost = lost.problem(409);
        let record = h.record(&t).await;
        assert_eq!(won["state"], record.state);
        assert_eq!(lost["state"], record.state, "the loser is told the current state: {lost}");
        assert_eq!(lost["version"], record.version, "{lost}");
        let decisions =
            h.events(&t).await.iter().filter(|e| e.transition == "approve" || e.transition == "reject").count();
        assert_eq!(decisions, 1);
    }
}

async fn stale_if_match_gets_409_with_the_current_state_and_version(db: TestDb) {
    let h = harness(db).await;
    let t = h.held_by_ann(Kind::Deregistered).await;
    let current = h.record(&t).await.version;
    let stale = (current - 1).to_string();
    let counts = h.counts().await;
    for (path, body) in [
        ("approve", None),
        ("reject", Some(json!({ "reasons": ["inapplicable_scenario"] }))),
        ("release", None),
        ("link-entity-change", Some(json!({ "entity_ticket": "EC-1", "account": "newco-admin" }))),
        ("reassign", Some(json!({ "to": "bob" }))),
    ] {
        let token = if path == "reassign" { &h.tokens.lee } else { &h.tokens.ann };
        let quoted = format!("\"{stale}\"");
        let reply =
            h.post(&format!("/v1/appeals/{}/{path}", t.as_str()), token, body.as_ref(), &[("if-match", &quoted)]).await;
        let p = reply.problem(409);
        assert_eq!(p["code"], "stale-version", "{path}: {p}");
        assert_eq!((p["state"].clone(), p["version"].clone()), (json!("under_review"), json!(current)), "{path}");
    }
    assert_eq!(h.counts().await, counts, "nothing was stored");
    // The current version goes through, and its answer carries the next one.
    let ok = h
        .post(
            &format!("/v1/appeals/{}/link-entity-change", t.as_str()),
            &h.tokens.ann,
            Some(&json!({ "entity_ticket": "EC-1", "account": "newco-admin" })),
            &[("if-match", &current.to_string())],
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["version"], current + 1);
    assert_eq!(ok.headers.get("etag").unwrap(), &format!("\"{}\"", current + 1));
    // A task-done on an appeal that has moved on is stale too.
    let m = h.approved_with_manual_task().await;
    let v = h.record(&m).await.version;
    let p = h
        .post(
            &format!("/v1/appeals/{}/task-done", m.as_str()),
            &h.tokens.ann,
            None,
            &[("if-match", &(v - 1).to_string())],
        )
        .await
        .problem(409);
    assert_eq!((p["state"].clone(), p["version"].clone()), (json!("approved"), json!(v)));
}

async fn repeated_posts_with_the_same_idempotency_key_replay_the_first_answer_and_store_one_event(db: TestDb) {
    let h = harness(db).await;
    let t = h.submit(Kind::Individual).await;
    let base = format!("/v1/appeals/{}", t.as_str());
    for (step, token, body, key) in [
        ("claim", &h.tokens.ann, None, "key-claim-1"),
        ("reassign", &h.tokens.lee, Some(json!({ "to": "bob" })), "key-reassign-1"),
        ("reject", &h.tokens.bob, Some(json!({ "reasons": ["other: the letter is unsigned"] })), "key-reject-1"),
    ] {
        let path = format!("{base}/{step}");
        let first = h.post(&path, token, body.as_ref(), &[("idempotency-key", key)]).await;
        assert_eq!(first.status, 200, "{step}: {}", first.text());
        let events = h.events(&t).await.len();
        let counts = h.counts().await;
        let again = h.post(&path, token, body.as_ref(), &[("idempotency-key", key)]).await;
        assert_eq!(again.status, 200, "{step}: {}", again.text());
        let (mut first, again) = (first.json(), again.json());
        assert_eq!(first["replayed"], false);
        assert_eq!(again["replayed"], true, "{step}: {again}");
        first["replayed"] = json!(true);
        assert_eq!(first, again, "{step}: the same answer");
        assert_eq!(h.events(&t).await.len(), events, "{step}: one event");
        assert_eq!(h.counts().await, counts, "{step}: nothing more stored");
    }
    // The same key for another command is refused, not replayed.
    let m = h.submit(Kind::Individual).await;
    let reused = h
        .post(&format!("/v1/appeals/{}/claim", m.as_str()), &h.tokens.ann, None, &[("idempotency-key", "key-claim-1")])
        .await;
    assert_eq!(reused.problem(422)["code"], "idempotency-key-reused");
    assert_eq!(h.record(&m).await.state, "submitted");
    // task-done is idempotent by the task's own status.
    let m = h.approved_with_manual_task().await;
    let path = format!("/v1/appeals/{}/task-done", m.as_str());
    let first = h.post(&path, &h.tokens.ann, None, &[("idempotency-key", "key-task-1")]).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["replayed"], false);
    let events = h.events(&m).await.len();
    let again = h.post(&path, &h.tokens.ann, None, &[("idempotency-key", "key-task-1")]).await.json();
    assert_eq!((again["replayed"].clone(), again["state"].clone()), (json!(true), first.json()["state"].clone()));
    assert_eq!(h.events(&m).await.len(), events);
}

// ------------------------------------------------------------------------ bad input

async fn bad_input_on_every_staff_route_is_a_problem_document_and_stores_nothing(db: TestDb) {
    let h = harness(db).await;
    let t = h.held_by_ann(Kind::Deregistered).await;
    let sha = h.first_sha(&t).await;
    let unknown = loop {
        let candidate = TicketNumber::generate();
        if h.db.store.appeal_by_ticket(&candidate).await.unwrap().is_none() {
            break candidate;
        }
    };
    let version = h.record(&t).await.version;
    let counts = h.counts().await;
    let ada = h.tokens.ada.as_str();
    let ticket = t.as_str();
    let json = "application/json";

    // (method, path, body, extra headers, status, code)
    type Case = (&'static str, String, Option<(&'static str, Vec<u8>)>, Vec<(&'static str, String)>, u16, &'static str);
    let mut cases: Vec<Case> = Vec::new();
    let mut add = |m, p: String, body: Option<(&'static str, &str)>, headers: Vec<(&'static str, String)>, s, c| {
        cases.push((m, p, body.map(|(ct, b)| (ct, b.as_bytes().to_vec())), headers, s, c));
    };
    // The queue and the job listing: unknown parameters, values out of range.
    for q in [
        "state=closed",
        "state=bogus",
        "state=",
        "state=submitted,",
        "state=submitted,,under_review",
        "page=0",
        "page=x",
        "page=101",
        "after=abc",
        "after=1.2.x%20y",
        "after=%2B1.1.a",
        "after=1000000000000000000.1.a",
        "per_page=101",
        "sort=due",
        "page=1&page=2",
    ] {
        add("GET", format!("/v1/queue?{q}"), None, vec![], 422, "invalid-input");
    }
    for q in ["dead=maybe", "queue=nope", "limit=0", "limit=x", "state=dead"] {
        add("GET", format!("/v1/admin/jobs?{q}"), None, vec![], 422, "invalid-input");
    }
    // Appeal and document lookups.
    add("GET", "/v1/appeals/12345".into(), None, vec![], 422, "invalid-input");
    add("GET", format!("/v1/appeals/{}", unknown.as_str()), None, vec![], 404, "not-found");
    add("GET", format!("/v1/appeals/{ticket}/documents/xyz"), None, vec![], 422, "invalid-input");
    add("GET", format!("/v1/appeals/{ticket}/documents/{}", "ab".repeat(32)), None, vec![], 404, "not-found");
    add("GET", format!("/v1/appeals/{}/documents/{sha}", unknown.as_str()), None, vec![], 404, "not-found");
    add("POST", "/v1/admin/jobs/no-such-job/retry".into(), None, vec![], 404, "not-found");
    add("POST", "/v1/admin/jobs/no-such-job/retry".into(), Some((json, "{")), vec![], 422, "invalid-input");

    let bodies: [(&str, &str, &str); 7] = [
        ("claim", "", ""),
        ("release", "", ""),
        ("approve", "", ""),
        ("task-done", "", ""),
        ("reject", r#"{"reasons": ["inapplicable_scenario"]}"#, r#"{"reasons": "inapplicable_scenario"}"#),
        (
            "link-entity-change",
            r#"{"entity_ticket": "EC-1", "account": "newco-admin"}"#,
            r#"{"entity_ticket": 7, "account": true}"#,
        ),
        ("reassign", r#"{"to": "bob"}"#, r#"{"to": ["bob"]}"#),
    ];
    for (step, good, wrong_type) in bodies {
        let on = |tk: &str| format!("/v1/appeals/{tk}/{step}");
        let good_body = (!good.is_empty()).then_some((json, good));
        // Malformed JSON, wrong types, unknown fields, not JSON at all.
        add("POST", on(ticket), Some((json, r#"{"reasons": ["#)), vec![], 422, "invalid-input");
        let wrong = if wrong_type.is_empty() { "[]" } else { wrong_type };
        add("POST", on(ticket), Some((json, wrong)), vec![], 422, "invalid-input");
        let extra = if good.is_empty() {
            r#"{"note": "x"}"#.to_string()
        } else {
            format!("{}, \"extra\": 1}}", good.trim_end_matches('}'))
        };
        add("POST", on(ticket), Some((json, &extra)), vec![], 422, "invalid-input");
        add(
            "POST",
            on(ticket),
            Some(("text/plain", if good.is_empty() { "x" } else { good })),
            vec![],
            422,
            "invalid-input",
        );
        // Bad headers.
        add("POST", on(ticket), good_body, vec![("if-match", "v3".into())], 422, "invalid-input");
        add("POST", on(ticket), good_body, vec![("idempotency-key", "k".repeat(201))], 422, "invalid-input");
        // Unknown and malformed tickets.
        add("POST", on(unknown.as_str()), good_body, vec![], 404, "not-found");
        add("POST", on("1234-5678"), good_body, vec![], 422, "invalid-input");
    }
    // Input the rules refuse.
    let reject = format!("/v1/appeals/{ticket}/reject");
    add("POST", reject.clone(), Some((json, r#"{"reasons": []}"#)), vec![], 422, "refused");
    add("POST", reject, Some((json, r#"{"reasons": ["bogus_reason"]}"#)), vec![], 422, "refused");
    let link = format!("/v1/appeals/{ticket}/link-entity-change");
    add(
        "POST",
        link.clone(),
        Some((json, r#"{"entity_ticket": " ", "account": "newco-admin"}"#)),
        vec![],
        422,
        "invalid-input",
    );
    add(
        "POST",
        link.clone(),
        Some((json, r#"{"entity_ticket": "EC-1", "account": "nobody"}"#)),
        vec![],
        422,
        "invalid-input",
    );
    add("POST", link, Some((json, r#"{"entity_ticket": "EC-1", "account": "acme-ops"}"#)), vec![], 422, "refused");
    let reassign = format!("/v1/appeals/{ticket}/reassign");
    add("POST", reassign.clone(), Some((json, r#"{"to": "nobody"}"#)), vec![], 422, "invalid-input");
    add("POST", reassign.clone(), Some((json, r#"{"to": "lee"}"#)), vec![], 422, "invalid-input");
    add("POST", reassign, Some((json, r#"{"to": ""}"#)), vec![], 422, "invalid-input");
    // A deregistered appeal cannot be approved before its entity-change ticket is linked.
    add("POST", format!("/v1/appeals/{ticket}/approve"), None, vec![], 422, "refused");
    // No manual task on this appeal.
    add("POST", format!("/v1/appeals/{ticket}/task-done"), None, vec![], 409, "no-manual-task");

    for (method, path, body, headers, status, code) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = h.send_raw(method, &path, Some(ada), body.clone(), &headers).await;
        assert_eq!(
            reply.status,
            status,
            "{method} {path} {:?}: {}",
            body.map(|b| String::from_utf8(b.1)),
            reply.text()
        );
        let p = reply.problem(status);
        assert_eq!(p["code"], code, "{method} {path}: {p}");
        assert!(p["type"].as_str().unwrap().ends_with(code), "{p}");
        assert_eq!(h.counts().await, counts, "{method} {path} stored something");
        assert_eq!(h.record(&t).await.version, version, "{method} {path} changed the appeal");
    }
}

// ------------------------------------------------------------------------ documents

/// The example documents, but another scan of the business licence.
struct OtherScans;

impl DocumentSource for OtherScans {
    fn read(&self, file: &str) -> Result<Vec<u8>, String> {
        match file {
            "documents/licence.jpg" => Ok(appealflow::domain::document::sample::jpeg("another scan of the licence")),
            other => std::fs::read(examples().join(other)).map_err(|e| e.to_string()),
        }
    }
}

async fn documents_are_served_only_for_the_appeals_own_documents(db: TestDb) {
    let h = harness(db).await;
    let t = h.held_by_ann(Kind::Enterprise).await;
    let other = h.submit_with(Kind::Enterprise, &OtherScans).await;
    let record = h.record(&t).await;
    let docs = record.data["draft"]["documents"].as_array().unwrap().clone();
    let shas: Vec<String> = docs.iter().map(|d| d["sha256"].as_str().unwrap().to_string()).collect();
    let other_record = h.record(&other).await;
    let foreign = other_record.data["draft"]["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["sha256"].as_str().unwrap().to_string())
        .find(|s| !shas.contains(s))
        .expect("the other appeal has a document this one lacks");

    for (doc, sha) in docs.iter().zip(&shas) {
        for token in [&h.tokens.ann, &h.tokens.lee, &h.tokens.ada] {
            let reply = h.get(&format!("/v1/appeals/{}/documents/{sha}", t.as_str()), token).await;
            assert_eq!(reply.status, DOWNLOAD_SERVED, "{}", reply.text());
            if reply.status == 200 {
                let want = match doc["content_type"].as_str().unwrap() {
                    "jpeg" => "image/jpeg",
                    "png" => "image/png",
                    _ => "application/pdf",
                };
                assert_eq!(reply.content_type, want);
                let file = docs.iter().position(|d| d["sha256"] == *sha).unwrap();
                let name = ["licence.jpg", "letter.pdf", "receipt.png"][file];
                assert_eq!(reply.body, std::fs::read(examples().join("documents").join(name)).unwrap());
                // Saved under a name appealflow chose (ticket, kind, position, the sniffed
                // type's extension), never the applicant's; nothing in it may run.
                let ext = name.rsplit('.').next().unwrap();
                let header = |n: &str| reply.headers.get(n).map(|v| v.to_str().unwrap().to_string());
                let saved = format!("{}-{}-{}.{ext}", t.as_str(), doc["kind"].as_str().unwrap(), file + 1);
                assert_eq!(header("content-disposition"), Some(format!("attachment; filename=\"{saved}\"")));
                assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
                assert_eq!(header("content-security-policy").as_deref(), Some("default-src 'none'; sandbox"));
            } else {
                assert_eq!(reply.problem(DOWNLOAD_SERVED)["code"], "documents-unavailable");
            }
        }
    }
    // Another appeal's document, through this appeal: not found (for everyone).
    for token in [&h.tokens.ann, &h.tokens.lee, &h.tokens.ada] {
        let reply = h.get(&format!("/v1/appeals/{}/documents/{foreign}", t.as_str()), token).await;
        assert_eq!(reply.problem(404)["code"], "not-found");
    }
    // A reviewer who does not hold the appeal gets nothing, even for its own documents.
    let reply = h.get(&format!("/v1/appeals/{}/documents/{}", t.as_str(), shas[0]), &h.tokens.bob).await;
    assert_eq!(reply.problem(403)["code"], "forbidden");
    // Once ann releases it, neither does she.
    h.fire(&t, "release", &ann(), &[]).await;
    let reply = h.get(&format!("/v1/appeals/{}/documents/{}", t.as_str(), shas[0]), &h.tokens.ann).await;
    reply.problem(403);
}

// --------------------------------------------------------------------------- detail

async fn detail_shows_case_documents_actions_and_notifications_never_a_full_recipient(db: TestDb) {
    let h = harness(db).await;
    let t = h.held_by_ann(Kind::Enterprise).await;
    h.fire(&t, "approve", &ann(), &[]).await;
    // An enterprise's secure phone: a second approver confirms (tests/it/four_eyes.rs).
    h.fire(&t, "confirm_approval", &Actor::new("bob", Role::Reviewer), &[]).await;
    common::pass_cooling_off(h.engine(), &t).await;
    h.drain().await;
    let reply = h.get(&format!("/v1/appeals/{}", t.as_str()), &h.tokens.bob).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let record = h.record(&t).await;
    assert_eq!(reply.headers.get("etag").unwrap(), &format!("\"{}\"", record.version));
    let text = reply.text();
    let d = reply.json();
    assert_eq!(d["ticket"], t.to_string());
    assert_eq!(d["state"], record.state);
    assert_eq!(d["version"], record.version);
    assert!(d["history"].as_array().unwrap().iter().any(|e| e["transition"] == "approve" && e["actor"] == "ann"));
    assert!(d["case"].is_string(), "{d}");
    assert_eq!(d["items"], json!(["change_secure_phone", "clear_ip_logon_mask"]));
    let docs = d["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 3);
    for doc in docs {
        let keys: BTreeSet<&str> = doc.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["kind", "sha256", "size", "content_type", "file_name"]), "{doc}");
    }
    assert_eq!(docs[0]["kind"], "business_license");
    assert_eq!(docs[0]["content_type"], "image/jpeg");
    assert_eq!(docs[0]["file_name"], "licence.jpg");
    assert_eq!(docs[0]["size"], std::fs::metadata(examples().join("documents/licence.jpg")).unwrap().len());
    assert_eq!(d["previous_documents"], json!([]));
    assert_eq!(d["entity_change"]["required"], false);
    let actions: Vec<&str> = d["actions"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"rotate_secure_phone") && actions.contains(&"clear_ip_logon_mask"), "{actions:?}");
    let notifications = d["notifications"].as_array().unwrap();
    assert!(!notifications.is_empty());
    for n in notifications {
        assert!(n.get("recipient").is_none(), "{n}");
        assert!(n["recipient_masked"].as_str().unwrap().contains('*'), "{n}");
    }
    // Neither the contact phone, nor the secure phone and email it replaces, appear in full.
    for secret in ["13712345678", "13900001111", "it@acme.example", "440304198506152416"] {
        assert!(!text.contains(secret), "{secret} appears in the detail");
    }
    // The deregistered appeal shows its entity-change link once made, and by whom.
    let dereg = h.held_by_ann(Kind::Deregistered).await;
    let linked = h
        .post(
            &format!("/v1/appeals/{}/link-entity-change", dereg.as_str()),
            &h.tokens.ann,
            Some(&json!({ "entity_ticket": "EC-2026-0042", "account": "newco-admin" })),
            &[],
        )
        .await;
    assert_eq!(linked.status, 200, "{}", linked.text());
    let d = h.get(&format!("/v1/appeals/{}", dereg.as_str()), &h.tokens.lee).await.json();
    assert_eq!(d["entity_change"]["required"], true);
    assert_eq!(d["entity_change"]["ticket"], "EC-2026-0042");
    assert_eq!(d["entity_change"]["account"], "newco-admin");
    assert_eq!(d["entity_change"]["linked_by"], "ann");
}

async fn lead_reassigns_a_claim_and_every_decision_records_who_made_it(db: TestDb) {
    let h = harness(db).await;
    let t = h.held_by_ann(Kind::Individual).await;
    let path = format!("/v1/appeals/{}", t.as_str());
    let version_before = h.record(&t).await.version;
    // An hour into ann's claim: bob's claim period starts at the reassignment.
    h.clock.advance(chrono::Duration::hours(1));
    let reassigned_at = h.clock.now();
    let reply = h.post(&format!("{path}/reassign"), &h.tokens.lee, Some(&json!({ "to": "bob" })), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let r = reply.json();
    assert_eq!(
        (r["transition"].clone(), r["from"].clone(), r["state"].clone(), r["assignee"].clone()),
        (json!("reassign"), json!("under_review"), json!("under_review"), json!("bob"))
    );
    assert_eq!(h.record(&t).await.assignee.as_deref(), Some("bob"));
    assert_eq!(r["version"], json!(version_before + 1), "a reassignment is one commit: {r}");
    let record = h.record(&t).await;
    let claims: Vec<_> =
        h.db.store
            .timers(Some(&record.id))
            .await
            .unwrap()
            .into_iter()
            .filter(|timer| timer.name == "claim_expiry")
            .map(|timer| (timer.generation, timer.status, timer.due_at))
            .collect();
    assert_eq!(
        claims,
        [
            (1, TimerStatus::Cancelled, reassigned_at - chrono::Duration::hours(1) + chrono::Duration::hours(4)),
            (2, TimerStatus::Armed, reassigned_at + chrono::Duration::hours(4)),
        ],
        "the new holder's claim runs a whole period from the reassignment"
    );
    // Reassigning to the holder is refused, and changes nothing.
    let again = h.post(&format!("{path}/reassign"), &h.tokens.lee, Some(&json!({ "to": "bob" })), &[]).await;
    assert_eq!((again.status, again.json()["code"].clone()), (422, json!("refused")), "{}", again.text());
    assert_eq!(h.record(&t).await.version, version_before + 1);
    // ann no longer holds it; bob decides.
    h.post(&format!("{path}/approve"), &h.tokens.ann, None, &[]).await.problem(403);
    let approved = h.post(&format!("{path}/approve"), &h.tokens.bob, None, &[]).await;
    assert_eq!(approved.status, 200, "{}", approved.text());
    let a = approved.json();
    let keys: BTreeSet<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["ticket", "transition", "from", "state", "outcome", "version", "replayed"]));
    // A secure-phone rotation: it waits out its cooling-off (tests/it/cooling_off.rs).
    assert_eq!((a["from"].clone(), a["state"].clone()), (json!("under_review"), json!("cooling_off")));

    let events = h.events(&t).await;
    let who: Vec<(&str, &str, Role)> =
        events.iter().skip(1).map(|e| (e.transition.as_str(), e.actor.as_str(), e.role)).collect();
    assert_eq!(
        who,
        [("claim", "ann", Role::Reviewer), ("reassign", "lee", Role::Lead), ("approve", "bob", Role::Reviewer)]
    );
    assert_eq!(events[2].payload["to"], "bob", "the reassignment records who takes the claim");

    // An appeal nobody has claimed yet is handed out the same way.
    let q = h.submit(Kind::Individual).await;
    let handed = h
        .post(&format!("/v1/appeals/{}/reassign", q.as_str()), &h.tokens.ada, Some(&json!({ "to": "ann" })), &[])
        .await;
    assert_eq!(handed.status, 200, "{}", handed.text());
    assert_eq!(
        (handed.json()["from"].clone(), handed.json()["state"].clone()),
        (json!("submitted"), json!("under_review"))
    );
    assert_eq!(h.record(&q).await.assignee.as_deref(), Some("ann"));

    // A lead's own decisions carry the lead's name.
    let m = h.submit(Kind::Individual).await;
    let claimed = h.post(&format!("/v1/appeals/{}/claim", m.as_str()), &h.tokens.lee, None, &[]).await;
    assert_eq!(claimed.status, 200);
    let rejected = h
        .post(
            &format!("/v1/appeals/{}/reject", m.as_str()),
            &h.tokens.ada,
            Some(&json!({ "reasons": ["missing_documents: supplementary"] })),
            &[],
        )
        .await;
    assert_eq!(rejected.status, 200, "{}", rejected.text());
    let events = h.events(&m).await;
    let last = events.last().unwrap();
    assert_eq!(
        (last.actor.as_str(), last.role, last.reasons.clone()),
        ("ada", Role::Admin, vec!["missing_documents: supplementary".to_string()])
    );
    // The manual task records who did it.
    let task = h.approved_with_manual_task().await;
    let done = h.post(&format!("/v1/appeals/{}/task-done", task.as_str()), &h.tokens.lee, None, &[]).await;
    assert_eq!(done.status, 200, "{}", done.text());
    let d = h.get(&format!("/v1/appeals/{}", task.as_str()), &h.tokens.lee).await.json();
    let manual = d["actions"].as_array().unwrap().iter().find(|a| a["manual"] == true).unwrap().clone();
    assert_eq!((manual["status"].clone(), manual["done_by"].clone()), (json!("succeeded"), json!("lee")));
}

// ---------------------------------------------------------------------------- admin

async fn admin_lists_jobs_retries_a_dead_one_once_per_key_and_refuses_one_that_is_not_dead(db: TestDb) {
    let h = harness(db).await;
    // A submission's notices are queued in the same commit (no worker runs here).
    h.submit(Kind::Individual).await;
    h.submit(Kind::Individual).await;

    let all = h.get("/v1/admin/jobs", &h.tokens.ada).await;
    assert_eq!(all.status, 200, "{}", all.text());
    let jobs = all.json()["jobs"].as_array().unwrap().clone();
    assert!(!jobs.is_empty(), "the notices of receipt are queued with the submissions");
    let dead = h.get("/v1/admin/jobs?dead=true", &h.tokens.ada).await.json();
    assert_eq!(dead["jobs"], json!([]), "no job is dead");
    let queue = jobs[0]["queue"].as_str().unwrap().to_string();
    let filtered = h.get(&format!("/v1/admin/jobs?queue={queue}&limit=1"), &h.tokens.ada).await.json();
    assert_eq!(filtered["jobs"].as_array().unwrap().len(), 1);
    let id = jobs[0]["id"].as_str().unwrap();
    let reply = h.post(&format!("/v1/admin/jobs/{id}/retry"), &h.tokens.ada, None, &[]).await;
    let p = reply.problem(409);
    assert_eq!(p["code"], "not-dead");
    assert_eq!(p["status"], 409);
    assert!(p["detail"].as_str().unwrap().contains("dead"));

    // The job dies (as after its last attempt); a keyed retry is answered once and
    // replayed to its repeat, while the same key for another job is refused.
    if h.db.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&h.db.url).await.unwrap();
        sqlx::query("UPDATE Jobs SET status = 'Killed' WHERE id = ?").bind(id).execute(&pool).await.unwrap();
    } else {
        let pool = sqlx::PgPool::connect(&h.db.url).await.unwrap();
        sqlx::query("UPDATE apalis.jobs SET status = 'Killed' WHERE id = $1").bind(id).execute(&pool).await.unwrap();
    }
    let dead = h.get("/v1/admin/jobs?dead=true", &h.tokens.ada).await.json();
    assert_eq!(dead["jobs"][0]["id"], json!(id), "{dead}");
    let key = [("idempotency-key", "retry-1")];
    let first = h.post(&format!("/v1/admin/jobs/{id}/retry"), &h.tokens.ada, None, &key).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["retried"], true);
    let again = h.post(&format!("/v1/admin/jobs/{id}/retry"), &h.tokens.ada, None, &key).await;
    assert_eq!((again.status, again.json()), (200, first.json()), "a keyed repeat replays the answer");
    let unkeyed = h.post(&format!("/v1/admin/jobs/{id}/retry"), &h.tokens.ada, None, &[]).await;
    assert_eq!(unkeyed.problem(409)["code"], "not-dead", "the job is queued again, no longer dead");
    let other = jobs.iter().find(|j| j["id"] != json!(id)).expect("two appeals, two jobs")["id"].as_str().unwrap();
    let reused = h.post(&format!("/v1/admin/jobs/{other}/retry"), &h.tokens.ada, None, &key).await;
    assert_eq!(reused.problem(422)["code"], "idempotency-key-reused");
    let dead = h.get("/v1/admin/jobs?dead=true", &h.tokens.ada).await.json();
    assert_eq!(dead["jobs"], json!([]), "nothing is dead after the retry");
    // Leads see no jobs.
    h.get("/v1/admin/jobs", &h.tokens.lee).await.problem(403);
}

async fn admin_sees_the_loaded_workflow_and_calendars(db: TestDb) {
    let h = harness(db).await;
    let wf = h.get("/v1/admin/workflow", &h.tokens.ada).await.json();
    assert_eq!((wf["name"].clone(), wf["version"].clone()), (json!("account-appeal"), json!(1)));
    assert!(wf["definition"]["transitions"].as_array().unwrap().iter().any(|t| t["name"] == "approve"));
    let mermaid = wf["mermaid"].as_str().unwrap();
    assert!(
        mermaid.starts_with("stateDiagram-v2") && mermaid.contains("submitted --> under_review: claim"),
        "{mermaid}"
    );
    let cals = h.get("/v1/admin/calendars", &h.tokens.ada).await.json();
    let by_name: BTreeMap<&str, &Value> =
        cals["calendars"].as_array().unwrap().iter().map(|c| (c["name"].as_str().unwrap(), c)).collect();
    let cn = by_name["cn-mainland"];
    assert_eq!(cn["time_zone"], "Asia/Shanghai");
    assert_eq!(cn["years"], json!([2025, 2026]));
    assert_eq!(cn["in_use"], true);
    assert_eq!(by_name["weekdays"]["time_zone"], "UTC");
    assert_eq!(by_name["weekdays"]["in_use"], false);
}

// -------------------------------------------------------------------------- openapi

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

/// Paths nobody serves: the router must answer them 404 (a route added without a line
/// in the table is caught here or by the 405 check below).
// The web pages (`/`, `/console`, ...) are HTML for people, not the API the document
// describes; the browser tests are theirs.
const UNDOCUMENTED: &[&str] = &[
    "/v1",
    "/v1/appeals",
    "/v1/appeals/{ticket}/history",
    "/v1/appeals/{ticket}/documents",
    "/v1/appeals/{ticket}/assign",
    "/v1/admin",
    "/v1/admin/tokens",
    "/v1/admin/jobs/{id}",
    "/v1/queue/next",
    "/v1/tokens",
    "/v1/drafts/{id}/documents/{index}/content",
    "/openapi.yaml",
    "/docs",
];

async fn openapi_describes_every_route_the_router_serves_and_nothing_else(db: TestDb) {
    let h = harness(db).await;
    let t = h.held_by_ann(Kind::Enterprise).await;
    let sha = h.first_sha(&t).await;
    let fill = |p: &str| {
        p.replace("{ticket}", t.as_str())
            .replace("{sha256}", &sha)
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{index}", "0")
    };

    // The document is the table.
    let reply = h.send("GET", "/openapi.json", None, None, &[]).await;
    assert_eq!(reply.status, 200);
    let doc = reply.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| ops.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), p.clone())))
        .collect();
    let table: BTreeSet<(String, String)> = API.iter().map(|r| (r.method.to_string(), r.path.to_string())).collect();
    assert_eq!(documented, table);
    assert_eq!(table.len(), API.len(), "no route is listed twice");
    for (p, op) in doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| ops.as_object().unwrap().values().map(move |op| (p, op)))
    {
        assert!(op["operationId"].is_string() && op["responses"].is_object(), "{p}: {op}");
        let params: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["in"] == "path")
            .map(|x| x["name"].as_str().unwrap())
            .collect();
        let in_path: Vec<&str> =
            p.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        assert_eq!(params, in_path, "{p}");
    }
    // Every POST either takes Idempotency-Key or says what a repeat does instead.
    for (p, ops) in doc["paths"].as_object().unwrap() {
        let Some(op) = ops.get("post") else { continue };
        let keyed = op["parameters"].as_array().unwrap().iter().any(|x| x["name"] == "Idempotency-Key");
        assert!(keyed != op["x-repeat"].is_string(), "{p}: keyed {keyed}, x-repeat {}", op["x-repeat"]);
    }
    let unkeyed: BTreeSet<&str> = API.iter().filter(|r| r.unkeyed.is_some()).map(|r| r.operation).collect();
    assert_eq!(
        unkeyed,
        BTreeSet::from(["add_document", "create_draft", "facial_recognition", "progress", "stop_change"])
    );
    let upload = &doc["paths"]["/v1/drafts/{id}/documents"]["post"]["responses"];
    assert!(upload["201"].is_object() && upload["200"].is_object(), "a repeated upload answers 200: {upload}");
    // Every link leads to an operation of the document and fills only parameters it has.
    let operations: Vec<&serde_json::Value> =
        doc["paths"].as_object().unwrap().values().flat_map(|ops| ops.as_object().unwrap().values()).collect();
    let mut links = 0;
    for op in &operations {
        for answer in op["responses"].as_object().unwrap().values() {
            for (name, link) in answer["links"].as_object().into_iter().flatten() {
                links += 1;
                let target = operations
                    .iter()
                    .find(|o| o["operationId"] == link["operationId"])
                    .unwrap_or_else(|| panic!("link {name} of {}: no such operation", op["operationId"]));
                for key in link["parameters"].as_object().into_iter().flatten().map(|(k, _)| k) {
                    let (place, param) = key.split_once('.').unwrap();
                    assert!(
                        target["parameters"].as_array().unwrap().iter().any(|x| x["in"] == place && x["name"] == param),
                        "link {name} of {} fills {key}, which {} does not take",
                        op["operationId"],
                        target["operationId"]
                    );
                }
            }
        }
    }
    assert!(links >= 15, "the applicant's and the reviewer's walks are linked ({links} links)");
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    for r in refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
        assert!(doc["components"]["schemas"].get(name).is_some(), "{r} does not resolve");
    }

    // Every documented route is served: the router does not answer 404 `no-route` or
    // 405. A handler's own 404 is another problem (`not-found`).
    let no_route = |reply: &Reply| reply.status == 404 && reply.problem(404)["code"] == "no-route";
    for (method, path) in &table {
        let reply = h.send_raw(method, &fill(path), None, None, &[]).await;
        let unrouted = reply.status == 405 || no_route(&reply);
        assert!(!unrouted, "{method} {path} is documented but not served: {} {}", reply.status, reply.text());
    }
    // No other method is served on a documented path.
    let by_path: BTreeMap<&str, Vec<&str>> = table.iter().fold(BTreeMap::new(), |mut m, (method, path)| {
        m.entry(path.as_str()).or_insert_with(Vec::new).push(method.as_str());
        m
    });
    for (path, methods) in &by_path {
        for method in METHODS.iter().filter(|m| !methods.contains(m)) {
            let reply = h.send_raw(method, &fill(path), Some(&h.tokens.ada), None, &[]).await;
            assert_eq!(reply.status, 405, "{method} {path} is served but not documented: {}", reply.text());
        }
    }
    // And paths outside the table are not served at all.
    for path in UNDOCUMENTED {
        for method in METHODS {
            let reply = h.send_raw(method, &fill(path), Some(&h.tokens.ada), None, &[]).await;
            assert!(
                no_route(&reply),
                "{method} {path} is served but not documented: {} {}",
                reply.status,
                reply.text()
            );
        }
    }
}

fn collect_refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(s)) => out.push(s),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

async fn readyz_answers_503_while_the_schema_is_behind_the_build(db: TestDb) {
    let h = harness(db).await;
    let ready = h.send_raw("GET", "/readyz", None, None, &[]).await;
    assert_eq!((ready.status, ready.text()), (200, "ready".to_string()));
    assert!(h.db.store.pending_migrations().await.unwrap().is_empty());
    // The last migration's bookkeeping row goes, as if this build were newer than the schema.
    let latest = "SELECT MAX(version) FROM appealflow_migrations";
    let forget_sqlite = "DELETE FROM appealflow_migrations WHERE version = ?";
    let forget_pg = "DELETE FROM appealflow_migrations WHERE version = $1";
    let last: i64 = if h.db.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&h.db.url).await.unwrap();
        let last = sqlx::query_scalar(latest).fetch_one(&pool).await.unwrap();
        sqlx::query(forget_sqlite).bind(last).execute(&pool).await.unwrap();
        last
    } else {
        let pool = sqlx::PgPool::connect(&h.db.url).await.unwrap();
        let last = sqlx::query_scalar(latest).fetch_one(&pool).await.unwrap();
        sqlx::query(forget_pg).bind(last).execute(&pool).await.unwrap();
        last
    };
    assert!(last >= 5, "the schema has at least the five migrations of this build");
    assert_eq!(h.db.store.pending_migrations().await.unwrap(), [last]);
    let behind = h.send_raw("GET", "/readyz", None, None, &[]).await;
    let p = behind.problem(503);
    assert_eq!(p["code"], "not-ready", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("appealflow migrate"), "{p}");
    // Liveness does not depend on the schema.
    assert_eq!(h.send_raw("GET", "/healthz", None, None, &[]).await.status, 200);
}

async fn unknown_paths_wrong_methods_and_missing_credentials_answer_problem_documents(db: TestDb) {
    let h = harness(db).await;
    // An unknown path: a problem document naming it, not an empty body.
    let r = h.get("/v1/no-such-route", &h.tokens.ann).await;
    let p = r.problem(404);
    assert_eq!(p["code"], "no-route", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("/v1/no-such-route"), "{p}");
    // A known path with a method it does not take: 405, its methods in Allow.
    let r = h.send("DELETE", "/v1/queue", Some(&h.tokens.ann), None, &[]).await;
    let p = r.problem(405);
    assert_eq!(p["code"], "method-not-allowed", "{p}");
    let allow = r.headers.get("allow").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(allow.contains("GET"), "Allow: {allow:?}");
    // 401s say how to authenticate: a bearer token for staff routes...
    for token in [None, Some(UNKNOWN_TOKEN)] {
        let r = h.send("GET", "/v1/queue", token, None, &[]).await;
        r.problem(401);
        let challenge = r.headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(challenge.starts_with("Bearer "), "WWW-Authenticate: {challenge:?}");
    }
    // ...the draft's secret for an applicant's draft.
    let r = h.send("GET", "/v1/drafts/some-draft", None, None, &[]).await;
    r.problem(401);
    let challenge = r.headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(challenge.starts_with("DraftSecret "), "WWW-Authenticate: {challenge:?}");
}
