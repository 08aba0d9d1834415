//! `appealflow demo`: a guided tour. On a fresh SQLite database (temporary unless
//! `--database-url` is given) and a simulated clock, one appeal goes from submission
//! through a rejection, the resubmission window and approval to closed, with the review
//! SLA timer firing on the statutory calendar. Each step prints its time and state.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::CliError;
use crate::app;
use crate::domain::{Actor, AppealInput, AppealRequest, Role, TicketNumber};
use crate::engine::{Clock, CommandOutcome, Engine, ManualClock};
use crate::startup::{self, DEFAULT_WORKFLOW};
use crate::workflow::Fire;

struct Tour {
    engine: Engine,
    clock: Arc<ManualClock>,
    tz: Tz,
}

impl Tour {
    fn local(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.tz)
            .format("%a %Y-%m-%d %H:%M %:z")
            .to_string()
    }

    fn step(&self, what: &str, outcome: &CommandOutcome, note: &str) {
        println!(
            "{}  {:<28} -> {:<20} v{}  {}",
            self.local(self.clock.now()),
            what,
            format!(
                "{}{}",
                outcome.state,
                outcome
                    .outcome
                    .as_deref()
                    .map(|o| format!(" ({o})"))
                    .unwrap_or_default()
            ),
            outcome.version,
            note
        );
    }

    async fn fire(
        &self,
        ticket: &TicketNumber,
        transition: &str,
        actor: &Actor,
        reasons: &[&str],
    ) -> Result<CommandOutcome, CliError> {
        let mut cmd = Fire::new(transition);
        cmd.reasons = reasons.iter().map(|r| r.to_string()).collect();
        let outcome = self.engine.fire(ticket, &cmd, actor, None).await?;
        let by = format!("by {} ({})", actor.name, actor.role);
        let note = if reasons.is_empty() {
            by
        } else {
            format!("{by}: {}", reasons.join("; "))
        };
        self.step(transition, &outcome, &note);
        Ok(outcome)
    }

    /// Moves the clock to `at` and fires whatever timers fell due on the way.
    async fn advance_to(&self, at: DateTime<Utc>) -> Result<(), CliError> {
        loop {
            let next = self
                .engine
                .store()
                .due_timers(at, 1)
                .await?
                .into_iter()
                .next();
            let Some(timer) = next else { break };
            self.clock.set(timer.due_at.max(self.clock.now()));
            for run in self.engine.run_due_timers(100).await? {
                if let Some(o) = &run.result {
                    self.step(
                        &format!("timer {}", run.timer.name),
                        o,
                        &format!("fired: {}", o.transition),
                    );
                }
            }
        }
        self.clock.set(at);
        Ok(())
    }

    async fn timers_note(&self, ticket: &TicketNumber) -> Result<String, CliError> {
        let view = app::show(&self.engine, ticket).await?;
        let armed: Vec<String> = view
            .timers
            .iter()
            .filter(|t| t.status == "armed")
            .map(|t| {
                let due = DateTime::parse_from_rfc3339(&t.due_at)
                    .map(|d| self.local(d.with_timezone(&Utc)));
                format!(
                    "{} due {}",
                    t.name,
                    due.unwrap_or_else(|_| t.due_at.clone())
                )
            })
            .collect();
        Ok(armed.join("; "))
    }
}

pub async fn run(database_url: Option<&str>, workflows: &Path) -> Result<(), CliError> {
    let tmp = tempfile::tempdir()
        .map_err(|e| CliError::usage(format!("cannot create a temporary directory: {e}")))?;
    let url = database_url
        .map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}", tmp.path().join("demo.db").display()));
    let workflow = startup::load_workflow(workflows, DEFAULT_WORKFLOW)
        .map_err(|e| CliError::usage(e.to_string()))?;
    let tz = workflow.calendar.time_zone;
    // Thursday before the 2026 Mid-Autumn Festival holiday (Fri 25 - Sun 27 Sep).
    let start = DateTime::parse_from_rfc3339("2026-09-24T10:00:00+08:00")
        .expect("a valid instant")
        .with_timezone(&Utc);
    let clock = Arc::new(ManualClock::new(start));
    let store = startup::open_store(&url).await?;
    let tour = Tour {
        engine: Engine::new(store, Arc::new(workflow), clock.clone()),
        clock,
        tz,
    };

    println!("appealflow demo");
    println!("  database  {}", super::redact_url(&url));
    println!(
        "  workflow  {} v{} on calendar {} ({})",
        tour.engine.workflow().name(),
        tour.engine.workflow().def.workflow.version,
        tour.engine.workflow().calendar.name,
        tz
    );
    println!("  clock     simulated, starting {}", tour.local(start));
    println!();

    let request = AppealRequest::try_from(AppealInput {
        account: Some("acme-ops".into()),
        items: vec!["reset_password".into(), "detach_mfa".into()],
        contact_phone: Some("13812345678".into()),
        contact_email: Some("ops@acme.example".into()),
        supplementary_content: None,
    })
    .map_err(|errors| CliError::usage(format!("demo appeal is invalid: {errors:?}")))?;
    let applicant = Actor::new("applicant", Role::Applicant);
    let reviewer = Actor::new("li.wei", Role::Reviewer);
    let worker = Actor::system();

    let created = tour.engine.create(&request, &applicant, None).await?;
    let ticket = created.ticket.clone();
    tour.step(
        "submit",
        &created,
        &format!("ticket {ticket}; contact {}", request.contact_phone),
    );
    println!("{:>28} {}", "", tour.timers_note(&ticket).await?);

    // Nobody claims it over the holiday: the SLA warning fires at the start of the
    // last business day.
    tour.advance_to(start + Duration::days(6)).await?;
    tour.fire(&ticket, "claim", &reviewer, &[]).await?;
    tour.fire(
        &ticket,
        "reject",
        &reviewer,
        &["missing_documents: the stamped appeal letter is missing"],
    )
    .await?;
    tour.clock.advance(Duration::minutes(5));
    tour.fire(&ticket, "notice_delivered", &worker, &[]).await?;
    println!("{:>28} {}", "", tour.timers_note(&ticket).await?);

    tour.clock.advance(Duration::days(1));
    tour.fire(&ticket, "resubmit", &applicant, &[]).await?;
    println!("{:>28} {}", "", tour.timers_note(&ticket).await?);
    tour.clock.advance(Duration::hours(2));
    tour.fire(&ticket, "claim", &reviewer, &[]).await?;
    tour.clock.advance(Duration::minutes(20));
    tour.fire(&ticket, "approve", &reviewer, &[]).await?;
    tour.clock.advance(Duration::minutes(1));
    tour.fire(&ticket, "complete", &worker, &[]).await?;

    println!();
    let view = app::show(&tour.engine, &ticket).await?;
    println!(
        "history of {} ({} events):",
        view.ticket,
        view.history.len()
    );
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
    Ok(())
}
