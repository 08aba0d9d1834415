//! The statements both backends run alike, written once. This folder is compiled into
//! each backend (`store/sqlite.rs` and `store/postgres.rs` each declare it as their
//! module `shared`), so `Backend` and `Conn` below are that backend's store and
//! connection. What differs comes from the backend as associated items: how a write
//! transaction begins (`BEGIN`), the row locks of a timer claim, the job queue's table
//! and clock (`JOBS`, `JOB_NOW`, `JOB_COLUMNS`), how a job's next run is deferred, JSON
//! functions, the migrations, and the job queue's own writer (`write_jobs`).

mod access;
mod appeals;
/// Its `per_statement` also splits SQLite's job rows (sqlite.rs).
pub(super) mod batch_writes;
mod commit;
mod directory;
mod firings;
mod queue;
mod work;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::{Backend, Conn};
use crate::domain::{Account, LookupKind, TicketNumber};
use crate::store::codec::{MaybeStamp, Stamp};
use crate::store::prelude::*;
use crate::store::{
    ActionRecord, AppealChange, AppealFilter, AppealKey, AppealRecord, AppliedChange, CommandLoad, CommitError,
    DeliveryUpdate, DraftRecord, EventRecord, Gauges, IdempotencyRecord, ItemList, JobFilter, JobRecord, JobRef,
    JobStatus, LegacyEffect, NewNotification, NotificationRecord, NotificationStatus, ProgressRows, RowCounts,
    SessionRecord, StaffSessionRecord, StoreError, TimerFiring, TimerHandler, TimerRecord, TimerVerdict, TokenRecord,
    UnitOfWork, WorkFilter, scenario_of_record,
};

/// The condition "column `column` equals `$n`" when `value` is given, else "`$n` is
/// NULL" (true): an optional filter as a statement of its own for each case, so the
/// planner can use `column`'s index when it filters (a `$n IS NULL OR column = $n`
/// condition scans the table on SQLite).
fn equals_if(value: Option<&str>, column: &str, n: usize) -> String {
    match value {
        Some(_) => format!("{column} = ${n}"),
        None => format!("CAST(${n} AS TEXT) IS NULL"),
    }
}

/// A row as this backend answers it.
type Row = <<Conn as sqlx::Connection>::Database as sqlx::Database>::Row;

const TIMER_COLUMNS: &str =
    "t.id, t.appeal_id, a.ticket, t.name, t.generation, t.due_at, t.status, t.armed_at, t.settled_at";

/// An appeal's columns as its record reads them (`AppealRecord`), without the queue's
/// copies: a batch of due timers reads hundreds of appeals at a time.
const APPEAL_COLUMNS: &str = "a.id, a.ticket, a.workflow, a.workflow_version, a.state, a.outcome, a.version, \
                              a.assignee, a.account, a.data, a.created_at, a.updated_at";
