//! The applicants' HTTP API against a real server on loopback, on SQLite and on
//! PostgreSQL: a whole enterprise appeal from draft to ticket, rejection, resubmission
//! and withdrawal; the same 404 for an unknown draft and a wrong secret; bad input on
//! every route answered with a problem document and nothing stored; the signed
//! facial-recognition callback; the rate-limited progress query; idempotent submission.

use crate::common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::TestDb;
use appealflow::adapters::notify::sign;
use appealflow::app::intake::AppealData;
use appealflow::domain::document::{DocumentLimits, sample};
use appealflow::domain::{Actor, Role, TicketNumber};
use appealflow::engine::{Clock, ManualClock};
use appealflow::http::{AppState, HttpConfig, Shared};
use appealflow::startup::{IntakeConfig, WorkConfig};
use appealflow::workflow::Fire;
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    enterprise_applicant_goes_from_draft_to_ticket_then_resubmits_after_a_rejection_and_withdraws,
    unknown_draft_and_wrong_secret_get_the_same_404_on_every_draft_route,
    bad_input_on_every_applicant_route_is_a_problem_document_and_stores_nothing,
    forged_or_stale_facial_recognition_signature_is_refused_and_changes_nothing,
    the_applicant_cannot_assert_a_facial_recognition_result_on_any_route,
    slow_and_idle_connections_do_not_keep_healthz_from_answering,
    progress_is_rate_limited_per_client_and_answers_alike_for_unknown_ticket_and_wrong_phone,
    submit_retried_with_the_same_idempotency_key_returns_the_same_ticket,
    an_upload_streamed_in_small_chunks_is_stored_byte_for_byte_and_a_retry_adds_nothing,
    every_hostile_file_is_refused_with_its_reason_and_leaves_nothing_behind,
    documents_are_limited_per_draft_per_kind_and_in_bytes_and_unreferenced_files_are_collected,
    progress_takes_the_same_time_for_an_unknown_ticket_a_wrong_phone_and_a_malformed_ticket,
    guesses_from_elsewhere_never_lock_the_owner_out_and_stay_bounded_per_ticket_across_processes,
    drafts_per_client_are_limited_across_processes,
    metrics_are_for_operators_and_their_gauges_are_cached,
    non_finite_numbers_and_near_json_content_types_are_refused_by_name,
    the_submission_history_keeps_the_providers_facial_recognition_result,
    every_answer_carries_a_request_id_kept_from_the_client_only_when_it_is_a_short_token,
);

const KEY: &str = "http-applicant-test-key-0123456789";
const FACE_SECRET: &[u8] = b"face-provider-secret";
const PHONE: &str = "13712345678";
const BOUNDARY: &str = "----appealflow-test-7d1f0c";
const MIB: usize = 1024 * 1024;

use crate::common::examples;

fn example_document(name: &str) -> Vec<u8> {
    std::fs::read(examples().join("documents").join(name)).expect("example document")
}

struct App {
    db: TestDb,
    base: String,
    http: reqwest::Client,
    clock: Arc<ManualClock>,
    state: Shared,
    _blobs: tempfile::TempDir,
}

async fn spawn_with(db: TestDb, config: HttpConfig) -> App {
    spawn_limited(db, config, DocumentLimits::default()).await
}

async fn spawn_limited(db: TestDb, config: HttpConfig, limits: DocumentLimits) -> App {
    let clock = Arc::new(ManualClock::new(common::monday_morning()));
    let blobs = tempfile::tempdir().expect("blob dir");
    // PDFs are parsed in the sandboxed child, as the server does.
    let intake_config = IntakeConfig {
        blob_dir: blobs.path().into(),
        id_hash_key: Some(KEY.into()),
        limits,
        pdf_inspector: Some(env!("CARGO_BIN_EXE_appealflow").into()),
    };
    let app = common::app(&db, clock.clone(), &WorkConfig::default(), Some(intake_config));
    common::import_example_accounts(&db, KEY, clock.now()).await;
    let state: Shared = Arc::new(AppState::new(app.intake().expect("built with intake").clone(), app.work, config));
    let base = common::spawn_server(state.clone()).await;
    App { db, base, http: reqwest::Client::new(), clock, state, _blobs: blobs }
}

async fn spawn(db: TestDb) -> App {
    spawn_with(db, HttpConfig { face_secret: Some(FACE_SECRET.to_vec()), ..HttpConfig::default() }).await
}

/// The example enterprise draft without documents and before facial recognition.
fn enterprise_fields() -> Value {
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(examples().join("draft-enterprise.json")).expect("example"))
            .expect("example draft parses");
    v.as_object_mut().expect("object").remove("documents");
    v["operator"].as_object_mut().expect("operator").remove("facial_recognition");
    v
}

fn multipart(file_name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// A response read in full: status, content type, JSON body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    content_type: String,
    retry_after: Option<String>,
    body: Value,
}

impl Answer {
    fn assert_problem(&self, status: StatusCode, code: &str) -> &Self {
        assert_eq!(self.status, status, "{:#}", self.body);
        assert_eq!(self.content_type, "application/problem+json", "{:#}", self.body);
        assert_eq!(self.body["code"], code, "{:#}", self.body);
        assert_eq!(self.body["status"], status.as_u16(), "{:#}", self.body);
        self
    }

    fn detail(&self) -> String {
        format!("{} {}", self.body["detail"], self.body["errors"])
    }

    /// The answer is what `/openapi.json` documents for `method path` and its status: a
    /// documented status, a JSON object with every required member and no undocumented one.
    fn as_documented(&self, method: &str, path: &str) -> &Self {
        let doc = appealflow::http::openapi::openapi_document(&crate::common::workflow());
        let op = &doc["paths"][path][method.to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {path} is not documented");
        let response = &op["responses"][self.status.as_str()];
        assert!(response.is_object(), "{method} {path}: status {} is not documented", self.status);
        let mut schema = &response["content"]["application/json"]["schema"];
        if let Some(name) = schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
            schema = &doc["components"]["schemas"][name];
        }
        let body = self.body.as_object().unwrap_or_else(|| panic!("{method} {path}: not an object: {}", self.body));
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap();
            assert!(body.contains_key(name), "{method} {path}: documented `{name}` missing from {:#}", self.body);
        }
        let properties = schema["properties"].as_object().unwrap_or_else(|| panic!("{method} {path}: opaque schema"));
        for key in body.keys() {
            assert!(properties.contains_key(key), "{method} {path}: `{key}` is not documented: {schema:#}");
        }
        self
    }
}

impl App {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request answered");
        let status = response.status();
        let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let content_type = header(reqwest::header::CONTENT_TYPE).unwrap_or_default();
        let retry_after = header(reqwest::header::RETRY_AFTER);
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, content_type, retry_after, body }
    }

    async fn post_json(&self, path: &str, secret: Option<&str>, body: &Value) -> Answer {
        let mut rq = self.http.post(self.url(path)).json(body);
        if let Some(s) = secret {
            rq = rq.header("x-draft-secret", s);
        }
        self.send(rq).await
    }

    async fn post_raw(&self, path: &str, secret: Option<&str>, content_type: &str, body: Vec<u8>) -> Answer {
        let mut rq = self.http.post(self.url(path)).header("content-type", content_type).body(body);
        if let Some(s) = secret {
            rq = rq.header("x-draft-secret", s);
        }
        self.send(rq).await
    }

    async fn get(&self, path: &str, secret: &str) -> Answer {
        self.send(self.http.get(self.url(path)).header("x-draft-secret", secret)).await
    }

    async fn create_draft(&self, fields: &Value) -> (String, String) {
        let a = self.post_json("/v1/drafts", None, fields).await;
        assert_eq!(a.status, StatusCode::CREATED, "{:#}", a.body);
        (a.body["draft_id"].as_str().unwrap().to_string(), a.body["secret"].as_str().unwrap().to_string())
    }

    async fn upload(&self, id: &str, secret: &str, query: &str, file_name: &str, bytes: &[u8]) -> Answer {
        let ct = format!("multipart/form-data; boundary={BOUNDARY}");
        self.post_raw(&format!("/v1/drafts/{id}/documents?{query}"), Some(secret), &ct, multipart(file_name, bytes))
            .await
    }

    async fn upload_examples(&self, id: &str, secret: &str) {
        for (i, (query, file)) in [
            ("kind=business_license", "licence.jpg"),
            ("kind=enterprise_appeal_letter&stamped=true", "letter.pdf"),
            ("kind=proof_of_payment", "receipt.png"),
        ]
        .into_iter()
        .enumerate()
        {
            let a = self.upload(id, secret, query, file, &example_document(file)).await;
            assert_eq!(a.status, StatusCode::CREATED, "{:#}", a.body);
            assert_eq!(a.body["index"], i);
        }
    }

    async fn face_callback(&self, body: &Value, timestamp: i64, secret: &[u8]) -> Answer {
        let bytes = serde_json::to_vec(body).unwrap();
        let signature = format!("sha256={}", sign(secret, timestamp, &bytes));
        self.send(
            self.http
                .post(self.url("/v1/facial-recognition"))
                .header("content-type", "application/json")
                .header("x-appealflow-timestamp", timestamp.to_string())
                .header("x-appealflow-signature", signature)
                .body(bytes),
        )
        .await
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }

    async fn face_passed(&self, id: &str) {
        let body = json!({ "draft_id": id, "result": "passed", "provider": "example-face", "reference": "fr-1" });
        let a = self.face_callback(&body, self.now(), FACE_SECRET).await;
        assert_eq!(a.status, StatusCode::OK, "{:#}", a.body);
        a.as_documented("POST", "/v1/facial-recognition");
    }

    /// A complete enterprise draft: created, documents uploaded, face recognised.
    async fn ready_draft(&self) -> (String, String) {
        let (id, secret) = self.create_draft(&enterprise_fields()).await;
        self.upload_examples(&id, &secret).await;
        self.face_passed(&id).await;
        (id, secret)
    }

    async fn submit(&self, id: &str, secret: &str, key: Option<&str>) -> Answer {
        let mut rq = self.http.post(self.url(&format!("/v1/drafts/{id}/submit"))).header("x-draft-secret", secret);
        if let Some(k) = key {
            rq = rq.header("idempotency-key", k);
        }
        self.send(rq).await
    }

    async fn on_appeal(&self, ticket: &str, action: &str, id: &str, secret: &str) -> Answer {
        self.send(
            self.http
                .post(self.url(&format!("/v1/appeals/{ticket}/{action}")))
                .header("x-draft-id", id)
                .header("x-draft-secret", secret),
        )
        .await
    }

    async fn progress(&self, ticket: &str, phone: &str) -> Answer {
        self.post_json("/v1/progress", None, &json!({ "ticket": ticket, "phone": phone })).await
    }

    async fn reviewer_rejects(&self, ticket: &str) {
        let ticket = TicketNumber::parse(ticket).unwrap();
        let engine = self.state.engine();
        let ann = Actor::new("ann", Role::Reviewer);
        engine.fire(&ticket, &Fire::new("claim"), &ann, None).await.expect("claim");
        let mut reject = Fire::new("reject");
        reject.reasons = vec!["missing_documents: supplementary".into()];
        engine.fire(&ticket, &reject, &ann, None).await.expect("reject");
        let worker = common::start_worker(&self.db, self.state.work.clone());
        common::settle(&worker).await;
        worker.stop().await.unwrap();
    }

    async fn draft_count(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM drafts";
        if self.db.url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.db.url).await.unwrap();
            let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        } else {
            let pool = sqlx::PgPool::connect(&self.db.url).await.unwrap();
            let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
    }

    async fn stored(&self, id: &str) -> appealflow::store::DraftRecord {
        self.db.store.draft(id).await.unwrap().expect("draft stored")
    }

    async fn appeal_data(&self, ticket: &str) -> AppealData {
        let record = self.db.store.appeal_by_ticket(&TicketNumber::parse(ticket).unwrap()).await.unwrap().unwrap();
        AppealData::from_record(&record).unwrap()
    }
}

// ------------------------------------------------------------------------- the flow

async fn enterprise_applicant_goes_from_draft_to_ticket_then_resubmits_after_a_rejection_and_withdraws(db: TestDb) {
    let app = spawn(db).await;
    let created = app.post_json("/v1/drafts", None, &enterprise_fields()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:#}", created.body);
    created.as_documented("POST", "/v1/drafts");
    let id = created.body["draft_id"].as_str().unwrap().to_string();
    let secret = created.body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("afd_"), "{secret}");
    assert!(!created.body["checklist"]["missing"].as_array().unwrap().is_empty(), "{:#}", created.body);
    let stored = app.stored(&id).await;
    assert_ne!(stored.secret_hash, secret, "only the secret's hash is stored");
    assert!(!stored.data.to_string().contains(&secret));
    // The operator's ID number (440304198506152416) is stored only protected.
    assert!(!stored.data.to_string().contains("19850615"), "{}", stored.data);
    assert_eq!(stored.data["operator"]["id"]["masked"], "440304********2416");
    let shown = app.get(&format!("/v1/drafts/{id}"), &secret).await;
    assert!(!shown.body.to_string().contains("19850615"), "{:#}", shown.body);
    shown.as_documented("GET", "/v1/drafts/{id}");
    for at in ["created_at", "updated_at"] {
        assert!(shown.body[at].as_str().unwrap().ends_with("+08:00"), "in the workflow's zone: {:#}", shown.body);
    }
    let replaced = app.send(
        app.http.put(app.url(&format!("/v1/drafts/{id}"))).header("x-draft-secret", &secret).json(&enterprise_fields()),
    );
    replaced.await.as_documented("PUT", "/v1/drafts/{id}");

    app.upload_examples(&id, &secret).await;
    let checklist = app.get(&format!("/v1/drafts/{id}/checklist"), &secret).await;
    assert_eq!(checklist.status, StatusCode::OK);
    assert_eq!(checklist.body["missing"], json!([]), "{:#}", checklist.body);
    let problems = checklist.body["problems"].to_string();
    assert!(problems.contains("facial_recognition"), "only the face check is left: {problems}");

    app.face_passed(&id).await;
    let shown = app.get(&format!("/v1/drafts/{id}"), &secret).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body["data"]["operator"]["facial_recognition"]["result"], "passed");
    assert_eq!(shown.body["data"]["documents"].as_array().unwrap().len(), 3);
    assert_eq!(shown.body["data"]["documents"][1]["content_type"], "pdf");
    assert_eq!(shown.body["checklist"]["problems"], json!([]), "{:#}", shown.body);

    let submitted = app.submit(&id, &secret, None).await;
    assert_eq!(submitted.status, StatusCode::CREATED, "{:#}", submitted.body);
    submitted.as_documented("POST", "/v1/drafts/{id}/submit");
    assert_eq!(submitted.body["state"], "submitted");
    let ticket = submitted.body["ticket"].as_str().unwrap().to_string();
    assert_eq!(app.stored(&id).await.ticket.as_deref(), Some(ticket.as_str()));
    assert_eq!(app.appeal_data(&ticket).await.draft.documents.len(), 3);

    let progress = app.progress(&ticket, PHONE).await;
    assert_eq!(progress.status, StatusCode::OK, "{:#}", progress.body);
    assert_eq!(progress.body["stage"], "received");

    app.reviewer_rejects(&ticket).await;
    let progress = app.progress(&ticket, PHONE).await;
    assert_eq!(progress.body["stage"], "rejected", "{:#}", progress.body);
    assert!(progress.body["continue_until"].is_string(), "the notice was delivered: {:#}", progress.body);
    // Shown in the workflow's zone, the reasons as codes and in the applicant's words.
    assert_eq!(progress.body["time_zone"], "Asia/Shanghai", "{:#}", progress.body);
    for at in ["continue_until", "received_at", "updated_at"] {
        assert!(progress.body[at].as_str().unwrap().ends_with("+08:00"), "{at}: {:#}", progress.body);
    }
    assert_eq!(progress.body["reasons"], json!(["missing_documents: supplementary"]));
    assert_eq!(progress.body["reasons_in_words"], json!(["缺少材料：补充材料"]));

    let extra = app
        .upload(&id, &secret, "kind=supplementary", "explanation.pdf", &sample::pdf("the special circumstances"))
        .await;
    assert_eq!(extra.status, StatusCode::CREATED, "{:#}", extra.body);
    assert_eq!(extra.body["index"], 3);
    extra.as_documented("POST", "/v1/drafts/{id}/documents");
    let again = app
        .upload(&id, &secret, "kind=supplementary", "explanation.pdf", &sample::pdf("the special circumstances"))
        .await;
    assert_eq!(again.status, StatusCode::OK, "a repeat answers the entry already there: {:#}", again.body);
    again.as_documented("POST", "/v1/drafts/{id}/documents");
    let resubmitted = app.on_appeal(&ticket, "resubmit", &id, &secret).await;
    assert_eq!(resubmitted.status, StatusCode::OK, "{:#}", resubmitted.body);
    resubmitted.as_documented("POST", "/v1/appeals/{ticket}/resubmit");
    assert_eq!(resubmitted.body["state"], "submitted");
    let data = app.appeal_data(&ticket).await;
    assert_eq!(data.draft.documents.len(), 4, "the added document went with the resubmission");
    let progress = app.progress(&ticket, PHONE).await;
    assert_eq!(progress.body["stage"], "received", "{progress:?}");

    let withdrawn = app.on_appeal(&ticket, "withdraw", &id, &secret).await;
    assert_eq!(withdrawn.status, StatusCode::OK, "{:#}", withdrawn.body);
    withdrawn.as_documented("POST", "/v1/appeals/{ticket}/withdraw");
    assert_eq!(withdrawn.body["state"], "closed");
    assert_eq!(withdrawn.body["outcome"], "withdrawn");
    assert!(withdrawn.body["version"].as_i64().unwrap() > 1);
    let again = app.on_appeal(&ticket, "withdraw", &id, &secret).await;
    again.assert_problem(StatusCode::CONFLICT, "wrong-state");
}

// ------------------------------------------------------------------------- access

async fn unknown_draft_and_wrong_secret_get_the_same_404_on_every_draft_route(db: TestDb) {
    let app = spawn(db).await;
    let (id, secret) = app.ready_draft().await;
    let (other_id, other_secret) = app.ready_draft().await;
    let before = app.stored(&id).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let wrong = "afd_0000000000000000000000000000000000000000000000000000000000000000";
    let jpeg = multipart("licence.jpg", &example_document("licence.jpg"));
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    for (method, path) in [
        ("GET", "/v1/drafts/{id}"),
        ("PUT", "/v1/drafts/{id}"),
        ("GET", "/v1/drafts/{id}/checklist"),
        ("POST", "/v1/drafts/{id}/documents?kind=business_license"),
        ("PUT", "/v1/drafts/{id}/documents/0?kind=business_license"),
        ("DELETE", "/v1/drafts/{id}/documents/0"),
        ("POST", "/v1/drafts/{id}/submit"),
    ] {
        let mut answers = Vec::new();
        for (draft, key) in [(id.as_str(), wrong), (unknown.as_str(), secret.as_str()), (id.as_str(), &other_secret)] {
            let url = app.url(&path.replace("{id}", draft));
            let rq = match method {
                "GET" => app.http.get(url),
                "DELETE" => app.http.delete(url),
                "PUT" if path.contains("documents") => app.http.put(url).header("content-type", &ct).body(jpeg.clone()),
                "PUT" => app.http.put(url).json(&enterprise_fields()),
                _ if path.contains("documents") => app.http.post(url).header("content-type", &ct).body(jpeg.clone()),
                _ => app.http.post(url),
            };
            let a = app.send(rq.header("x-draft-secret", key)).await;
            a.assert_problem(StatusCode::NOT_FOUND, "not-found");
            answers.push(a.body);
        }
        assert!(answers.windows(2).all(|w| w[0] == w[1]), "{method} {path}: {answers:#?}");
        let a = app.send(app.http.get(app.url(&format!("/v1/drafts/{id}")))).await;
        a.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    assert_eq!(app.stored(&id).await, before, "nothing changed");
    assert_eq!(app.db.store.row_counts().await.unwrap().appeals, 0);

    // Appeals: the draft must be the one that created the ticket, with its secret.
    let ticket = app.submit(&id, &secret, None).await.body["ticket"].as_str().unwrap().to_string();
    let mut answers = Vec::new();
    for (draft, key) in [(id.as_str(), wrong), (unknown.as_str(), secret.as_str()), (other_id.as_str(), &other_secret)]
    {
        for action in ["resubmit", "withdraw"] {
            let a = app.on_appeal(&ticket, action, draft, key).await;
            a.assert_problem(StatusCode::NOT_FOUND, "not-found");
            answers.push(a.body);
        }
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:#?}");
    let record = app.db.store.appeal_by_ticket(&TicketNumber::parse(&ticket).unwrap()).await.unwrap().unwrap();
    assert_eq!(record.state, "submitted", "nothing happened to the appeal");
}

// ------------------------------------------------------------------------- bad input

async fn bad_input_on_every_applicant_route_is_a_problem_document_and_stores_nothing(db: TestDb) {
    let app = spawn(db).await;
    let (id, secret) = app.create_draft(&enterprise_fields()).await;
    app.upload_examples(&id, &secret).await;
    let before = app.stored(&id).await;
    let drafts = app.draft_count().await;
    let counts = app.db.store.row_counts().await.unwrap();

    // Drafts: create and replace.
    let huge = json!({ "supplementary_content": "x".repeat(70 * 1024) });
    let mut bad_fields = enterprise_fields();
    bad_fields["contact_phone"] = json!("12");
    bad_fields["operator"]["id_number"] = json!("123");
    bad_fields["locale"] = json!("fr");
    let mut with_documents = enterprise_fields();
    with_documents["documents"] = json!([{ "kind": "business_license", "file": "/etc/passwd" }]);
    let mut ineligible = enterprise_fields();
    ineligible["entry_point"]["value"] = json!("nobody.example");
    let put_url = app.url(&format!("/v1/drafts/{id}"));
    for put in [false, true] {
        let rq = |ct: &str, body: Vec<u8>| {
            let rq = if put { app.http.put(&put_url) } else { app.http.post(app.url("/v1/drafts")) };
            rq.header("content-type", ct.to_string()).header("x-draft-secret", &secret).body(body)
        };
        let json = |v: &Value| rq("application/json", serde_json::to_vec(v).unwrap());
        app.send(rq("application/json", b"{\"entry_point\":".to_vec()))
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
        app.send(rq("text/plain", serde_json::to_vec(&enterprise_fields()).unwrap()))
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
        app.send(json(&json!({ "entry_point": "acme.example" })))
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
        app.send(json(&json!({ "contact_phone": 13712345678u64 })))
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
        let a = app
            .send(json(&json!({ "entry_point": {"kind": "security_page", "account": "acme-ops"}, "nope": 1 })))
            .await;
        a.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
        assert!(a.detail().contains("nope"), "{}", a.detail());
        app.send(json(&json!([1, 2]))).await.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
        app.send(json(&huge)).await.assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "too-large");
        let a = app.send(json(&with_documents)).await;
        a.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
        assert!(a.detail().contains("documents"), "{}", a.detail());
        let a = app.send(json(&bad_fields)).await;
        a.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
        let fields: Vec<&str> =
            a.body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        for f in ["contact_phone", "operator.id_number", "locale"] {
            assert!(fields.contains(&f), "every field problem at once: {fields:?}");
        }
        assert!(!a.body.to_string().contains("12\""), "values are not echoed: {:#}", a.body);
        app.send(json(&ineligible)).await.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "ineligible");
    }
    assert_eq!(app.draft_count().await, drafts, "no draft was created");
    assert_eq!(app.stored(&id).await, before, "the draft did not change");

    // Documents: query, framing and content.
    let jpeg = example_document("licence.jpg");
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let docs = format!("/v1/drafts/{id}/documents");
    let upload = |path: String, ct: String, body: Vec<u8>| app.post_raw_owned(path, secret.clone(), ct, body);
    for (query, why) in [
        ("", "kind"),
        ("?kind=passport", "passport"),
        ("?kind=business_license&colour=red", "colour"),
        ("?kind=business_license&stamped=perhaps", "stamped"),
    ] {
        let a = upload(format!("{docs}{query}"), ct.clone(), multipart("licence.jpg", &jpeg)).await;
        a.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
        assert!(a.detail().contains(why), "{why}: {}", a.detail());
    }
    let q = format!("{docs}?kind=business_license");
    upload(q.clone(), "application/json".into(), b"{}".to_vec())
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    upload(q.clone(), ct.clone(), b"--nope\r\n\r\nhello".to_vec())
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    let mut two = multipart("licence.jpg", &jpeg);
    two.truncate(two.len() - 4);
    two.extend_from_slice(
        format!("\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\ny\r\n--{BOUNDARY}--\r\n").as_bytes(),
    );
    upload(q.clone(), ct.clone(), two).await.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    for (name, bytes, reason) in [
        ("licence.jpg", Vec::new(), "empty"),
        ("licence.gif", b"GIF89a\x01\x00\x01\x00".to_vec(), "not a JPEG, PNG or PDF"),
        ("scan.jpg", b"%PDF-1.7\na PDF named as a JPEG".to_vec(), "named as a JPEG"),
    ] {
        let a = upload(q.clone(), ct.clone(), multipart(name, &bytes)).await;
        a.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
        assert!(a.detail().contains("business_license"), "names the kind: {}", a.detail());
        assert!(a.detail().contains(reason), "{reason}: {}", a.detail());
    }
    let mut oversized = vec![0u8; 10 * MIB + 1];
    oversized[..3].copy_from_slice(&[0xFF, 0xD8, 0xFF]);
    let a = upload(q.clone(), ct.clone(), multipart("big.jpg", &oversized)).await;
    a.assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "too-large");
    assert!(a.detail().contains("business_license"), "{}", a.detail());
    let a = app
        .send(
            app.http
                .put(app.url(&format!("{docs}/0?kind=business_license")))
                .header("x-draft-secret", &secret)
                .header("content-type", &ct)
                .body(multipart("scan.jpg", b"%PDF-1.7\nmislabelled")),
        )
        .await;
    a.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    for (method, path) in [("PUT", format!("{docs}/3?kind=business_license")), ("DELETE", format!("{docs}/x"))] {
        let url = app.url(&path);
        let rq = if method == "PUT" {
            app.http.put(url).header("content-type", &ct).body(multipart("a.jpg", &jpeg))
        } else {
            app.http.delete(url)
        };
        app.send(rq.header("x-draft-secret", &secret)).await.assert_problem(StatusCode::NOT_FOUND, "not-found");
    }
    assert_eq!(app.stored(&id).await, before, "the draft did not change");

    // Submission of an incomplete draft: every problem, nothing stored.
    let a = app.submit(&id, &secret, Some("k-1")).await;
    a.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    assert!(a.detail().contains("facial_recognition"), "{}", a.detail());
    let a = app.submit(&id, &secret, Some(&"k".repeat(300))).await;
    a.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");

    // The provider callback, correctly signed, with bad content.
    let now = app.now();
    let face = |v: Value| app.face_callback_owned(v, now);
    face(json!({ "draft_id": id, "result": "maybe", "provider": "p", "reference": "r" }))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    face(json!({ "draft_id": id, "result": "passed", "provider": "p", "reference": "r", "score": 1 }))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    face(json!({ "draft_id": id, "result": "passed", "provider": " ", "reference": "r" }))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    face(
        json!({ "draft_id": uuid::Uuid::new_v4().to_string(), "result": "passed", "provider": "p", "reference": "r" }),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "not-found");

    // Appeals and progress.
    let t = "0000-0000-0000-0000-0000";
    app.send(app.http.post(app.url(&format!("/v1/appeals/{t}/resubmit"))))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    app.send(app.http.post(app.url("/v1/progress")).header("content-type", "application/json").body("{"))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    app.post_json("/v1/progress", None, &json!({ "ticket": 1, "phone": PHONE }))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");

    assert_eq!(app.stored(&id).await, before, "the draft did not change");
    assert_eq!(app.draft_count().await, drafts);
    assert_eq!(app.db.store.row_counts().await.unwrap(), counts, "no appeal, event, timer or key stored");
}

impl App {
    async fn post_raw_owned(&self, path: String, secret: String, ct: String, body: Vec<u8>) -> Answer {
        self.post_raw(&path, Some(&secret), &ct, body).await
    }

    async fn face_callback_owned(&self, body: Value, timestamp: i64) -> Answer {
        self.face_callback(&body, timestamp, FACE_SECRET).await
    }
}

// ------------------------------------------------------------------------- callback

async fn forged_or_stale_facial_recognition_signature_is_refused_and_changes_nothing(db: TestDb) {
    let app = spawn(db).await;
    let (id, secret) = app.create_draft(&enterprise_fields()).await;
    let before = app.stored(&id).await;
    let body = json!({ "draft_id": id, "result": "passed", "provider": "example-face", "reference": "fr-9" });
    let now = app.now();
    app.face_callback(&body, now, b"not-the-secret").await.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    app.face_callback(&body, now - 301, FACE_SECRET).await.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    app.face_callback(&body, now + 301, FACE_SECRET).await.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    // Signed for one body, sent with another.
    let signed = serde_json::to_vec(&body).unwrap();
    let tampered =
        serde_json::to_vec(&json!({ "draft_id": id, "result": "passed", "provider": "x", "reference": "y" })).unwrap();
    let a = app
        .send(
            app.http
                .post(app.url("/v1/facial-recognition"))
                .header("x-appealflow-timestamp", now.to_string())
                .header("x-appealflow-signature", format!("sha256={}", sign(FACE_SECRET, now, &signed)))
                .body(tampered),
        )
        .await;
    a.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    let a = app.send(app.http.post(app.url("/v1/facial-recognition")).json(&body)).await;
    a.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(app.stored(&id).await, before, "nothing recorded");

    // Within the tolerance and correctly signed, a failed result is recorded as such.
    let failed = json!({ "draft_id": id, "result": "failed", "provider": "example-face", "reference": "fr-10" });
    let a = app.face_callback(&failed, now - 299, FACE_SECRET).await;
    assert_eq!(a.status, StatusCode::OK, "{:#}", a.body);
    let checklist = app.get(&format!("/v1/drafts/{id}/checklist"), &secret).await;
    assert!(checklist.body["problems"].to_string().contains("did not pass"), "{:#}", checklist.body);

    // Without a configured secret, callbacks are refused as unavailable.
    let other = spawn_with(common::sqlite().await, HttpConfig::default()).await;
    other
        .face_callback(&body, other.now(), FACE_SECRET)
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "not-configured");
}

/// The help page's identity check rests on the provider's result: an applicant who
/// writes `operator.facial_recognition` themself is refused on create and on replace, a
/// provider's `failed` survives every applicant route, and only the signed callback
/// turns it into `passed`.
async fn the_applicant_cannot_assert_a_facial_recognition_result_on_any_route(db: TestDb) {
    let app = spawn(db).await;
    let forged = json!({ "result": "passed", "provider": "example-face", "reference": "fr-forged" });
    let mut with_face = enterprise_fields();
    with_face["operator"]["facial_recognition"] = forged.clone();

    // Create: refused, naming the field; no draft stored.
    let drafts = app.draft_count().await;
    let a = app.post_json("/v1/drafts", None, &with_face).await;
    a.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    assert!(a.body["errors"].to_string().contains("operator.facial_recognition"), "{:#}", a.body);
    assert_eq!(app.draft_count().await, drafts, "nothing stored");

    // The provider reports a failed check.
    let (id, secret) = app.create_draft(&enterprise_fields()).await;
    app.upload_examples(&id, &secret).await;
    let failed = json!({ "draft_id": id, "result": "failed", "provider": "example-face", "reference": "fr-77" });
    assert_eq!(app.face_callback(&failed, app.now(), FACE_SECRET).await.status, StatusCode::OK);
    let recorded = app.stored(&id).await;
    assert_eq!(recorded.data["operator"]["facial_recognition"]["result"], "failed");

    // Replace with a forged pass: refused, the stored draft untouched.
    let put =
        |body: Value| app.http.put(app.url(&format!("/v1/drafts/{id}"))).header("x-draft-secret", &secret).json(&body);
    let a = app.send(put(with_face.clone())).await;
    a.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    assert!(a.body["errors"].to_string().contains("operator.facial_recognition"), "{:#}", a.body);
    assert_eq!(app.stored(&id).await, recorded, "a refused replace changes nothing");

    // A replace that leaves the operator alone keeps the provider's result (not dropped,
    // so a failed check cannot be wiped and retried behind the provider's back).
    let mut edited = enterprise_fields();
    edited["contact_email"] = json!("ops@acme.example");
    let a = app.send(put(edited)).await;
    assert_eq!(a.status, StatusCode::OK, "{:#}", a.body);
    assert_eq!(
        app.stored(&id).await.data["operator"]["facial_recognition"],
        recorded.data["operator"]["facial_recognition"]
    );

    // Upload routes take no such field either.
    for query in
        ["kind=supplementary&facial_recognition=passed", "kind=supplementary&operator.facial_recognition=passed"]
    {
        let a = app.upload(&id, &secret, query, "note.pdf", &sample::pdf("note")).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {:#}", a.body);
    }
    assert_eq!(app.stored(&id).await.data["operator"]["facial_recognition"]["result"], "failed");

    // Submission refuses the failed check.
    let a = app.submit(&id, &secret, None).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{:#}", a.body);
    assert!(a.detail().contains("did not pass"), "{}", a.detail());
    assert_eq!(app.db.store.row_counts().await.unwrap().appeals, 0);

    // Another operator: the earlier check was of someone else, so it is dropped.
    let mut other = enterprise_fields();
    other["operator"]["name"] = json!("Zhao Liu");
    let a = app.send(put(other)).await;
    assert_eq!(a.status, StatusCode::OK, "{:#}", a.body);
    assert!(app.stored(&id).await.data["operator"].get("facial_recognition").is_none());

    // Only the signed callback passes it; the appeal keeps the provider and reference.
    let passed = json!({ "draft_id": id, "result": "passed", "provider": "example-face", "reference": "fr-78" });
    assert_eq!(app.face_callback(&passed, app.now(), FACE_SECRET).await.status, StatusCode::OK);
    let a = app.submit(&id, &secret, None).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:#}", a.body);
    let data = app.appeal_data(a.body["ticket"].as_str().unwrap()).await;
    let face = data.draft.operator.expect("operator").facial_recognition.expect("face result");
    assert_eq!((face.provider.as_str(), face.reference.as_str()), ("example-face", "fr-78"));
}

// ------------------------------------------------------------------------- progress

async fn progress_is_rate_limited_per_client_and_answers_alike_for_unknown_ticket_and_wrong_phone(db: TestDb) {
    let app = spawn_with(
        db,
        HttpConfig { face_secret: Some(FACE_SECRET.to_vec()), progress_per_minute: 4, ..HttpConfig::default() },
    )
    .await;
    let (id, secret) = app.ready_draft().await;
    let ticket = app.submit(&id, &secret, None).await.body["ticket"].as_str().unwrap().to_string();
    let unknown = TicketNumber::generate().to_string();
    let a = app.progress(&unknown, PHONE).await;
    let b = app.progress(&ticket, "13700000000").await;
    a.assert_problem(StatusCode::NOT_FOUND, "not-found");
    b.assert_problem(StatusCode::NOT_FOUND, "not-found");
    assert_eq!(a.body, b.body, "an unknown ticket and a wrong phone answer alike");
    assert_eq!(app.progress(&ticket, PHONE).await.status, StatusCode::OK);
    assert_eq!(app.progress(&ticket, PHONE).await.status, StatusCode::OK);
    let limited = app.progress(&ticket, PHONE).await;
    limited.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate-limited");
    let retry: u64 = limited.retry_after.as_deref().expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

// ------------------------------------------------------------------------- idempotency

async fn submit_retried_with_the_same_idempotency_key_returns_the_same_ticket(db: TestDb) {
    let app = spawn(db).await;
    let (id, secret) = app.ready_draft().await;
    let first = app.submit(&id, &secret, Some("submit-1")).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:#}", first.body);
    let counts = app.db.store.row_counts().await.unwrap();
    let again = app.submit(&id, &secret, Some("submit-1")).await;
    assert_eq!(again.status, StatusCode::CREATED, "{:#}", again.body);
    assert_eq!(again.body["ticket"], first.body["ticket"]);
    assert_eq!(app.db.store.row_counts().await.unwrap(), counts, "the retry stored nothing");
    let unkeyed = app.submit(&id, &secret, None).await;
    unkeyed.assert_problem(StatusCode::CONFLICT, "open-appeal");
    assert_eq!(unkeyed.body["open_ticket"], first.body["ticket"]);
}

/// A document whose bytes hold near-misses of the multipart delimiter, sent with chunked
/// transfer encoding in 997-byte pieces over a raw connection, is stored exactly.
async fn an_upload_streamed_in_small_chunks_is_stored_byte_for_byte_and_a_retry_adds_nothing(db: TestDb) {
    use sha2::{Digest, Sha256};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn(db).await;
    let (id, secret) = app.create_draft(&enterprise_fields()).await;
    let mut stream = Vec::new();
    for i in 0..2_000u32 {
        // Near misses: a truncated boundary, one without its CRLF, one with a single dash.
        stream.extend_from_slice(format!("obj {i}\r\n--{}X", &BOUNDARY[..BOUNDARY.len() - 1]).as_bytes());
        stream.extend_from_slice(format!(" --{BOUNDARY}\r\n-{BOUNDARY}\r\n").as_bytes());
        stream.extend((0..=255u8).map(|b| b.wrapping_mul(i as u8 | 1)));
    }
    // A real PDF (its content stream holds the near misses): uploads are parsed.
    let content = sample::pdf_with_stream(&stream);
    let delimiter = format!("\r\n--{BOUNDARY}").into_bytes();
    assert!(!content.windows(delimiter.len()).any(|w| w == delimiter), "the content never holds the delimiter");
    let sha = hex::encode(Sha256::digest(&content));
    let body = multipart("scan.pdf", &content);

    let addr = app.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/drafts/{id}/documents?kind=business_license HTTP/1.1\r\nHost: {addr}\r\n\
         X-Draft-Secret: {secret}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut sent = Ok(());
    for piece in body.chunks(997) {
        let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
        framed.extend_from_slice(piece);
        framed.extend_from_slice(b"\r\n");
        sent = conn.write_all(&framed).await;
        if sent.is_err() {
            break;
        }
        tokio::task::yield_now().await;
    }
    if sent.is_ok() {
        sent = conn.write_all(b"0\r\n\r\n").await;
    }
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(sent.is_ok(), "the server stopped reading ({sent:?}): {answer}");
    assert!(answer.starts_with("HTTP/1.1 201") || answer.starts_with("HTTP/1.1 200"), "{answer}");

    let stored = app.stored(&id).await;
    let documents = stored.data["documents"].as_array().expect("documents").clone();
    assert_eq!(documents.len(), 1, "{documents:#?}");
    assert_eq!(documents[0]["sha256"], json!(sha), "the stored bytes are the sent bytes");
    assert_eq!(documents[0]["size"], json!(content.len()));
    assert_eq!(documents[0]["file_name"], json!("scan.pdf"));

    // A retry of the same upload is answered with the entry already there, not added twice.
    let again = app.upload(&id, &secret, "kind=business_license", "scan.pdf", &content).await;
    assert_eq!(again.status, StatusCode::OK, "{:#}", again.body);
    assert_eq!((again.body["index"].clone(), again.body["repeated"].clone()), (json!(0), json!(true)));
    assert_eq!(app.stored(&id).await.data["documents"].as_array().unwrap().len(), 1);
    // The same file as another kind of document is a new entry.
    let other = app.upload(&id, &secret, "kind=id_card_front", "scan.pdf", &content).await;
    assert_eq!((other.status, other.body["index"].clone()), (StatusCode::CREATED, json!(1)), "{:#}", other.body);
}

// ------------------------------------------------------------------- connections

/// Slow-header and idle clients cannot keep anyone else out: headers must arrive within
/// the header-read timeout, idle connections close, and at the connection cap the
/// connection idle the longest makes room for a new one — `/healthz` keeps answering
/// within 100 ms while 200 such connections are open against a cap of 64.
async fn slow_and_idle_connections_do_not_keep_healthz_from_answering(db: TestDb) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = appealflow::http::server::ConnectionLimits {
        max_connections: 64,
        header_read_timeout: std::time::Duration::from_secs(1),
        idle_timeout: std::time::Duration::from_secs(2),
    };
    let app = spawn_with(db, HttpConfig { connections: limits, ..HttpConfig::default() }).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        held.push(slow);
        held.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let start = std::time::Instant::now();
        let r = fresh.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        slowest = slowest.max(start.elapsed());
    }
    assert!(slowest < std::time::Duration::from_millis(100), "healthz took {slowest:?} with 200 hostile connections");
    // Past the header-read timeout every held connection has been closed by the server.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut open = 0;
    for mut c in held {
        let mut buf = [0u8; 256];
        match tokio::time::timeout(std::time::Duration::from_millis(200), c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            // A timed-out slow request may be answered (408) before the close; read on.
            Ok(Ok(_)) => {
                if !matches!(
                    tokio::time::timeout(std::time::Duration::from_millis(200), c.read(&mut buf)).await,
                    Ok(Ok(0)) | Ok(Err(_))
                ) {
                    open += 1;
                }
            }
            Err(_) => open += 1,
        }
    }
    assert_eq!(open, 0, "every slow or idle connection was closed");
}

// ------------------------------------------------------------------------- trust boundary

/// A client whose requests come from `ip` (any 127/8 address is this machine).
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder().local_address(std::net::IpAddr::from(ip)).build().expect("client")
}

impl App {
    async fn progress_from(&self, client: &reqwest::Client, ticket: &str, phone: &str) -> Answer {
        self.send(client.post(self.url("/v1/progress")).json(&json!({ "ticket": ticket, "phone": phone }))).await
    }

    /// Files in the blob store: stored blobs and staged uploads.
    fn blob_files(&self) -> (usize, usize) {
        let count = |dir: PathBuf| -> usize {
            let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
            entries
                .map(|e| e.unwrap().path())
                .map(|p| if p.is_dir() { std::fs::read_dir(p).unwrap().count() } else { 1 })
                .sum()
        };
        (count(self._blobs.path().join("sha256")), count(self._blobs.path().join("staging")))
    }

    fn janitor(&self, config: appealflow::app::janitor::JanitorConfig) -> appealflow::app::janitor::Janitor {
        appealflow::app::janitor::Janitor::new(self.state.engine().clone(), self.state.intake.blobs().clone(), config)
    }

    async fn submitted_ticket(&self) -> String {
        let (id, secret) = self.ready_draft().await;
        let a = self.submit(&id, &secret, None).await;
        assert_eq!(a.status, StatusCode::CREATED, "{:#}", a.body);
        a.body["ticket"].as_str().unwrap().to_string()
    }
}

fn hostile(name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hostile").join(name)).expect("hostile file")
}

/// Every file of tests/hostile, uploaded as an applicant would: refused (422) with a
/// reason naming the document and what is wrong; the draft unchanged; no file kept,
/// staged or stored.
async fn every_hostile_file_is_refused_with_its_reason_and_leaves_nothing_behind(db: TestDb) {
    let app = spawn(db).await;
    let (id, secret) = app.create_draft(&enterprise_fields()).await;
    let corpus = [
        ("polyglot-jpeg-zip.jpg", "carries other data after its end"),
        ("png-with-html-after-end.png", "carries other data after its end"),
        ("html-in-jpeg-header.hta", "does not decode completely"),
        ("script.svg.jpg", "is not a JPEG, PNG or PDF"),
        ("page.html.png", "is not a JPEG, PNG or PDF"),
        ("truncated.jpg", "does not decode completely"),
        ("truncated.png", "does not decode completely"),
        ("truncated.pdf", "cannot be read"),
        ("mislabelled-pdf.jpg", "named as a JPEG but its content is a PDF"),
        ("png-bomb-60000x60000.png", "60000×60000 pixels"),
        ("openaction-javascript.pdf", "carries JavaScript"),
        ("names-javascript.pdf", "carries JavaScript"),
        ("page-annotation-javascript.pdf", "carries JavaScript"),
        ("launch-action.pdf", "carries a launch action"),
        ("embedded-file.pdf", "carries an embedded file"),
        ("deeply-nested.pdf", "cannot be read"),
        ("deeply-nested-object-stream.pdf", "cannot be read"),
        ("nested-behind-a-comment.pdf", "cannot be read"),
    ];
    let listed: std::collections::BTreeSet<String> =
        std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hostile"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "README.md")
            .collect();
    assert_eq!(listed, corpus.iter().map(|(n, _)| n.to_string()).collect(), "every file of the corpus is tried");
    for (name, why) in corpus {
        let a = app.upload(&id, &secret, "kind=supplementary", name, &hostile(name)).await;
        a.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
        assert_eq!(a.body["errors"][0]["field"], "file", "{name}: {:#}", a.body);
        let rule = a.body["errors"][0]["rule"].as_str().unwrap();
        assert!(rule.starts_with("supplementary: "), "{name}: {rule}");
        assert!(rule.contains(why), "{name}: {rule}");
    }
    assert_eq!(app.stored(&id).await.data["documents"], json!([]));
    assert_eq!(app.blob_files(), (0, 0), "nothing refused is kept, staged or stored");
    let health = app.send(app.http.get(app.url("/healthz"))).await;
    assert_eq!(health.status, StatusCode::OK, "the server outlived every file");
    // A real document still goes in.
    let ok = app.upload(&id, &secret, "kind=supplementary", "note.pdf", &sample::pdf("a plain page")).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{:#}", ok.body);
    assert_eq!(app.blob_files(), (1, 0));
}

async fn documents_are_limited_per_draft_per_kind_and_in_bytes_and_unreferenced_files_are_collected(db: TestDb) {
    let limits = DocumentLimits { max_per_draft: 4, max_per_kind: 2, max_draft_bytes: 3_000, ..Default::default() };
    let config = HttpConfig { face_secret: Some(FACE_SECRET.to_vec()), ..HttpConfig::default() };
    let app = spawn_limited(db, config, limits).await;
    let (id, secret) = app.create_draft(&enterprise_fields()).await;
    let sup = |tag: &str| sample::pdf(tag);
    for tag in ["first note", "second note"] {
        let a = app.upload(&id, &secret, "kind=supplementary", "note.pdf", &sup(tag)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{:#}", a.body);
    }
    // A third of one kind.
    let a = app.upload(&id, &secret, "kind=supplementary", "note.pdf", &sup("third note")).await;
    a.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    assert_eq!(a.body["errors"][0]["field"], "documents");
    assert!(a.detail().contains("supplementary: a draft holds at most 2 of this kind"), "{}", a.detail());
    for (query, file) in [("kind=business_license", "licence.jpg"), ("kind=enterprise_appeal_letter", "letter.pdf")] {
        let a = app.upload(&id, &secret, query, file, &example_document(file)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{:#}", a.body);
    }
    // A fifth document: refused before its bytes are read.
    let a = app.upload(&id, &secret, "kind=proof_of_payment", "receipt.png", &example_document("receipt.png")).await;
    a.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    assert!(a.detail().contains("a draft holds at most 4 documents"), "{}", a.detail());
    // Room for one more, but not for its bytes.
    let removed = app
        .send(app.http.delete(app.url(&format!("/v1/drafts/{id}/documents/0"))).header("x-draft-secret", &secret))
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{:#}", removed.body);
    let a = app.upload(&id, &secret, "kind=proof_of_payment", "receipt.png", &example_document("receipt.png")).await;
    a.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
    assert!(a.detail().contains("a draft's documents add up to at most"), "{}", a.detail());
    let kept = app.stored(&id).await.data["documents"].as_array().unwrap().clone();
    assert_eq!(kept.len(), 3, "{kept:#?}");
    // Refused uploads kept no file; the removed document's file waits for the janitor.
    assert_eq!(app.blob_files(), (4, 0));

    // The refused and removed uploads' files are collected; the draft's three stay.
    let (stored, staged) = app.blob_files();
    assert_eq!(staged, 0);
    assert!(stored > 3, "{stored} files before the janitor");
    let janitor =
        app.janitor(appealflow::app::janitor::JanitorConfig { blob_grace: Duration::ZERO, ..Default::default() });
    let young = app.janitor(appealflow::app::janitor::JanitorConfig::default()).run_once().await.unwrap();
    assert_eq!(young.blobs_removed, 0, "files younger than the grace period are kept: {young:?}");
    let cleaned = janitor.run_once().await.unwrap();
    assert_eq!(cleaned.blobs_removed as usize, stored - 3, "{cleaned:?}");
    assert_eq!(app.blob_files(), (3, 0));
    for doc in &kept {
        assert!(app.state.intake.blobs().exists(doc["sha256"].as_str().unwrap()).await.unwrap());
    }
    // An unsubmitted draft expires after its time to live, and its files with it; a
    // submitted one stays.
    let ticket = app.submitted_ticket().await;
    app.clock.advance(chrono::Duration::days(8));
    let cleaned = janitor.run_once().await.unwrap();
    assert_eq!(cleaned.drafts_expired, 1, "{cleaned:?}");
    assert!(app.db.store.draft(&id).await.unwrap().is_none());
    // Its files go at the next pass (references are read before drafts expire, so a
    // draft submitted meanwhile never loses its files).
    assert_eq!(app.blob_files().0, 4, "the expired draft's own note is still there");
    assert_eq!(janitor.run_once().await.unwrap().blobs_removed, 1);
    assert_eq!(app.blob_files().0, 3, "the submitted appeal's documents stay");
    assert_eq!(app.draft_count().await, 1);
    let data = app.appeal_data(&ticket).await;
    for doc in &data.draft.documents {
        assert!(app.state.intake.blobs().exists(doc.sha256.as_deref().unwrap()).await.unwrap());
    }
}

/// Mann–Whitney U statistic of `a` against `b`, as a z-score (normal approximation).
fn mann_whitney_z(a: &[f64], b: &[f64]) -> f64 {
    let mut u = 0.0;
    for x in a {
        for y in b {
            u += if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            };
        }
    }
    let (n, m) = (a.len() as f64, b.len() as f64);
    (u - n * m / 2.0) / (n * m * (n + m + 1.0) / 12.0).sqrt()
}

/// 120 queries of each kind, interleaved: an unknown ticket, a wrong phone for a real
/// ticket and a malformed ticket cannot be told apart by time (each pair's Mann–Whitney
/// |z| < 4.5; before, the unknown ticket answered measurably sooner).
async fn progress_takes_the_same_time_for_an_unknown_ticket_a_wrong_phone_and_a_malformed_ticket(db: TestDb) {
    use appealflow::app::limits::{Budget, ProgressPolicy};
    let many = Budget::per(100_000, Duration::from_secs(3600));
    let config = HttpConfig {
        progress_per_minute: 100_000,
        progress_policy: ProgressPolicy { per_client_failures: many, per_ticket_failures: many },
        ..HttpConfig::default()
    };
    let app = spawn_with(db, HttpConfig { face_secret: Some(FACE_SECRET.to_vec()), ..config }).await;
    let ticket = app.submitted_ticket().await;
    let unknown = TicketNumber::generate().to_string();
    let kinds = [(unknown.as_str(), PHONE), (ticket.as_str(), "13700000000"), ("1234-abcd", PHONE)];
    let mut samples = [Vec::new(), Vec::new(), Vec::new()];
    let run = async {
        for _ in 0..5 {
            for (t, p) in kinds {
                app.progress(t, p).await;
            }
        }
        for _ in 0..120 {
            for (i, (t, p)) in kinds.iter().enumerate() {
                let started = Instant::now();
                let a = app.progress(t, p).await;
                samples[i].push(started.elapsed().as_secs_f64());
                a.assert_problem(StatusCode::NOT_FOUND, "not-found");
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), run).await.expect("bounded in time");
    let floor = HttpConfig::default().progress_floor.as_secs_f64();
    for (i, s) in samples.iter().enumerate() {
        assert!(s.iter().all(|t| *t >= floor), "kind {i}: every wrong answer waits for the floor");
    }
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        let z = mann_whitney_z(&samples[a], &samples[b]);
        assert!(z.abs() < 4.5, "kinds {a} and {b} differ in time: z = {z:.2}");
    }
}

async fn guesses_from_elsewhere_never_lock_the_owner_out_and_stay_bounded_per_ticket_across_processes(db: TestDb) {
    use appealflow::app::limits::{Budget, ProgressPolicy};
    let policy = ProgressPolicy {
        per_client_failures: Budget::per(5, Duration::from_secs(900)),
        per_ticket_failures: Budget::per(8, Duration::from_secs(86_400)),
    };
    let config = HttpConfig {
        face_secret: Some(FACE_SECRET.to_vec()),
        progress_per_minute: 1_000,
        progress_policy: policy,
        progress_floor: Duration::ZERO,
        ..HttpConfig::default()
    };
    let second_db = db.reopen().await;
    let a = spawn_with(db, config.clone()).await;
    let b = spawn_with(second_db, config).await;
    let ticket = a.submitted_ticket().await;
    let (attacker, owner) = (client_from([127, 0, 0, 2]), client_from([127, 0, 0, 3]));

    // Ten wrong guesses from one address (split over two processes): the fifth is the
    // last answered, then that address is refused for this ticket...
    let mut answers = Vec::new();
    for i in 0..10 {
        let app = if i % 2 == 0 { &a } else { &b };
        answers.push(app.progress_from(&attacker, &ticket, "13700000000").await.status);
    }
    assert_eq!(answers[..5], [StatusCode::NOT_FOUND; 5], "{answers:?}");
    assert_eq!(answers[5..], [StatusCode::TOO_MANY_REQUESTS; 5], "{answers:?}");
    // ...while the owner, from their own address, is answered on either process.
    assert_eq!(a.progress_from(&owner, &ticket, PHONE).await.status, StatusCode::OK);
    assert_eq!(b.progress_from(&owner, &ticket, PHONE).await.status, StatusCode::OK);

    // Once the ticket has had its day's wrong answers, each address gets one.
    for last in 4..=6u8 {
        let client = client_from([127, 0, 0, last]);
        assert_eq!(b.progress_from(&client, &ticket, "13700000001").await.status, StatusCode::NOT_FOUND);
    }
    let client = client_from([127, 0, 0, 7]);
    assert_eq!(a.progress_from(&client, &ticket, "13700000002").await.status, StatusCode::NOT_FOUND);
    let again = a.progress_from(&client, &ticket, "13700000003").await;
    again.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate-limited");
    assert!(again.retry_after.is_some());
    // Only the owner's own typo, while the ticket is under guessing, holds the owner
    // off (for the rest of the 15-minute window, not for the day).
    assert_eq!(a.progress_from(&owner, &ticket, "13700000004").await.status, StatusCode::NOT_FOUND);
    let held = a.progress_from(&owner, &ticket, PHONE).await;
    held.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate-limited");
    let retry: u64 = held.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    a.clock.advance(chrono::Duration::minutes(15));
    assert_eq!(a.progress_from(&owner, &ticket, PHONE).await.status, StatusCode::OK);
    // The refusals are per ticket: the same address asking about another is answered.
    let other = TicketNumber::generate().to_string();
    b.progress_from(&attacker, &other, PHONE).await.assert_problem(StatusCode::NOT_FOUND, "not-found");
}

async fn drafts_per_client_are_limited_across_processes(db: TestDb) {
    let config = HttpConfig { drafts_per_hour: 3, ..HttpConfig::default() };
    let second_db = db.reopen().await;
    let a = spawn_with(db, config.clone()).await;
    let b = spawn_with(second_db, config).await;
    let (one, two) = (client_from([127, 0, 0, 2]), client_from([127, 0, 0, 3]));
    async fn create(app: &App, client: &reqwest::Client) -> Answer {
        app.send(client.post(app.url("/v1/drafts")).json(&enterprise_fields())).await
    }
    for app in [&a, &b, &a] {
        assert_eq!(create(app, &one).await.status, StatusCode::CREATED);
    }
    let refused = create(&b, &one).await;
    refused.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate-limited");
    let retry: u64 = refused.retry_after.as_deref().expect("Retry-After").parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(a.draft_count().await, 3, "the refused request stored nothing");
    assert_eq!(create(&a, &two).await.status, StatusCode::CREATED, "another client has its own budget");
    // The next hour grants a new budget.
    a.clock.advance(chrono::Duration::hours(1));
    assert_eq!(create(&a, &one).await.status, StatusCode::CREATED);
}

async fn metrics_are_for_operators_and_their_gauges_are_cached(db: TestDb) {
    use appealflow::app::access::create_token;
    let config = HttpConfig {
        face_secret: Some(FACE_SECRET.to_vec()),
        metrics_token: Some("metrics-scraper-token".into()),
        ..HttpConfig::default()
    };
    let app = spawn_with(db, config).await;
    let now = app.clock.now();
    let (admin, _) = create_token(app.db.store.as_ref(), Role::Admin, "ada", None, now).await.unwrap();
    let (reviewer, _) = create_token(app.db.store.as_ref(), Role::Reviewer, "ann", None, now).await.unwrap();
    let scrape = |token: Option<&str>| {
        let mut rq = app.http.get(app.url("/metrics"));
        if let Some(t) = token {
            rq = rq.bearer_auth(t);
        }
        app.send(rq)
    };
    scrape(None).await.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    scrape(Some("not-a-token")).await.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    scrape(Some(&reviewer)).await.assert_problem(StatusCode::FORBIDDEN, "forbidden");
    let first = scrape(Some("metrics-scraper-token")).await;
    assert_eq!(first.status, StatusCode::OK);
    let submitted = |a: &Answer| {
        a.body
            .as_str()
            .unwrap()
            .lines()
            .find(|l| l.starts_with("appealflow_appeals{state=\"submitted\"}"))
            .unwrap()
            .to_string()
    };
    assert_eq!(submitted(&first), "appealflow_appeals{state=\"submitted\"} 0");
    // Computed at most every few seconds: a new appeal shows only once the cache is old.
    app.submitted_ticket().await;
    let cached = scrape(Some(&admin)).await;
    assert_eq!(cached.status, StatusCode::OK);
    assert_eq!(submitted(&cached), "appealflow_appeals{state=\"submitted\"} 0");
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    assert_eq!(submitted(&scrape(Some(&admin)).await), "appealflow_appeals{state=\"submitted\"} 1");

    // The HTTP metrics count this server's requests (each server counts its own): the
    // scrapes above, the 401s and 403 among them, and the submission's requests.
    let text = scrape(Some(&admin)).await.body.as_str().unwrap().to_string();
    let value = |name: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("{name} not in the exposition:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let requests = value("appealflow_http_requests_total");
    assert!(requests >= 10.0, "{requests} requests counted:\n{text}");
    assert_eq!(value("appealflow_http_server_errors_total"), 0.0);
    assert_eq!(value("appealflow_http_request_duration_seconds_count"), requests);
    assert!(text.contains("# TYPE appealflow_http_request_duration_seconds histogram"), "{text}");
    assert!(text.contains("appealflow_http_request_duration_seconds_bucket{le=\"0.005\"}"), "{text}");

    // The separate listener serves them without credentials.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, appealflow::http::metrics_router(app.state.clone())).await });
    let open = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
    assert_eq!(open.status(), StatusCode::OK);
    assert!(open.text().await.unwrap().contains("appealflow_appeals{state=\"submitted\"} 1"));
    let other = reqwest::get(format!("http://{addr}/v1/queue")).await.unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND, "only /metrics is on the metrics listener");
}

async fn non_finite_numbers_and_near_json_content_types_are_refused_by_name(db: TestDb) {
    let app = spawn(db).await;
    let (id, secret) = app.create_draft(&enterprise_fields()).await;
    for value in ["NaN", "inf", "-inf", "1e309", "101", "-1"] {
        let query = format!("kind=asset_disposal_certificate&signatory_share_percent={value}");
        let a = app.upload(&id, &secret, &query, "id.jpg", &sample::jpeg("shareholder")).await;
        a.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
        assert_eq!(a.body["errors"][0]["field"], "signatory_share_percent", "{value}: {:#}", a.body);
    }
    assert_eq!(app.stored(&id).await.data["documents"], json!([]));
    assert_eq!(app.blob_files(), (0, 0));
    let before = app.draft_count().await;
    for content_type in ["application/jsonx", "application/json-patch+json", "text/json", "application/x-json"] {
        let a = app.post_raw("/v1/drafts", None, content_type, enterprise_fields().to_string().into_bytes()).await;
        a.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input");
        assert_eq!(a.body["errors"][0]["field"], "content-type", "{content_type}");
    }
    let ok = app
        .post_raw("/v1/drafts", None, "application/json; charset=utf-8", enterprise_fields().to_string().into_bytes())
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{:#}", ok.body);
    assert_eq!(app.draft_count().await, before + 1);
}

async fn the_submission_history_keeps_the_providers_facial_recognition_result(db: TestDb) {
    let app = spawn(db).await;
    let ticket = app.submitted_ticket().await;
    let record = app.db.store.appeal_by_ticket(&TicketNumber::parse(&ticket).unwrap()).await.unwrap().unwrap();
    let history = app.db.store.history(&record.id).await.unwrap();
    let face = &history[0].payload["facial_recognition"];
    assert_eq!(face["result"], "passed", "{:#}", history[0].payload);
    assert_eq!(face["provider"], "example-face");
    assert_eq!(face["reference"], "fr-1");
}

async fn every_answer_carries_a_request_id_kept_from_the_client_only_when_it_is_a_short_token(db: TestDb) {
    let app = spawn(db).await;
    let id_of = |given: Option<&'static str>, path: &'static str| {
        let mut rq = app.http.get(app.url(path));
        if let Some(id) = given {
            rq = rq.header("x-request-id", id);
        }
        async move {
            let response = rq.send().await.expect("answered");
            response.headers().get("x-request-id").expect("a request id").to_str().unwrap().to_string()
        }
    };
    // Kept when usable, on answers and problems alike.
    assert_eq!(id_of(Some("trace-42-abc"), "/healthz").await, "trace-42-abc");
    assert_eq!(id_of(Some("trace-43"), "/no/such/route").await, "trace-43");
    // Made afresh when absent or unusable (too long, or characters that do not belong in a log).
    let made = id_of(None, "/healthz").await;
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
    assert_ne!(id_of(None, "/healthz").await, made, "each request gets its own");
    let long: &'static str = Box::leak("a".repeat(65).into_boxed_str());
    for unusable in [long, "two words", "line\tbreak", "quote\"d"] {
        let id = id_of(Some(unusable), "/healthz").await;
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{unusable:?} answered with {id:?}");
    }
}
