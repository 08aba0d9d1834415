//! `appealflow demo`: a guided tour. On a fresh SQLite database and document store
//! (temporary unless `--database-url` is given) and a simulated clock: an account
//! directory is loaded, an incomplete appeal is refused with its checklist, a complete
//! one is submitted, the review SLA warning fires on the statutory calendar, the appeal
//! is rejected, resubmitted within its window, approved — a high-risk approval (it
//! rotates an enterprise's secure phone), so the reviewer who approved it cannot confirm
//! it and a lead gives the second approval — and closed.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::CliError;
use crate::app::intake::{Intake, IntakeError, LocalFiles};
use crate::domain::draft::DraftInput;
use crate::domain::{AccountInput, Actor, Role, TicketNumber};
use crate::engine::{Clock, CommandOutcome, Engine, ManualClock};
use crate::jobs::{Running, WorkerSettings};
use crate::startup::{Application, DbOptions, IntakeConfig, Settings, WorkConfig};
use crate::workflow::Fire;

struct Tour {
    intake: Arc<Intake>,
    /// The production worker, on the simulated clock.
    worker: Running,
    clock: Arc<ManualClock>,
    tz: Tz,
    /// Notifications already printed.
    shown: std::sync::atomic::AtomicI64,
    ticket: std::sync::Mutex<Option<TicketNumber>>,
}

const ACCOUNTS: &str = r#"[
  {"name": "acme-ops", "verification": "enterprise", "enterprise_name": "Acme Trading Co., Ltd.",
   "enterprise_status": "active",
   "legal_representative": {"name": "Zhang San", "id_number": "110101199003071233"},
   "associations": {"domains": ["acme.example"], "issued_invoices": true},
   "security": {"secure_phone": "13900001111", "security_email": "it@acme.example", "mfa_attached": true}}
]"#;

/// The demo's draft: an enterprise asking to reset its password and detach MFA.
fn draft(with_letter: bool, with_payment: bool) -> String {
    let mut docs = vec![r#"{"kind": "business_license", "file": "licence.jpg"}"#];
    if with_letter {
        docs.push(r#"{"kind": "enterprise_appeal_letter", "file": "letter.pdf", "stamped": true}"#);
    }
    if with_payment {
        docs.push(r#"{"kind": "proof_of_payment", "file": "receipt.png"}"#);
    }
    format!(
        r#"{{
  "entry_point": {{"kind": "forgot_username", "lookup": "domain", "value": "acme.example"}},
  "items": ["reset_password", "detach_mfa"],
  "scenario": "active",
  "operator": {{"name": "Li Si", "id_number": "440304198506152416",
               "facial_recognition": {{"result": "passed", "provider": "demo-face", "reference": "fr-0001"}}}},
  "contact_phone": "13812345678",
  "contact_email": "ops@acme.example",
  "documents": [{}]
}}"#,
        docs.join(", ")
    )
}

impl Tour {
    fn engine(&self) -> &Engine {
        self.intake.engine()
    }

    fn local(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.tz).format("%a %Y-%m-%d %H:%M %:z").to_string()
    }

    fn line(&self, what: &str, state: &str, note: &str) {
        println!("{}  {:<28} -> {:<20} {}", self.local(self.clock.now()), what, state, note);
    }

    fn step(&self, what: &str, outcome: &CommandOutcome, note: &str) {
        let state =
            format!("{}{}", outcome.state, outcome.outcome.as_deref().map(|o| format!(" ({o})")).unwrap_or_default());
        self.line(what, &state, &format!("v{}  {note}", outcome.version));
    }

    async fn fire(
        &self,
        ticket: &TicketNumber,
        transition: &str,
        actor: &Actor,
        reasons: &[&str],
    ) -> Result<(), CliError> {
        let mut cmd = Fire::new(transition);
        cmd.reasons = reasons.iter().map(|r| r.to_string()).collect();
        let outcome = self.engine().fire(ticket, &cmd, actor, None).await?;
        let by = format!("by {} ({})", actor.name, actor.role);
        let note = if reasons.is_empty() { by } else { format!("{by}: {}", reasons.join("; ")) };
        self.step(transition, &outcome, &note);
        Ok(())
    }

    /// Moves the clock to `at` as the worker would: each timer that falls due on the way
    /// fires at its own due instant, and the work it causes (notifications, account
    /// actions) is done; then prints what happened.
    async fn advance_to(&self, at: DateTime<Utc>) -> Result<(), CliError> {
        loop {
            let next = crate::app::admin::next_due_timer(self.engine(), at).await?;
            let step_to = next.as_ref().map_or(at, |t| t.due_at.max(self.clock.now()));
            let before = self.history_len().await?;
            self.worker.run_until(&self.clock, step_to, std::time::Duration::from_secs(120)).await.map_err(|e| {
                CliError { class: crate::engine::ErrorClass::Internal, message: format!("demo worker: {e}") }
            })?;
            self.print_new_events(before).await?;
            self.print_notifications().await?;
            if next.is_none() || step_to >= at {
                break;
            }
        }
        Ok(())
    }

    async fn history_len(&self) -> Result<usize, CliError> {
        let Some(t) = self.ticket.lock().expect("demo lock").clone() else { return Ok(0) };
        Ok(crate::app::history(self.engine(), &t).await?.len())
    }

    async fn print_new_events(&self, from: usize) -> Result<(), CliError> {
        let Some(t) = self.ticket.lock().expect("demo lock").clone() else { return Ok(()) };
        for e in crate::app::history(self.engine(), &t).await?.into_iter().skip(from) {
            let state = format!("{}{}", e.to, e.outcome.as_deref().map(|o| format!(" ({o})")).unwrap_or_default());
            println!(
                "{}  {:<28} -> {:<20} v{}  by the worker ({})",
                self.local(e.at),
                format!("worker: {}", e.transition),
                state,
                e.seq,
                e.actor
            );
        }
        Ok(())
    }

    /// Prints notifications recorded since the last call, as rendered.
    async fn print_notifications(&self) -> Result<(), CliError> {
        use std::sync::atomic::Ordering;
        let all = crate::app::admin::notifications(self.engine(), None, None).await?;
        for n in all.into_iter().filter(|n| n.id > self.shown.load(Ordering::SeqCst)) {
            self.shown.store(n.id, Ordering::SeqCst);
            let first = n.body.lines().next().unwrap_or("");
            println!("{:>30}{} {} to {} [{}]: {}", "", n.channel, n.template, n.recipient_masked, n.status, first);
        }
        Ok(())
    }

    /// The stop code in the latest "not you?" SMS: what the account holder reads.
    async fn stop_code(&self) -> Result<String, CliError> {
        let all = crate::app::admin::notifications(self.engine(), None, None).await?;
        let sms = all.iter().rev().find(|n| n.template == "change_pending" && n.channel == "sms");
        let body = sms.map(|n| n.body.as_str()).unwrap_or_default();
        let code = body
            .split(|c: char| !c.is_ascii_digit())
            .find(|run| run.len() == crate::workflow::cooling_off::STOP_CODE_DIGITS)
            .map(str::to_string);
        code.ok_or_else(|| CliError::usage("the demo's \"not you?\" SMS carries no stop code"))
    }

    async fn timers_note(&self, ticket: &TicketNumber) -> Result<(), CliError> {
        for t in crate::app::admin::timers(self.engine(), Some(ticket)).await? {
            if t.status == crate::store::TimerStatus::Armed {
                println!("{:>30}timer {} due {}", "", t.name, self.local(t.due_at));
            }
        }
        Ok(())
    }
}

fn write_documents(dir: &Path) -> Result<(), CliError> {
    use crate::domain::document::sample;
    let files = [
        ("licence.jpg", sample::jpeg("demo business licence scan")),
        ("letter.pdf", sample::pdf("demo appeal letter")),
        ("receipt.png", sample::png("demo payment receipt")),
    ];
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).map_err(|e| CliError::usage(format!("cannot write demo file: {e}")))?;
    }
    Ok(())
}

pub async fn run(database_url: Option<&str>, workflows: &Path, db: &DbOptions) -> Result<(), CliError> {
    let tmp = tempfile::tempdir().map_err(|e| CliError::usage(format!("cannot create a temporary directory: {e}")))?;
    let url = database_url
        .map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}", tmp.path().join("demo.db").display()));
    write_documents(tmp.path())?;
    // Thursday before the 2026 Mid-Autumn Festival holiday (Fri 25 - Sun 27 Sep).
    let start = DateTime::parse_from_rfc3339("2026-09-24T10:00:00+08:00").expect("a valid instant").with_timezone(&Utc);
    let clock = Arc::new(ManualClock::new(start));
    let config = IntakeConfig {
        blob_dir: tmp.path().join("blobs"),
        id_hash_key: Some(format!("demo-only-key-{}", uuid::Uuid::new_v4())),
        limits: Default::default(),
        pdf_inspector: std::env::current_exe().ok(),
    };
    let settings = Settings {
        db: db.clone(),
        work: WorkConfig { lead_emails: vec!["reviewer-leads@acme.example".into()], ..Default::default() },
        ..Settings::new(url.clone(), workflows)
    }
    .with_intake(config.clone());
    let app = Application::build(&settings, clock.clone()).await?;
    let engine = app.engine.clone();
    let intake = app.intake().expect("built with intake settings").clone();
    let worker_settings = WorkerSettings { max_attempts: db.max_attempts, ..WorkerSettings::simulation() };
    let worker = Running::start(app.runtime(worker_settings));
    let tz = engine.workflow().calendar.time_zone;
    let names = engine.workflow().bindings().clone();
    let tour = Tour { intake, worker, clock, tz, shown: Default::default(), ticket: Default::default() };
    let files = LocalFiles { base: tmp.path().to_path_buf() };

    println!("appealflow demo");
    println!("  database  {}", super::redact_url(&url));
    println!("  documents {}", config.blob_dir.display());
    println!(
        "  workflow  {} v{} on calendar {} ({})",
        engine.workflow().name(),
        engine.workflow().def.workflow.version,
        engine.workflow().calendar.name,
        tz
    );
    println!("  clock     simulated, starting {}", tour.local(start));
    println!();

    let accounts: Vec<AccountInput> = crate::app::parse_json(ACCOUNTS)?;
    let accounts = accounts
        .into_iter()
        .map(|a| a.into_account("demo", tour.intake.hasher()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::usage(format!("demo accounts: {e:?}")))?;
    crate::app::admin::import_accounts(&engine, &accounts).await?;
    println!("account directory: acme-ops (enterprise, active; located by domain acme.example)");
    println!();

    // 1. An incomplete draft is refused, with its checklist.
    let incomplete: DraftInput = crate::app::parse_json(&draft(false, false))?;
    println!("checklist of an incomplete draft (no appeal letter, no proof of payment):");
    let checklist = tour.intake.checklist(incomplete.clone()).await?;
    for d in &checklist.documents {
        let kinds: Vec<&str> = d.documents.iter().map(|k| k.as_str()).collect();
        println!("  [{:<10}] {:<34} {:?}", d.status.to_string(), kinds.join(" or "), d.need);
    }
    match tour.intake.submit(incomplete, &files, None).await {
        Err(e @ IntakeError::Incomplete(_)) => println!("submission refused: {e}"),
        Err(e) => return Err(e.into()),
        Ok(_) => return Err(CliError::usage("the demo's incomplete draft was accepted")),
    }
    println!();

    // 2. The complete draft is submitted.
    let complete: DraftInput = crate::app::parse_json(&draft(true, true))?;
    let submitted = tour.intake.submit(complete, &files, None).await?;
    let ticket = submitted.ticket.clone();
    *tour.ticket.lock().expect("demo lock") = Some(ticket.clone());
    tour.line(&names.submit, &submitted.state, &format!("v{}  ticket {ticket}", submitted.version));
    tour.timers_note(&ticket).await?;
    tour.advance_to(start).await?;

    // Nobody claims it over the holiday: the SLA warning fires at the start of the
    // last business day.
    let applicant = Actor::new("applicant", Role::Applicant);
    let reviewer = Actor::new("li.wei", Role::Reviewer);
    tour.advance_to(start + Duration::days(6)).await?;
    tour.fire(&ticket, &names.claim, &reviewer, &[]).await?;
    tour.fire(&ticket, &names.reject, &reviewer, &["documents_not_meeting_requirements: enterprise_appeal_letter"])
        .await?;
    // The worker delivers the rejection notice; its delivery opens the window.
    tour.advance_to(tour.clock.now() + Duration::minutes(1)).await?;
    tour.timers_note(&ticket).await?;

    tour.clock.advance(Duration::days(1));
    std::fs::write(
        tmp.path().join("letter-v2.pdf"),
        crate::domain::document::sample::pdf("demo appeal letter stamped again"),
    )
    .map_err(|e| CliError::usage(format!("cannot write demo file: {e}")))?;
    let corrected: DraftInput = crate::app::parse_json(&draft(true, true).replace("letter.pdf", "letter-v2.pdf"))?;
    let out = tour.intake.resubmit(&ticket, corrected, &files, None).await?;
    tour.step(&names.resubmit, &out, &format!("by {} (a new appeal letter; the old one is kept)", applicant.name));
    tour.timers_note(&ticket).await?;
    tour.advance_to(tour.clock.now()).await?;
    tour.clock.advance(Duration::hours(2));
    tour.fire(&ticket, &names.claim, &reviewer, &[]).await?;
    tour.clock.advance(Duration::minutes(20));
    tour.fire(&ticket, &names.approve, &reviewer, &[]).await?;
    // Four-eyes: the approval rotates an enterprise account's secure phone, so it waits
    // for a second staff member; the first approver is refused.
    if let Some(confirm) = names.confirm_approval.as_deref()
        && engine.workflow().awaits_second_approval(&crate::app::review::load(&engine, &ticket).await?.state)
    {
        tour.advance_to(tour.clock.now() + Duration::minutes(1)).await?;
        match engine.fire(&ticket, &Fire::new(confirm), &reviewer, None).await {
            Err(e) => println!("{:>30}{confirm} by {} refused: {e}", "", reviewer.name),
            Ok(_) => return Err(CliError::usage("the first approver gave the second approval too")),
        }
        tour.clock.advance(Duration::minutes(30));
        tour.fire(&ticket, confirm, &Actor::new("chen.jing", Role::Lead), &[]).await?;
    }
    // Cooling-off: the approval rotates the secure phone, so nothing applies for 24 hours;
    // a "not you?" notice with a one-time stop code goes to the account's current secure
    // phone and security email. Suppose its holder did not ask: they stop the change.
    if names.stop_change.is_some()
        && engine.workflow().cools_off(&crate::app::review::load(&engine, &ticket).await?.state)
    {
        tour.advance_to(tour.clock.now() + Duration::minutes(1)).await?;
        match tour.intake.stop_change(ticket.as_str(), "00000000").await {
            Err(e) => println!("{:>30}a wrong stop code is refused: {e}", ""),
            Ok(_) => return Err(CliError::usage("a wrong stop code stopped the change")),
        }
        let code = tour.stop_code().await?;
        tour.clock.advance(Duration::hours(3));
        let stopped = tour.intake.stop_change(ticket.as_str(), &code).await?;
        tour.line("stop_change", &stopped.state, "by the account holder, with the code from the notice: disputed");
        tour.advance_to(tour.clock.now() + Duration::minutes(1)).await?;
        // The security team calls the applicant back and approves again: a disputed
        // appeal needs a second approver — not chen.jing, who approved the stopped change
        // — and the change waits out a new cooling-off.
        tour.clock.advance(Duration::hours(2));
        tour.fire(&ticket, &names.claim, &reviewer, &[]).await?;
        tour.fire(&ticket, &names.approve, &reviewer, &[]).await?;
        if let Some(confirm) = names.confirm_approval.as_deref() {
            match engine.fire(&ticket, &Fire::new(confirm), &Actor::new("chen.jing", Role::Lead), None).await {
                Err(e) => println!("{:>30}{confirm} by chen.jing refused: {e}", ""),
                Ok(_) => return Err(CliError::usage("the stopped change's approver confirmed it again")),
            }
            tour.fire(&ticket, confirm, &Actor::new("zhou.min", Role::Lead), &[]).await?;
        }
        tour.advance_to(tour.clock.now() + Duration::minutes(1)).await?;
        tour.timers_note(&ticket).await?;
    }
    // Nobody stops it this time. When the cooling-off ends, the worker applies the
    // post-approval actions (each once, by its key), sends the security notice to the
    // previous phone and email, and closes the appeal.
    tour.advance_to(tour.clock.now() + Duration::hours(25)).await?;
    for a in crate::app::admin::actions(&engine, Some(&ticket), false).await? {
        println!("{:>30}action {} {} (key {})", "", a.action, a.status, a.idempotency_key);
    }
    let account = crate::app::admin::account(&engine, "acme-ops").await?.ok_or_else(|| CliError::usage("vanished"))?;
    println!(
        "{:>30}account acme-ops now: secure phone {}, MFA attached: {}",
        "",
        account.security.secure_phone.map(|p| p.masked()).unwrap_or_default(),
        account.security.mfa_attached
    );

    println!();
    let progress = tour.intake.progress(ticket.as_str(), "13812345678").await?;
    println!(
        "progress query (ticket + contact phone): stage {} ({})",
        progress.stage,
        progress.outcome.unwrap_or_default()
    );
    let view = crate::app::show(engine.as_ref(), &ticket).await?;
    println!("history of {} ({} events):", view.ticket, view.history.len());
    for h in &view.history {
        println!(
            "  {:>2}  {:<18} {:<20} -> {:<20} {} ({})",
            h.seq,
            h.transition,
            h.from.as_deref().unwrap_or("(new)"),
            h.to,
            h.actor,
            h.role
        );
    }
    tour.worker
        .stop()
        .await
        .map_err(|e| CliError { class: crate::engine::ErrorClass::Internal, message: e.to_string() })?;
    Ok(())
}
