//! What-if replay: the recorded timers re-armed under a proposed workflow or calendar,
//! with nothing written. Each timer armed in a time range (a review SLA, its warning, a
//! resubmission window, ...) is re-computed from the instant it was armed with the
//! proposal's rule for it (`workflow::timer_due`, as the engine arms it), and compared
//! with the deadline recorded then. What the difference would have meant follows from
//! the timer's status: an armed one would fall due elsewhere (or already have), a fired
//! one would have fired at another time (or not yet), a cancelled one might have fired
//! before it was cancelled — a breach that would have happened, a window that would have
//! expired. The timers are read a page at a time; only those that would differ are kept.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::engine::{Engine, EngineError};
use crate::store::{TimerRecord, TimerStatus};
use crate::workflow::Workflow;
use crate::workflow::decide::timer_due;

/// Timers read per page.
const PAGE: i64 = 2_000;

/// What a different deadline would have meant for one recorded timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Consequence {
    /// Still armed: it would fall due at the proposed instant instead.
    Moves,
    /// Still armed, and the proposed instant has passed: it would have fired already.
    WouldHaveFired,
    /// It fired; under the proposal it was not due yet at that time.
    WouldNotHaveFiredYet,
    /// It fired; under the proposal it would have fired earlier.
    WouldHaveFiredEarlier,
    /// It fired (late: after its recorded deadline); under the proposal it was due later
    /// than recorded but still by the time it fired.
    WouldHaveFiredAnyway,
    /// It was cancelled before it fell due; under the proposal it would have fallen due
    /// (and fired) before that.
    WouldHaveFiredBeforeCancelled,
    /// It was cancelled before it fell due, under the proposal too.
    CancelledEitherWay,
    /// The proposal arms no such timer (a warning it drops, a timer it does not have).
    NotArmed,
    /// The proposal cannot compute it (a calendar that does not reach the instant).
    Unanswerable,
}

/// One recorded timer the proposal would arm differently.
#[derive(Debug, Clone, Serialize)]
pub struct TimerChange {
    pub ticket: String,
    pub timer: String,
    pub generation: i64,
    pub status: TimerStatus,
    pub armed_at: DateTime<Utc>,
    pub recorded_due: DateTime<Utc>,
    /// Under the proposal (none: [`Consequence::NotArmed`] or [`Consequence::Unanswerable`]).
    pub proposed_due: Option<DateTime<Utc>>,
    /// Proposed minus recorded, in seconds (later is positive).
    pub shift_seconds: Option<i64>,
    /// The recorded deadline lies past the published years of the calendar it was
    /// computed with (the loaded one): it was provisional.
    pub provisional: bool,
    /// When it fired or was cancelled, if it has.
    pub settled_at: Option<DateTime<Utc>>,
    pub consequence: Consequence,
    /// Why the proposal could not compute it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Per timer name: how many were read, how many would differ and how.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TimerSummary {
    pub timer: String,
    pub read: usize,
    pub differ: usize,
    pub earlier: usize,
    pub later: usize,
    /// The largest shifts either way, in seconds.
    pub most_earlier_seconds: i64,
    pub most_later_seconds: i64,
    pub consequences: BTreeMap<Consequence, usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WhatIfReport {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// The proposal: its workflow's name and version and its calendar.
    pub workflow: String,
    pub calendar: String,
    pub timers_read: usize,
    /// Appeals with at least one timer that would differ.
    pub appeals_affected: usize,
    pub summary: Vec<TimerSummary>,
    pub changes: Vec<TimerChange>,
}

/// Replays the timers armed in `[from, to)` under `proposed`, writing nothing.
pub async fn replay(
    engine: &Engine,
    proposed: &Workflow,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<WhatIfReport, EngineError> {
    let now = engine.now();
    let current = engine.workflow();
    let mut summary: BTreeMap<String, TimerSummary> = BTreeMap::new();
    let mut changes = Vec::new();
    let mut read = 0;
    let mut after = 0;
    loop {
        let page = engine.store().timers_armed_between(from, to, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for timer in &page {
            read += 1;
            let entry = summary
                .entry(timer.name.clone())
                .or_insert_with(|| TimerSummary { timer: timer.name.clone(), ..Default::default() });
            entry.read += 1;
            let Some(change) = compare(current, proposed, timer, now) else { continue };
            entry.differ += 1;
            match change.shift_seconds {
                Some(s) if s < 0 => {
                    entry.earlier += 1;
                    entry.most_earlier_seconds = entry.most_earlier_seconds.min(s);
                }
                Some(s) => {
                    entry.later += 1;
                    entry.most_later_seconds = entry.most_later_seconds.max(s);
                }
                None => {}
            }
            *entry.consequences.entry(change.consequence).or_default() += 1;
            changes.push(change);
        }
    }
    let appeals_affected = changes.iter().map(|c| c.ticket.as_str()).collect::<std::collections::BTreeSet<_>>().len();
    Ok(WhatIfReport {
        from,
        to,
        now,
        workflow: format!("{} v{}", proposed.name(), proposed.def.workflow.version),
        calendar: proposed.calendar.name.clone(),
        timers_read: read,
        appeals_affected,
        summary: summary.into_values().collect(),
        changes,
    })
}

/// The recorded timer under the proposal, if it would differ.
fn compare(current: &Workflow, proposed: &Workflow, t: &TimerRecord, now: DateTime<Utc>) -> Option<TimerChange> {
    let (base, warning) = match t.name.strip_suffix(".warning") {
        Some(base) => (base, true),
        None => (t.name.as_str(), false),
    };
    // A deadline is the instant its last day ends: that day is the one it belongs to.
    let day = current.calendar.local_date(t.due_at - chrono::Duration::seconds(1));
    let provisional = current.calendar.is_provisional(day);
    let change = |proposed_due: Option<DateTime<Utc>>, consequence, problem| TimerChange {
        ticket: t.ticket.to_string(),
        timer: t.name.clone(),
        generation: t.generation,
        status: t.status,
        armed_at: t.armed_at,
        recorded_due: t.due_at,
        proposed_due,
        shift_seconds: proposed_due.map(|p| (p - t.due_at).num_seconds()),
        provisional,
        settled_at: t.settled_at,
        consequence,
        problem,
    };
    let Some(def) = proposed.timer(base) else {
        return Some(change(None, Consequence::NotArmed, None));
    };
    let due = match timer_due(proposed, def, t.armed_at) {
        Ok((due, warn)) => {
            if warning {
                warn
            } else {
                Some(due)
            }
        }
        Err(e) => return Some(change(None, Consequence::Unanswerable, Some(e.to_string()))),
    };
    let Some(due) = due else {
        return Some(change(None, Consequence::NotArmed, None));
    };
    if due == t.due_at {
        return None;
    }
    let consequence = match (t.status, t.settled_at) {
        (TimerStatus::Armed, _) if due <= now => Consequence::WouldHaveFired,
        (TimerStatus::Armed, _) => Consequence::Moves,
        (TimerStatus::Fired, Some(at)) if due > at => Consequence::WouldNotHaveFiredYet,
        (TimerStatus::Fired, _) if due < t.due_at => Consequence::WouldHaveFiredEarlier,
        (TimerStatus::Fired, _) => Consequence::WouldHaveFiredAnyway,
        (TimerStatus::Cancelled, Some(at)) if due <= at => Consequence::WouldHaveFiredBeforeCancelled,
        (TimerStatus::Cancelled, _) => Consequence::CancelledEitherWay,
    };
    Some(change(Some(due), consequence, None))
}
