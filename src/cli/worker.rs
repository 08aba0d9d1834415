//! The `worker`, `jobs`, `notifications` and `actions` subcommands.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use super::{CliError, Context, print_json};
use crate::app;
use crate::app::ServiceError;
use crate::app::admin::{self, JobQuery};
use crate::domain::{Actor, Role};
use crate::engine::{EngineError, ErrorClass, ManualClock};
use crate::jobs::{QUEUES, Running, Runtime, WorkerSettings};
use crate::store::NotificationStatus;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Simulation: run every timer and job due up to this instant, each at its own due
    /// time on a manual clock, then exit (needs APPEALFLOW_ALLOW_CLOCK_OVERRIDE=1).
    /// Retries happen at once in a simulation (no real-time backoff).
    #[arg(long, value_name = "RFC3339")]
    pub until: Option<String>,
    /// Jobs run at once, per queue.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Wait before the second attempt, in seconds; doubles after each failure.
    #[arg(long, default_value_t = 30)]
    pub backoff_secs: u64,
    /// Longest wait between attempts, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub backoff_max_secs: u64,
    /// How often to look for due timers and new work, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub poll_ms: u64,
    /// After SIGTERM/SIGINT, how long in-flight jobs get to finish, in seconds.
    #[arg(long, default_value_t = 30)]
    pub grace_secs: u64,
    /// Exit with an error when a queue or the timer loop has been failing (and restarted
    /// with backoff) for this long, in seconds, so a supervisor restarts the worker.
    #[arg(long, default_value_t = 300)]
    pub give_up_after_secs: u64,
    /// Seconds between heartbeats; a worker silent for three is presumed dead and its
    /// jobs return to the queue.
    #[arg(long, default_value_t = 3)]
    pub heartbeat_secs: u64,
    /// Due timers claimed and fired per transaction. A larger batch fires more timers a
    /// second when many fall due together, and holds its transaction (on SQLite, the
    /// database's one write lock) longer while it runs.
    #[arg(long, default_value_t = WorkerSettings::default().timer_batch,
          value_parser = clap::value_parser!(i64).range(1..=MAX_TIMER_BATCH))]
    pub timer_batch: i64,
    /// Timer batches in flight at once while many timers are due: one is written while
    /// the next is claimed and decided (on SQLite on a read connection, before it takes
    /// the one write lock). Unset: 2 on PostgreSQL, 1 on SQLite (2 fires a backlog
    /// faster there, at more memory).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMER_LANES as u64))]
    pub timer_lanes: Option<u64>,
}

/// The most `--timer-lanes`: each lane holds a connection of the pool while it writes.
const MAX_TIMER_LANES: usize = 8;

/// The largest `--timer-batch`: a batch's statements bind a few values per timer, and
/// a transaction much longer than this holds the write lock for seconds.
const MAX_TIMER_BATCH: i64 = 5000;

impl WorkerArgs {
    fn settings(&self, max_attempts: usize) -> Result<WorkerSettings, CliError> {
        if self.concurrency == 0 || self.poll_ms == 0 || self.heartbeat_secs == 0 {
            return Err(CliError::usage("--concurrency, --poll-ms and --heartbeat-secs must be at least 1"));
        }
        // A commit wakes the timer loops only for timers due within ANNOUNCE_WITHIN; a
        // longer poll could find a later one late.
        let longest = crate::store::ANNOUNCE_WITHIN.num_milliseconds() as u64;
        if self.poll_ms > longest {
            return Err(CliError::usage(format!(
                "--poll-ms must be at most {longest} (10 minutes): timers armed further ahead wake no worker and are found by a poll"
            )));
        }
        Ok(WorkerSettings {
            max_attempts,
            backoff_base: Duration::from_secs(self.backoff_secs),
            backoff_max: Duration::from_secs(self.backoff_max_secs.max(self.backoff_secs)),
            concurrency: self.concurrency,
            poll: Duration::from_millis(self.poll_ms),
            grace: Duration::from_secs(self.grace_secs),
            give_up_after: Some(Duration::from_secs(self.give_up_after_secs)),
            heartbeat: Duration::from_secs(self.heartbeat_secs),
            timer_batch: self.timer_batch,
            timer_lanes: self.timer_lanes.map(|n| n as usize),
            ..WorkerSettings::default()
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Jobs in the queues, newest first.
    List {
        /// Only dead jobs (attempts used up, or aborted).
        #[arg(long)]
        dead: bool,
        /// Only this queue.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(QUEUES))]
        queue: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = admin::DEFAULT_JOB_LIMIT,
              value_parser = clap::value_parser!(i64).range(1..=admin::MAX_JOB_LIMIT))]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put a dead job back in its queue with fresh attempts.
    Retry {
        /// The job's id (`jobs list --dead`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotificationsCommand {
    /// Notifications recorded, oldest first (recipients masked).
    List {
        /// Only this appeal's notifications (its ticket number).
        #[arg(long, value_name = "TICKET")]
        appeal: Option<String>,
        /// Only notifications in this status.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
            NotificationStatus::ALL.iter().map(|s| s.as_str())))]
        status: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ActionsCommand {
    /// Post-approval actions; --attention for those that failed or exhausted their attempts.
    List {
        /// Only this appeal's actions.
        #[arg(long, value_name = "TICKET")]
        appeal: Option<String>,
        /// Only those needing a person: failed for good, or pending with their job dead.
        #[arg(long)]
        attention: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Try a permanently failed action again.
    Retry {
        /// The action's id (`actions list`).
        id: i64,
    },
    /// Mark an appeal's manual task ("Other" item) done.
    TaskDone {
        /// The appeal's ticket number.
        ticket: String,
        /// Who did the task.
        #[arg(long)]
        actor: String,
        /// The actor's role.
        #[arg(long, value_parser = super::role_parser(&[Role::Reviewer, Role::Lead, Role::Admin]))]
        role: Role,
    },
}

/// The worker's runtime on the context's database.
pub(super) async fn runtime(ctx: &Context, settings: WorkerSettings) -> Result<Runtime, CliError> {
    let app = ctx.application(false).await?;
    let janitor = ctx.janitor(app.engine.clone())?;
    if app.work.lead_emails().await?.is_empty() {
        tracing::warn!(
            "no reviewer lead has an email (tokens create --role lead --email ...) and APPEALFLOW_LEAD_EMAILS is not \
             set: SLA warnings and breaches reach nobody"
        );
    }
    Ok(app.runtime(settings).with_janitor(janitor))
}

/// How long a simulation may wait for the worker to settle at one instant.
const SIMULATION_SETTLE: Duration = Duration::from_secs(600);

pub(super) async fn worker(ctx: &Context, args: WorkerArgs, clock: Option<Arc<ManualClock>>) -> Result<(), CliError> {
    let settings = args.settings(ctx.db.max_attempts)?;
    if let Some(until) = &args.until {
        let until: DateTime<Utc> = DateTime::parse_from_rfc3339(until)
            .map_err(|e| CliError::usage(format!("--until: {until:?} is not an RFC 3339 instant ({e})")))?
            .with_timezone(&Utc);
        let clock = clock.expect("run() gives --until a manual clock");
        let rt = runtime(ctx, WorkerSettings { backoff_base: Duration::ZERO, ..WorkerSettings::simulation() }).await?;
        let running = Running::start(rt);
        let report = running.run_until(&clock, until, SIMULATION_SETTLE).await;
        let stopped = running.stop().await;
        let report =
            report.map_err(|e| CliError { class: ErrorClass::Internal, message: format!("simulation: {e}") })?;
        stopped.map_err(|e| CliError { class: ErrorClass::Internal, message: e.to_string() })?;
        println!(
            "simulated to {}: {} timer(s) fired, {} job(s) done, {} action(s) applied, {} notification(s) sent{}",
            until.to_rfc3339(),
            report.timers_fired,
            report.jobs_done,
            report.actions_succeeded,
            report.notifications_sent,
            if report.dead_jobs == 0 {
                String::new()
            } else {
                format!(", {} dead job(s): appealflow jobs list --dead", report.dead_jobs)
            }
        );
        return Ok(());
    }
    let rt = runtime(ctx, settings).await?;
    println!("appealflow worker on {} (queues: {})", super::redact_url(&ctx.database_url), QUEUES.join(", "));
    let engine = rt.work.engine().clone();
    let stopped = crate::jobs::run(rt, shutdown_signal()).await;
    crate::app::health::close_database(&engine).await;
    stopped.map_err(|e| CliError { class: ErrorClass::Internal, message: e.to_string() })
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not
/// when the future is first polled, so a signal that arrives early is never missed (and
/// never kills the process without a graceful stop).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::terminate()).ok(), signal(SignalKind::interrupt()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let int = async {
                match int.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = term => {}
                _ = int => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested");
    }
}

pub(super) async fn jobs(ctx: &Context, cmd: JobsCommand) -> Result<(), CliError> {
    let engine = ctx.engine().await?;
    match cmd {
        JobsCommand::List { dead, queue, limit, json } => {
            let query = JobQuery { dead_only: dead, queue, limit };
            let jobs = admin::jobs(&engine, query).await.map_err(as_flags)?;
            if json {
                print_json(&jobs);
            } else {
                for j in jobs {
                    println!(
                        "{}  {:<26} {:<8} {}{}/{}  run_at {}  {}  {}",
                        j.id,
                        j.queue,
                        j.status,
                        if j.dead { "DEAD " } else { "" },
                        j.attempts,
                        j.max_attempts,
                        j.run_at.to_rfc3339(),
                        j.args,
                        j.last_result.unwrap_or_default()
                    );
                }
            }
        }
        JobsCommand::Retry { id } => {
            let operator = Actor::new("cli", Role::Admin);
            admin::retry_job(&engine, &id, &operator, None).await.map_err(|e| match e {
                ServiceError::NotDead { .. } | ServiceError::NotFound(_) => CliError {
                    class: ErrorClass::Refused,
                    message: format!(
                        "job {id} is not dead (or does not exist): only a dead job can be retried by hand"
                    ),
                },
                other => other.into(),
            })?;
            println!("job {id} is queued again");
        }
    }
    Ok(())
}

/// A refused query's fields named as the command's flags (`--queue`).
fn as_flags(e: EngineError) -> CliError {
    match e {
        EngineError::Invalid(errors) => CliError::usage(
            errors
                .iter()
                .map(|f| format!("--{}: {}", f.field.replace('_', "-"), f.rule))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        other => other.into(),
    }
}

fn ticket_arg(raw: Option<&str>) -> Result<Option<crate::domain::TicketNumber>, CliError> {
    Ok(raw.map(app::parse_ticket).transpose()?)
}

pub(super) async fn notifications(ctx: &Context, cmd: NotificationsCommand) -> Result<(), CliError> {
    let engine = ctx.engine().await?;
    let NotificationsCommand::List { appeal, status, json } = cmd;
    let rows = admin::notifications(&engine, ticket_arg(appeal.as_deref())?.as_ref(), status).await?;
    if json {
        print_json(&rows);
    } else {
        for n in rows {
            println!(
                "{:>5}  {:<8} {:<17} {:<5} {:<5} to {:<22} {}",
                n.id,
                n.status,
                n.template,
                n.channel,
                n.locale,
                n.recipient_masked,
                n.body.replace('\n', " ⏎ ")
            );
        }
    }
    Ok(())
}

pub(super) async fn actions(ctx: &Context, cmd: ActionsCommand) -> Result<(), CliError> {
    match cmd {
        ActionsCommand::List { appeal, attention, json } => {
            let engine = ctx.engine().await?;
            let rows = admin::actions(&engine, ticket_arg(appeal.as_deref())?.as_ref(), attention).await?;
            if json {
                print_json(&rows);
            } else {
                for a in rows {
                    println!(
                        "{:>5}  {}  {:<26} {:<9} attempts {}{}",
                        a.id,
                        a.ticket,
                        a.action,
                        a.status,
                        a.attempts,
                        a.last_error.map(|e| format!("  {e}")).unwrap_or_default()
                    );
                }
            }
        }
        ActionsCommand::Retry { id } => {
            let engine = ctx.engine().await?;
            admin::retry_action(&engine, id).await?;
            println!("action {id} is pending again and queued");
        }
        ActionsCommand::TaskDone { ticket, actor, role } => {
            let rt = runtime(ctx, WorkerSettings::default()).await?;
            let ticket = app::parse_ticket(&ticket)?;
            let done = rt.work.complete_manual(&ticket, &Actor::new(actor.trim(), role), None).await?;

            println!(
                "{ticket}: manual task done{}",
                if done.replayed {
                    " (already)"
                } else if done.completed {
                    "; the appeal is completed"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}
