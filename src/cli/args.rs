//! The command line's shape: every command, argument and flag, with its help text and
//! the environment variable it may come from (`appealflow --help` shows them).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::{role_parser, serve, whatif, worker};
use crate::domain::Role;
use crate::workflow::graph::GraphFormat;

pub const CLOCK_OVERRIDE_ENV: &str = "APPEALFLOW_ALLOW_CLOCK_OVERRIDE";
pub const ID_HASH_KEY_ENV: &str = "APPEALFLOW_ID_HASH_KEY";

#[derive(Debug, Parser)]
#[command(name = "appealflow", version, about = "A durable workflow engine for account appeals")]
pub struct Cli {
    /// Database URL: sqlite://PATH (created if missing) or postgres://...
    /// [default: sqlite://appealflow.db; `demo` uses a fresh temporary database unless this flag is given]
    #[arg(long, global = true, env = "APPEALFLOW_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Directory holding workflow definitions and calendars [default: ./workflows]
    #[arg(long, global = true, env = "APPEALFLOW_WORKFLOWS")]
    pub workflows: Option<PathBuf>,

    /// Directory documents are stored in, content-addressed.
    #[arg(long, global = true, env = "APPEALFLOW_BLOB_DIR", default_value = "appealflow-blobs")]
    pub blob_dir: PathBuf,

    /// Largest document accepted, in bytes.
    #[arg(long, global = true, env = "APPEALFLOW_MAX_DOCUMENT_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_document_bytes: u64,

    /// The most pixels an uploaded image may have (width × height).
    #[arg(long, global = true, env = "APPEALFLOW_MAX_IMAGE_PIXELS", default_value_t = 40_000_000)]
    pub max_image_pixels: u64,

    /// The most documents one draft may hold.
    #[arg(long, global = true, env = "APPEALFLOW_MAX_DOCUMENTS_PER_DRAFT", default_value_t = 20)]
    pub max_documents_per_draft: usize,

    /// The most documents of one kind one draft may hold.
    #[arg(long, global = true, env = "APPEALFLOW_MAX_DOCUMENTS_PER_KIND", default_value_t = 5)]
    pub max_documents_per_kind: usize,

    /// An unsubmitted draft not written for this many hours is deleted (with its
    /// documents) by the worker.
    #[arg(long, global = true, env = "APPEALFLOW_DRAFT_TTL_HOURS", default_value_t = 7 * 24)]
    pub draft_ttl_hours: u64,

    /// A document file nothing refers to is removed once older than this many seconds.
    #[arg(long, global = true, env = "APPEALFLOW_BLOB_GRACE_SECS", default_value_t = 3600)]
    pub blob_grace_secs: u64,

    /// The most bytes one draft's documents may add up to.
    #[arg(long, global = true, env = "APPEALFLOW_MAX_DRAFT_BYTES", default_value_t = 50 * 1024 * 1024)]
    pub max_draft_bytes: u64,

    /// Attempts a job gets before it is dead (written with every job, by whichever
    /// command enqueues it: give every process the same value).
    #[arg(long, global = true, env = "APPEALFLOW_MAX_ATTEMPTS", default_value_t = crate::jobs::DEFAULT_MAX_ATTEMPTS,
          value_parser = clap::value_parser!(usize))]
    pub max_attempts: usize,

    /// SQLite: how long a writer waits for another's lock before failing, in milliseconds.
    #[arg(long, global = true, env = "APPEALFLOW_SQLITE_BUSY_MS", default_value_t = 30_000)]
    pub sqlite_busy_ms: u64,

    /// Pretend the current time is this instant (RFC 3339). For tests and simulations
    /// only: refused unless APPEALFLOW_ALLOW_CLOCK_OVERRIDE=1.
    #[arg(long, global = true, value_name = "RFC3339")]
    pub now: Option<String>,

    /// Allow --now and `worker --until` (a simulated clock): for tests and simulations only.
    #[arg(long, global = true, env = CLOCK_OVERRIDE_ENV, value_parser = clap::builder::FalseyValueParser::new())]
    pub allow_clock_override: bool,

    /// The key ID numbers are hashed with (keep it secret, and the same for every process
    /// on one database). Required with PostgreSQL; with an embedded SQLite database a
    /// random key is kept beside it (DB.idkey) when none is given.
    #[arg(long, global = true, env = ID_HASH_KEY_ENV, hide_env_values = true, value_name = "KEY")]
    pub id_hash_key: Option<String>,

    /// Reviewer leads' email addresses, comma-separated (SLA warnings and breaches), in
    /// addition to the emails of lead tokens.
    #[arg(long, global = true, env = "APPEALFLOW_LEAD_EMAILS", value_delimiter = ',', value_name = "EMAILS")]
    pub lead_emails: Vec<String>,

    /// Every notification is also POSTed here, signed with --notify-webhook-secret.
    #[arg(long, global = true, env = "APPEALFLOW_NOTIFY_WEBHOOK_URL", value_name = "URL")]
    pub notify_webhook_url: Option<String>,

    /// The HMAC-SHA256 secret notification webhooks are signed with.
    #[arg(
        long,
        global = true,
        env = "APPEALFLOW_NOTIFY_WEBHOOK_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub notify_webhook_secret: Option<String>,

    /// Account changes are POSTed to URL/ACTION (signed with --actions-secret) instead of
    /// being applied to the embedded account directory.
    #[arg(long, global = true, env = "APPEALFLOW_ACTIONS_URL", value_name = "URL")]
    pub actions_url: Option<String>,

    /// The HMAC-SHA256 secret account-change requests are signed with.
    #[arg(long, global = true, env = "APPEALFLOW_ACTIONS_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub actions_secret: Option<String>,

    /// Time limit of one call to the notification webhook or the actions endpoint, in seconds.
    #[arg(long, global = true, env = "APPEALFLOW_HTTP_TIMEOUT_SECS", default_value_t = 10, value_name = "SECS")]
    pub http_timeout_secs: u64,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update the database schema.
    Migrate,
    /// Walk appeals through their lifecycle on a simulated clock and a fresh database.
    Demo,
    /// Validate or draw workflow definitions.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// Submit, inspect and move appeals.
    #[command(subcommand)]
    Appeal(AppealCommand),
    /// The embedded account directory.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Inspect and run durable timers.
    #[command(subcommand)]
    Timers(TimersCommand),
    /// Business calendars: list them, compute a deadline and say why.
    #[command(subcommand)]
    Calendar(CalendarCommand),
    /// Serve the HTTP API (and, unless --no-worker, run the worker in this process).
    Serve(serve::ServeArgs),
    /// API tokens for reviewers, leads and admins.
    #[command(subcommand)]
    Tokens(serve::TokensCommand),
    /// Run the job worker: timers, post-approval actions, notifications.
    Worker(worker::WorkerArgs),
    /// The job queue: list (dead) jobs, retry one by hand.
    #[command(subcommand)]
    Jobs(worker::JobsCommand),
    /// Notifications as recorded (the outbox of everything sent).
    #[command(subcommand)]
    Notifications(worker::NotificationsCommand),
    /// Post-approval account actions; those needing attention.
    #[command(subcommand)]
    Actions(worker::ActionsCommand),
    /// Replay recorded appeals' timers under a proposed calendar or workflow and report
    /// what would differ; writes nothing.
    Whatif(whatif::WhatifArgs),
}

#[derive(Debug, Subcommand)]
pub enum CalendarCommand {
    /// The calendars available, with their zones and published years.
    List,
    /// The deadline N business days from an instant, with every day skipped and why.
    Due {
        /// The calendar's name (`calendar list` names them).
        #[arg(long)]
        calendar: String,
        /// The instant counting starts from.
        #[arg(long, value_name = "RFC3339")]
        from: String,
        /// How many business days to count.
        #[arg(long)]
        business_days: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Validate a workflow (default: the account-appeal workflow of --workflows).
    Check {
        /// A workflow's folder (workflows/account-appeal), or a folder of workflows like
        /// --workflows (its account-appeal workflow is checked, with its calendars).
        dir: Option<PathBuf>,
    },
    /// Print the state machine as a mermaid stateDiagram-v2 or a Graphviz dot graph.
    Graph {
        /// As for `workflow check`.
        dir: Option<PathBuf>,
        /// The graph's notation.
        #[arg(long, default_value = "mermaid", value_parser = graph_format())]
        format: GraphFormat,
        /// Draw this version (default: the newest).
        #[arg(long)]
        version: Option<u32>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum AppealCommand {
    /// Submit a draft (JSON file, or - for standard input); prints the ticket number.
    /// Document `file` paths are read relative to the draft file.
    Create {
        /// The draft: a JSON file, or - for standard input.
        #[arg(long, value_name = "FILE|-")]
        json: String,
        /// A repeat with the same key answers as the first did.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Print a draft's document checklist: each document, required/optional/conditional
    /// and why, what is missing, and every other problem.
    Checklist {
        /// The draft: a JSON file, or - for standard input.
        #[arg(long, value_name = "FILE|-")]
        json: String,
        /// How to print the checklist.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Continue a rejected appeal within its window with a modified draft.
    Resubmit {
        /// The rejected appeal's ticket number.
        ticket: String,
        /// The modified draft: a JSON file, or - for standard input.
        #[arg(long, value_name = "FILE|-")]
        json: String,
        /// A repeat with the same key answers as the first did.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Progress by ticket number and contact phone, as the applicant sees it.
    Progress {
        /// The ticket number, as the applicant has it.
        ticket: String,
        /// The contact phone given with the appeal.
        #[arg(long)]
        phone: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an appeal's state, timers and history.
    Show {
        /// The appeal's ticket number.
        ticket: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fire a transition.
    Fire(FireArgs),
    /// Move appeals in flight to another version of their workflow, as the loaded
    /// migration between the two versions says (state mapping, timers kept or re-armed).
    Migrate {
        /// The appeals' ticket numbers.
        #[arg(required = true)]
        tickets: Vec<String>,
        /// The version to move them to.
        #[arg(long)]
        to: i64,
        /// Who migrates them (recorded on each appeal's history).
        #[arg(long)]
        actor: String,
    },
    /// Link the entity-change request of a deregistered enterprise's appeal.
    LinkEntityChange {
        /// The deregistered enterprise's appeal (its ticket number).
        ticket: String,
        /// The ticket reference of the entity-change request.
        #[arg(long)]
        entity_ticket: String,
        /// The account (verified as the new company) the request was filed from.
        #[arg(long)]
        account: String,
        /// Who links it (a reviewer's name, say).
        #[arg(long)]
        actor: String,
        /// The actor's role.
        #[arg(long, value_parser = role_parser(&Role::ALL))]
        role: Role,
        /// A repeat with the same key answers as the first did.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Refuse unless the appeal is still at this version.
        #[arg(long)]
        expect_version: Option<i64>,
    },
    /// List appeals, optionally in one state.
    List {
        /// Only appeals in this state (`workflow graph` shows the states).
        #[arg(long)]
        state: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct FireArgs {
    /// The appeal's ticket number.
    pub ticket: String,
    /// The transition to fire (`appealflow workflow graph` lists them).
    pub transition: String,
    /// Who fires it (a reviewer's name, say).
    #[arg(long)]
    pub actor: String,
    /// The actor's role.
    #[arg(long, value_parser = role_parser(&Role::ALL))]
    pub role: Role,
    /// A reason for the decision (repeat for several).
    #[arg(long = "reason")]
    pub reasons: Vec<String>,
    /// A repeat with the same key answers as the first did.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Refuse unless the appeal is still at this version.
    #[arg(long)]
    pub expect_version: Option<i64>,
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Load accounts from a JSON file (an array of accounts); all or nothing.
    Import {
        /// The accounts: a JSON file holding an array of accounts.
        file: PathBuf,
    },
    /// Show one account as the appeal rules see it.
    Show {
        /// The account's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TimersCommand {
    /// List timers (all, or one appeal's).
    List {
        /// Only this appeal's timers (its ticket number).
        #[arg(long, value_name = "TICKET")]
        appeal: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fire every timer due now (or at --now) once, then exit.
    Run,
}

/// `--format` of `workflow graph`: the notations `workflow::graph` renders.
fn graph_format() -> impl clap::builder::TypedValueParser<Value = GraphFormat> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(GraphFormat::ALL.map(GraphFormat::as_str))
        .map(|s| GraphFormat::ALL.into_iter().find(|f| f.as_str() == s).expect("a listed format"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every argument of every command says what it is in `--help`.
    #[test]
    fn every_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                    missing.push(format!("{path} --{}", arg.get_long().unwrap_or(id)));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "appealflow", &mut missing);
        assert!(missing.is_empty(), "arguments without help text:\n{}", missing.join("\n"));
    }
}
