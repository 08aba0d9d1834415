//! The progress query (ticket + contact phone), built to do the same work whatever the
//! input: see `Intake::progress`.

use serde::Serialize;

use super::{AppealData, EntityChange, Intake, IntakeError};
use crate::app::access::same_hash;
use crate::domain::draft::DraftInput;
use crate::domain::rejection::in_words;
use crate::domain::{Locale, PhoneNumber, TicketNumber};
use crate::store::{AppealRecord, EventRecord, TimerStatus};
use crate::workflow::Workflow;

/// The stage a progress query reports. Times are RFC 3339 in the workflow's time zone
/// (`time_zone`), with its offset: `2026-12-07T23:59:59+08:00`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Progress {
    pub ticket: String,
    /// received, under_review, approved, rejected, closed
    pub stage: String,
    pub outcome: Option<String>,
    /// The latest rejection's reasons as codes (`code` or `code: detail`), for machines:
    /// kept whatever the stage since (resubmitted, closed when the window expired) until a
    /// later approval; empty if the appeal was never rejected.
    pub reasons: Vec<String>,
    /// The same reasons in words, in the appeal's language (the draft's `locale`), naming
    /// each document.
    pub reasons_in_words: Vec<String>,
    /// While rejected: until when the applicant may add documents and continue (null
    /// while the rejection notice is still being delivered).
    pub continue_until: Option<String>,
    pub received_at: String,
    pub updated_at: String,
    /// While the review SLA runs: when the review is due.
    pub review_due_at: Option<String>,
    /// A deregistered enterprise's appeal: the entity-change request must be filed from
    /// the new company's account (and linked by the reviewer) before it can be approved.
    pub entity_change_required: bool,
    /// The IANA time zone the times are given in: the workflow calendar's
    /// (`Asia/Shanghai` for cn-mainland).
    pub time_zone: String,
}

impl Intake {
    /// Progress by ticket number and contact phone. An unknown ticket and a wrong phone
    /// give the same answer, so the query cannot be used to find out either.
    pub async fn progress(&self, ticket: &str, phone: &str) -> Result<Progress, IntakeError> {
        // The same work whatever the input, so timing tells nothing of the phone: one
        // statement reads the appeal, and its history and timers only for the right
        // phone; a malformed ticket is looked up as the decoy's (never stored); a record
        // is parsed and a phone compared every time (the decoy's when nothing was found).
        let decoy = self.decoy();
        let ticket = TicketNumber::parse(ticket).ok();
        let phone = PhoneNumber::parse(phone).ok();
        let lookup = ticket.as_ref().unwrap_or(&decoy.ticket);
        let given = phone.as_ref().map_or("", |p| p.as_e164());
        let found = self.engine.store().progress_rows(lookup, given).await?.filter(|_| ticket.is_some());
        let record = found.as_ref().map_or(decoy, |r| &r.appeal);
        let data = AppealData::from_record(record)?;
        let stored = data.draft.contact_phone.as_ref().map_or("", |p| p.as_e164());
        // Compared without an early exit: timing does not reveal a partial match.
        let phone_matches = same_hash(stored, given) & found.is_some() & phone.is_some();
        let (history, timers) = found.as_ref().map_or((&[][..], &[][..]), |r| (&r.history[..], &r.timers[..]));
        let locale = data.draft.language();
        let progress =
            progress_of(self.engine.workflow(), record, data.entity_change.required, locale, history, timers);
        if phone_matches { Ok(progress) } else { Err(IntakeError::NoMatch) }
    }

    /// A well-formed appeal record that is not stored: what a malformed ticket is looked
    /// up as, and what an unknown ticket's answer parses instead of a real record.
    fn decoy(&self) -> &AppealRecord {
        self.decoy.get_or_init(|| {
            let input: DraftInput = serde_json::from_str(include_str!("../../../examples/http-draft.json"))
                .expect("the example draft parses");
            let draft = input.parse(&self.hasher).expect("the example draft is valid");
            let data = AppealData {
                draft,
                case: Some("decoy".into()),
                changes_secure_phone: true,
                entity_change: EntityChange::default(),
                previous_documents: Vec::new(),
                verification: None,
                first_approval: None,
                pending_change: None,
                disputed: None,
            };
            let now = chrono::Utc::now();
            AppealRecord {
                id: uuid::Uuid::new_v4().to_string(),
                ticket: TicketNumber::generate(),
                workflow: String::new(),
                workflow_version: 0,
                state: self.engine.workflow().creation().to.clone(),
                outcome: None,
                version: 1,
                assignee: None,
                account: String::new(),
                data: serde_json::to_value(&data).expect("appeal data serialises"),
                created_at: now,
                updated_at: now,
            }
        })
    }
}

/// The reasons of the latest decision on the appeal when that decision was a rejection
/// (a reviewer's or screening's), whatever happened since short of an approval.
fn latest_rejection(wf: &Workflow, history: &[EventRecord]) -> Vec<String> {
    let b = wf.bindings();
    history
        .iter()
        .rev()
        .find(|e| e.transition == b.reject || e.transition == b.screening || e.transition == b.approve)
        .filter(|e| e.transition != b.approve)
        .map(|e| e.reasons.clone())
        .unwrap_or_default()
}

fn progress_of(
    wf: &Workflow,
    record: &AppealRecord,
    entity_change_required: bool,
    locale: Locale,
    history: &[EventRecord],
    timers: &[crate::store::TimerRecord],
) -> Progress {
    let b = wf.bindings();
    let calendar = &wf.calendar;
    let state = record.state.as_str();
    let entered_by = |transition: &str| wf.target(transition) == Some(state);
    let stage = if entered_by(&b.submit) {
        "received"
    } else if entered_by(&b.claim) || wf.awaits_second_approval(state) {
        // A first approval waiting for a second approver is still under review.
        "under_review"
    } else if entered_by(&b.approve) || wf.cools_off(state) {
        // Approved; the change waits out its cooling-off before it applies.
        "approved"
    } else if entered_by(&b.reject) || state == b.window_state {
        "rejected"
    } else if state == b.closed_state {
        "closed"
    } else {
        state
    };
    let reasons = latest_rejection(wf, history);
    let reasons_in_words = reasons.iter().map(|r| in_words(r, locale)).collect();
    let continue_until = (state == b.window_state)
        .then(|| {
            timers
                .iter()
                .find(|t| t.name == b.window_timer && t.status == TimerStatus::Armed)
                .map(|t| calendar.local_rfc3339(t.due_at))
        })
        .flatten();
    let review_due_at = timers
        .iter()
        .find(|t| t.name == b.review_sla && t.status == TimerStatus::Armed)
        .map(|t| calendar.local_rfc3339(t.due_at));
    let received_at = history
        .iter()
        .rev()
        .find(|e| e.transition == b.submit || e.transition == b.resubmit)
        .map_or(record.created_at, |e| e.at);
    Progress {
        ticket: record.ticket.to_string(),
        stage: stage.to_string(),
        outcome: record.outcome.clone(),
        reasons,
        reasons_in_words,
        continue_until,
        review_due_at,
        entity_change_required,
        received_at: calendar.local_rfc3339(received_at),
        updated_at: calendar.local_rfc3339(record.updated_at),
        time_zone: calendar.time_zone.name().to_string(),
    }
}
