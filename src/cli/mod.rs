//! The `appealflow` command line: parses arguments at the edge, calls the app layer,
//! prints results, and maps errors to one line and a distinct exit code
//! (0 ok, 2 usage or bad input, 3 refused by a rule or state, 1 internal failure).

mod demo;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::app;
use crate::domain::{Actor, Role};
use crate::engine::{Clock, Engine, EngineError, ErrorClass, ManualClock, SystemClock};
use crate::startup::{self, DEFAULT_DATABASE_URL, DEFAULT_WORKFLOW, StartupError};
use crate::workflow::graph::{GraphFormat, render};
use crate::workflow::{Fire, Workflow};

pub const CLOCK_OVERRIDE_ENV: &str = "APPEALFLOW_ALLOW_CLOCK_OVERRIDE";

#[derive(Debug, Parser)]
#[command(
    name = "appealflow",
    version,
    about = "A durable workflow engine for account appeals"
)]
pub struct Cli {
    /// Database URL: sqlite://PATH (created if missing) or postgres://...
    /// [default: sqlite://appealflow.db; `demo` defaults to a fresh temporary database]
    #[arg(long, global = true, env = "APPEALFLOW_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Directory holding workflow definitions and calendars [default: ./workflows]
    #[arg(long, global = true, env = "APPEALFLOW_WORKFLOWS")]
    pub workflows: Option<PathBuf>,

    /// Pretend the current time is this instant (RFC 3339). For tests and simulations
    /// only: refused unless APPEALFLOW_ALLOW_CLOCK_OVERRIDE=1.
    #[arg(long, global = true, value_name = "RFC3339")]
    pub now: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update the database schema.
    Migrate,
    /// Walk an appeal through its lifecycle on a simulated clock and a fresh database.
    Demo,
    /// Validate or draw workflow definitions.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// Create, inspect and move appeals.
    #[command(subcommand)]
    Appeal(AppealCommand),
    /// Inspect and run durable timers.
    #[command(subcommand)]
    Timers(TimersCommand),
}

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Validate a workflow directory (default: the account-appeal workflow).
    Check { dir: Option<PathBuf> },
    /// Print the state machine as a mermaid stateDiagram-v2 or a Graphviz dot graph.
    Graph {
        dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppealCommand {
    /// Create an appeal from JSON (a file, or - for standard input); prints the ticket.
    Create {
        #[arg(long, value_name = "FILE|-")]
        json: String,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Show an appeal's state, timers and history.
    Show {
        ticket: String,
        #[arg(long)]
        json: bool,
    },
    /// Fire a transition.
    Fire(FireArgs),
    /// List appeals, optionally in one state.
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct FireArgs {
    pub ticket: String,
    pub transition: String,
    #[arg(long)]
    pub actor: String,
    #[arg(long)]
    pub role: Role,
    /// A reason for the decision (repeat for several).
    #[arg(long = "reason")]
    pub reasons: Vec<String>,
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Refuse unless the appeal is still at this version.
    #[arg(long)]
    pub expect_version: Option<i64>,
}

#[derive(Debug, Subcommand)]
pub enum TimersCommand {
    /// List timers (all, or one appeal's).
    List {
        #[arg(long, value_name = "TICKET")]
        appeal: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Fire every timer due now (or at --now) once, then exit.
    Run,
}

/// An error with its exit code, printed as one line.
#[derive(Debug)]
pub struct CliError {
    pub class: ErrorClass,
    pub message: String,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            class: ErrorClass::BadInput,
            message: message.into(),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self.class {
            ErrorClass::BadInput => 2,
            ErrorClass::Refused => 3,
            ErrorClass::Internal => 1,
        })
    }
}

impl From<EngineError> for CliError {
    fn from(e: EngineError) -> Self {
        CliError {
            class: e.class(),
            message: e.to_string(),
        }
    }
}

impl From<StartupError> for CliError {
    fn from(e: StartupError) -> Self {
        let class = match e {
            StartupError::Workflow(_) => ErrorClass::BadInput,
            StartupError::Store(_) => ErrorClass::Internal,
        };
        CliError {
            class,
            message: e.to_string(),
        }
    }
}

impl From<crate::store::StoreError> for CliError {
    fn from(e: crate::store::StoreError) -> Self {
        CliError {
            class: ErrorClass::Internal,
            message: e.to_string(),
        }
    }
}

/// The clock for this invocation: the system clock, or a fixed instant when `--now` is
/// given and permitted.
pub fn clock_for(now: Option<&str>, override_allowed: bool) -> Result<Arc<dyn Clock>, CliError> {
    match now {
        None => Ok(Arc::new(SystemClock)),
        Some(_) if !override_allowed => Err(CliError::usage(format!(
            "--now is for tests and simulations only: set {CLOCK_OVERRIDE_ENV}=1 to allow it"
        ))),
        Some(raw) => {
            let at = DateTime::parse_from_rfc3339(raw).map_err(|e| {
                CliError::usage(format!("--now: {raw:?} is not an RFC 3339 instant ({e}); e.g. 2026-03-02T09:00:00+08:00"))
            })?;
            Ok(Arc::new(ManualClock::new(at.with_timezone(&Utc))))
        }
    }
}

fn read_input(source: &str) -> Result<String, CliError> {
    if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::usage(format!("--json -: cannot read standard input: {e}")))?;
        Ok(text)
    } else {
        std::fs::read_to_string(source)
            .map_err(|e| CliError::usage(format!("--json {source}: cannot read: {e}")))
    }
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("views serialise")
    );
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let override_allowed = std::env::var(CLOCK_OVERRIDE_ENV).as_deref() == Ok("1");
    let clock = clock_for(cli.now.as_deref(), override_allowed)?;
    let workflows = cli
        .workflows
        .clone()
        .unwrap_or_else(startup::default_workflows_dir);
    let database_url = cli
        .database_url
        .clone()
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string());
    let engine = || startup::build_engine(&database_url, &workflows, clock.clone());

    match cli.command {
        Command::Migrate => {
            startup::open_store(&database_url).await?;
            println!("migrations applied to {}", redact_url(&database_url));
        }
        Command::Demo => demo::run(cli.database_url.as_deref(), &workflows).await?,
        Command::Workflow(WorkflowCommand::Check { dir }) => {
            let dir = dir.unwrap_or_else(|| workflows.join(DEFAULT_WORKFLOW));
            let wf = load_dir(&dir, &workflows)?;
            println!(
                "{}: workflow {:?} v{} is valid ({} states, {} transitions, {} timers, calendar {})",
                dir.join("workflow.toml").display(),
                wf.name(),
                wf.def.workflow.version,
                wf.def.states.len(),
                wf.def.transitions.len(),
                wf.def.timers.len(),
                wf.calendar.name
            );
        }
        Command::Workflow(WorkflowCommand::Graph { dir, format }) => {
            let dir = dir.unwrap_or_else(|| workflows.join(DEFAULT_WORKFLOW));
            let wf = load_dir(&dir, &workflows)?;
            print!("{}", render(&wf.def, format));
        }
        Command::Appeal(cmd) => appeal(&engine().await?, cmd).await?,
        Command::Timers(cmd) => timers(&engine().await?, cmd).await?,
    }
    Ok(())
}

/// A workflow directory's calendars come from its parent's `calendars/` when present.
fn load_dir(dir: &std::path::Path, workflows: &std::path::Path) -> Result<Workflow, CliError> {
    let calendars = dir
        .parent()
        .map(|p| p.join("calendars"))
        .filter(|c| c.is_dir())
        .unwrap_or_else(|| workflows.join("calendars"));
    Workflow::load(dir, &calendars).map_err(|e| CliError::usage(e.to_string()))
}

/// Hides a password in a database URL before printing it.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn appeal(engine: &Engine, cmd: AppealCommand) -> Result<(), CliError> {
    match cmd {
        AppealCommand::Create {
            json,
            idempotency_key,
        } => {
            let request = app::parse_appeal_json(&read_input(&json)?)?;
            let actor = Actor::new("applicant", Role::Applicant);
            let outcome = engine
                .create(&request, &actor, idempotency_key.as_deref())
                .await?;
            println!("{}", outcome.ticket);
        }
        AppealCommand::Show { ticket, json } => {
            let view = app::show(engine, &app::parse_ticket(&ticket)?).await?;
            if json {
                print_json(&view);
            } else {
                println!("ticket     {}", view.ticket);
                println!("account    {}", view.account);
                println!(
                    "state      {}{}",
                    view.state,
                    view.outcome
                        .as_deref()
                        .map(|o| format!(" ({o})"))
                        .unwrap_or_default()
                );
                println!("version    {}", view.version);
                if let Some(a) = &view.assignee {
                    println!("held by    {a}");
                }
                if let Some(due) = &view.review_due_at {
                    println!("review due {due}");
                }
                println!("created    {}", view.created_at);
                println!("updated    {}", view.updated_at);
                println!("history:");
                for h in &view.history {
                    let reasons = if h.reasons.is_empty() {
                        String::new()
                    } else {
                        format!(" — {}", h.reasons.join("; "))
                    };
                    println!(
                        "  {:>3} {}  {:<18} {} -> {}  by {} ({}){}",
                        h.seq,
                        h.at,
                        h.transition,
                        h.from.as_deref().unwrap_or("(new)"),
                        h.to,
                        h.actor,
                        h.role,
                        reasons
                    );
                }
            }
        }
        AppealCommand::Fire(args) => {
            let ticket = app::parse_ticket(&args.ticket)?;
            let actor_name = args.actor.trim();
            if actor_name.is_empty() {
                return Err(CliError::usage(
                    "--actor: required, the name of who fires the transition",
                ));
            }
            let cmd = Fire {
                transition: args.transition,
                reasons: args.reasons,
                payload: serde_json::Value::Null,
                expect_version: args.expect_version,
            };
            let outcome = engine
                .fire(
                    &ticket,
                    &cmd,
                    &Actor::new(actor_name, args.role),
                    args.idempotency_key.as_deref(),
                )
                .await?;
            println!(
                "{}: {} -> {}{} (version {}){}",
                outcome.ticket,
                outcome.from.as_deref().unwrap_or("(new)"),
                outcome.state,
                outcome
                    .outcome
                    .as_deref()
                    .map(|o| format!(" ({o})"))
                    .unwrap_or_default(),
                outcome.version,
                if outcome.replayed { " [replayed]" } else { "" }
            );
        }
        AppealCommand::List { state, json } => {
            let rows = app::list(engine, state).await?;
            if json {
                print_json(&rows);
            } else {
                for r in rows {
                    println!(
                        "{}  {:<20} v{:<3} {}",
                        r.ticket, r.state, r.version, r.account
                    );
                }
            }
        }
    }
    Ok(())
}

async fn timers(engine: &Engine, cmd: TimersCommand) -> Result<(), CliError> {
    match cmd {
        TimersCommand::List { appeal, json } => {
            let appeal_id = match appeal {
                Some(t) => {
                    let ticket = app::parse_ticket(&t)?;
                    let record = engine
                        .store()
                        .appeal_by_ticket(&ticket)
                        .await?
                        .ok_or_else(|| EngineError::NotFound(ticket.to_string()))?;
                    Some(record.id)
                }
                None => None,
            };
            let timers = engine.store().timers(appeal_id.as_deref()).await?;
            if json {
                print_json(&timers);
            } else {
                for t in timers {
                    println!(
                        "{}  {:<28} gen {} due {}  {}",
                        t.ticket,
                        t.name,
                        t.generation,
                        t.due_at.to_rfc3339(),
                        t.status.as_str()
                    );
                }
            }
        }
        TimersCommand::Run => {
            let runs = engine.run_due_timers(1000).await?;
            for r in &runs {
                match &r.result {
                    Some(o) => println!(
                        "{}  {} -> {} ({} -> {})",
                        r.timer.ticket,
                        r.timer.name,
                        o.transition,
                        o.from.as_deref().unwrap_or("-"),
                        o.state
                    ),
                    None => println!(
                        "{}  {} skipped: {}",
                        r.timer.ticket,
                        r.timer.name,
                        r.note.as_deref().unwrap_or("")
                    ),
                }
            }
            println!("{} timer(s) due", runs.len());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_refused_without_the_override_permission() {
        let err = clock_for(Some("2026-01-05T09:00:00Z"), false)
            .err()
            .unwrap();
        assert_eq!(err.class, ErrorClass::BadInput);
        assert!(err.message.contains(CLOCK_OVERRIDE_ENV));
        let clock = clock_for(Some("2026-01-05T09:00:00+08:00"), true).unwrap();
        assert_eq!(clock.now().to_rfc3339(), "2026-01-05T01:00:00+00:00");
    }

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            redact_url("sqlite://appealflow.db"),
            "sqlite://appealflow.db"
        );
    }
}
