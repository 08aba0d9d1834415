//! The progress query (ticket and contact phone, a right answer) through
//! `Intake::progress`, against its one statement run by hand on the same database (the
//! appeal by ticket with its history and timers as JSON, fetched in full). The rate
//! limiter's counters are the HTTP layer's and are left out of both.

use std::sync::Arc;
use std::time::Instant;

use appealflow::app::intake::LocalFiles;
use appealflow::domain::{AccountInput, IdHasher};
use appealflow::engine::{Clock, ManualClock};
use appealflow::startup::WorkConfig;

use super::{Row, common};

const KEY: &str = "bench-key-0123456789abcdef";
const APPEALS: usize = 20;

/// The statement `progress_rows` composes on each backend, written out.
const SQLITE: &str = "SELECT a.*,
  (SELECT json_group_array(json_object('seq', x.seq, 'transition', x.transition, 'from', x.from_state,
          'to', x.to_state, 'outcome', x.outcome, 'actor', x.actor, 'role', x.role, 'reasons', json(x.reasons),
          'payload', json(x.payload), 'at', x.at) ORDER BY x.seq)
   FROM appeal_events x WHERE x.appeal_id = a.id AND json_extract(a.data, '$.draft.contact_phone') = $2) AS history,
  (SELECT json_group_array(json_object('id', x.id, 'appeal_id', x.appeal_id, 'ticket', a.ticket, 'name', x.name,
          'generation', x.generation, 'due_at', x.due_at, 'status', x.status, 'armed_at', x.armed_at,
          'settled_at', x.settled_at) ORDER BY x.due_at, x.id)
   FROM timers x WHERE x.appeal_id = a.id AND json_extract(a.data, '$.draft.contact_phone') = $2) AS timers
 FROM appeals a WHERE a.ticket = $1";
const POSTGRES: &str = "SELECT a.*,
  (SELECT COALESCE(jsonb_agg(jsonb_build_object('seq', x.seq, 'transition', x.transition, 'from', x.from_state,
          'to', x.to_state, 'outcome', x.outcome, 'actor', x.actor, 'role', x.role, 'reasons', x.reasons,
          'payload', x.payload, 'at', x.at) ORDER BY x.seq), '[]'::jsonb)
   FROM appeal_events x WHERE x.appeal_id = a.id AND a.data #>> '{draft,contact_phone}' = $2) AS history,
  (SELECT COALESCE(jsonb_agg(jsonb_build_object('id', x.id, 'appeal_id', x.appeal_id, 'ticket', a.ticket,
          'name', x.name, 'generation', x.generation, 'due_at', x.due_at, 'status', x.status,
          'armed_at', x.armed_at, 'settled_at', x.settled_at) ORDER BY x.due_at, x.id), '[]'::jsonb)
   FROM timers x WHERE x.appeal_id = a.id AND a.data #>> '{draft,contact_phone}' = $2) AS timers
 FROM appeals a WHERE a.ticket = $1";

const PHONE: &str = "+8613812345678";

macro_rules! raw_query {
    ($pool:expr, $sql:expr, $ticket:expr) => {{
        let row = sqlx::query($sql).bind($ticket).bind(PHONE).fetch_one($pool).await.unwrap();
        let _: sqlx::types::Json<serde_json::Value> = sqlx::Row::get(&row, "history");
        let _: sqlx::types::Json<serde_json::Value> = sqlx::Row::get(&row, "timers");
    }};
}

pub async fn compare(backend: &'static str, db: &common::TestDb, n: usize) -> Row {
    let clock = Arc::new(ManualClock::new(common::monday_morning()));
    let blobs = tempfile::tempdir().unwrap();
    let app = common::app(db, clock.clone(), &WorkConfig::default(), Some(common::intake_config(blobs.path(), KEY)));
    let intake = app.intake().expect("built with intake").clone();
    let hasher = IdHasher::new(KEY.as_bytes()).unwrap();
    let mut accounts = Vec::new();
    for i in 0..APPEALS {
        let a: AccountInput = serde_json::from_value(serde_json::json!({
            "name": format!("progress{i}"), "verification": "individual",
            "verified_individual": {"name": "Wang Wu", "id_number": "31010419781203005X"}
        }))
        .unwrap();
        accounts.push(a.into_account("bench", &hasher).unwrap());
    }
    db.store.put_accounts(&accounts, clock.now()).await.unwrap();
    let examples = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let template: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(examples.join("draft-individual.json")).unwrap()).unwrap();
    let mut tickets = Vec::new();
    for i in 0..APPEALS {
        let mut draft = template.clone();
        draft["entry_point"]["account"] = serde_json::json!(format!("progress{i}"));
        let files = LocalFiles { base: examples.clone() };
        let out = intake.submit(serde_json::from_value(draft).unwrap(), &files, None).await.unwrap();
        tickets.push(out.ticket.as_str().to_string());
    }
    let ticket = |i: usize| tickets[i % APPEALS].as_str();

    let start = Instant::now();
    for i in 0..n {
        intake.progress(ticket(i), "13812345678").await.expect("a right answer");
    }
    let engine = n as f64 / start.elapsed().as_secs_f64();

    let raw = if db.url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let start = Instant::now();
        for i in 0..n {
            raw_query!(&pool, SQLITE, ticket(i));
        }
        n as f64 / start.elapsed().as_secs_f64()
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let start = Instant::now();
        for i in 0..n {
            raw_query!(&pool, POSTGRES, ticket(i));
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    row(backend, n, engine, raw)
}

fn row(backend: &'static str, n: usize, engine: f64, raw: f64) -> Row {
    Row::rates(backend, format!("progress query (right answer), {n} sequential"), engine, raw, "one statement")
}
