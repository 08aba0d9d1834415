//! The `appealflow` command line: parses arguments at the edge, calls the app layer,
//! prints results, and maps errors to one line and a distinct exit code
//! (0 ok, 2 usage or bad input, 3 refused by a rule or state, 1 internal failure).

mod appeal;
mod args;
mod calendar;
mod demo;
mod serve;
mod whatif;
mod worker;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

use crate::app::intake::{Intake, IntakeError};
use crate::app::problem::Classify;
use crate::domain::Role;
use crate::domain::document::DocumentLimits;
use crate::engine::{Clock, Engine, EngineError, ErrorClass, ManualClock, SystemClock};
use crate::startup::{self, Application, DEFAULT_DATABASE_URL, DEFAULT_WORKFLOW, IntakeConfig, Settings, StartupError};
use crate::workflow::graph::render;

pub use args::*;

/// The workflow folder `workflow check`/`graph` read, and the folder of workflows (with
/// the calendars) around it: DIR may name either.
fn workflow_dir(dir: Option<PathBuf>, workflows: &Path) -> (PathBuf, PathBuf) {
    match dir {
        None => (workflows.join(DEFAULT_WORKFLOW), workflows.to_path_buf()),
        Some(d) if !d.join("workflow.toml").exists() && d.join(DEFAULT_WORKFLOW).join("workflow.toml").exists() => {
            (d.join(DEFAULT_WORKFLOW), d)
        }
        Some(d) => (d, workflows.to_path_buf()),
    }
}

/// A `--role` argument: one of `roles`, listed in `--help` and in the error.
pub fn role_parser(roles: &[Role]) -> impl clap::builder::TypedValueParser<Value = Role> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(roles.iter().map(|r| r.as_str()))
        .map(|s| s.parse::<Role>().expect("a listed role parses"))
}

/// An error with its exit code, printed as one line.
#[derive(Debug)]
pub struct CliError {
    pub class: ErrorClass,
    pub message: String,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError { class: ErrorClass::BadInput, message: message.into() }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self.class {
            ErrorClass::BadInput => 2,
            ErrorClass::Refused => 3,
            ErrorClass::Internal => 1,
        })
    }
}

/// The one mapping of a classified app error to the CLI: its class decides the exit code.
macro_rules! classified {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for CliError {
            fn from(e: $error) -> Self {
                CliError { class: e.class(), message: e.to_string() }
            }
        }
    )*};
}

classified!(
    EngineError,
    IntakeError,
    crate::store::StoreError,
    crate::app::ServiceError,
    crate::app::work::ManualTaskError,
    crate::app::work::WorkError,
);

impl From<StartupError> for CliError {
    fn from(e: StartupError) -> Self {
        let class = match e {
            StartupError::Store(_) | StartupError::Blobs(_) => ErrorClass::Internal,
            _ => ErrorClass::BadInput,
        };
        let message = match &e {
            StartupError::Workflow(d) => one_line(d),
            _ => e.to_string(),
        };
        CliError { class, message }
    }
}

/// A refused definition in one line: the first problem and how many more.
fn one_line(e: &crate::workflow::DefinitionError) -> String {
    match e.0.as_slice() {
        [] => "workflow definition refused".into(),
        [only] => format!("workflow definition refused: {only}"),
        [first, rest @ ..] => format!(
            "workflow definition refused: {first} (and {} more; run `appealflow workflow check` for all)",
            rest.len()
        ),
    }
}

/// The clock for this invocation: the system clock, or a fixed instant when `--now` is
/// given and permitted.
pub fn clock_for(now: Option<&str>, override_allowed: bool) -> Result<Arc<dyn Clock>, CliError> {
    Ok(manual_clock_for(now, override_allowed)?.map_or_else(|| Arc::new(SystemClock) as Arc<dyn Clock>, |c| c as _))
}

/// The manual clock `--now` asks for, if any.
pub fn manual_clock_for(now: Option<&str>, override_allowed: bool) -> Result<Option<Arc<ManualClock>>, CliError> {
    match now {
        None => Ok(None),
        Some(_) if !override_allowed => Err(CliError::usage(format!(
            "--now is for tests and simulations only: set {CLOCK_OVERRIDE_ENV}=1 to allow it"
        ))),
        Some(raw) => {
            let at = DateTime::parse_from_rfc3339(raw).map_err(|e| {
                CliError::usage(format!(
                    "--now: {raw:?} is not an RFC 3339 instant ({e}); e.g. 2026-03-02T09:00:00+08:00"
                ))
            })?;
            Ok(Some(Arc::new(ManualClock::new(at.with_timezone(&Utc)))))
        }
    }
}

/// Reads `--json FILE|-`; returns the text and the directory relative paths resolve in.
fn read_input(source: &str) -> Result<(String, PathBuf), CliError> {
    if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::usage(format!("--json -: cannot read standard input: {e}")))?;
        Ok((text, PathBuf::from(".")))
    } else {
        let text = std::fs::read_to_string(source)
            .map_err(|e| CliError::usage(format!("--json {source}: cannot read: {e}")))?;
        let base = Path::new(source).parent().map(Path::to_path_buf).unwrap_or_default();
        Ok((text, base))
    }
}

fn print_json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(value).expect("views serialise"));
}

/// Everything a command needs, built on demand.
pub(crate) struct Context {
    pub database_url: String,
    pub workflows: PathBuf,
    pub clock: Arc<dyn Clock>,
    pub intake: IntakeConfig,
    /// `--id-hash-key` / APPEALFLOW_ID_HASH_KEY, if given.
    pub id_hash_key: Option<String>,
    pub work: startup::WorkConfig,
    pub db: startup::DbOptions,
    pub janitor: crate::app::janitor::JanitorConfig,
}

impl Context {
    /// The janitor on `engine`, with the blob store of `--blob-dir`.
    pub fn janitor(&self, engine: Arc<Engine>) -> Result<Arc<crate::app::janitor::Janitor>, CliError> {
        let blobs = crate::adapters::blobs::LocalBlobStore::open(&self.intake.blob_dir)
            .map_err(|e| CliError::usage(format!("--blob-dir: {e}")))?;
        Ok(Arc::new(crate::app::janitor::Janitor::new(engine, Arc::new(blobs), self.janitor)))
    }

    pub async fn database(&self) -> Result<Arc<dyn crate::store::Store>, CliError> {
        Ok(startup::open_with(&self.database_url, &self.db).await?.0)
    }

    /// What the application is built from; `intake` for commands that take appeals in
    /// (only they need the ID-number hash key).
    pub fn settings(&self, intake: bool) -> Result<Settings, CliError> {
        let settings = Settings {
            database_url: self.database_url.clone(),
            workflows: self.workflows.clone(),
            db: self.db.clone(),
            work: self.work.clone(),
            intake: None,
        };
        Ok(if intake { settings.with_intake(self.intake_config()?) } else { settings })
    }

    /// The application on the context's database, as every command builds it.
    pub async fn application(&self, intake: bool) -> Result<Application, CliError> {
        Ok(Application::build(&self.settings(intake)?, self.clock.clone()).await?)
    }

    pub async fn engine(&self) -> Result<Arc<Engine>, CliError> {
        Ok(self.application(false).await?.engine)
    }

    pub async fn intake(&self) -> Result<Arc<Intake>, CliError> {
        let app = self.application(true).await?;
        Ok(app.intake().expect("built with intake settings").clone())
    }

    /// The intake settings with the ID-number hash key: the one given, or for an embedded
    /// SQLite database the key kept beside it (created on first use).
    pub fn intake_config(&self) -> Result<IntakeConfig, CliError> {
        let mut config = self.intake.clone();
        config.id_hash_key = id_hash_key(self.id_hash_key.as_deref(), &self.database_url)?;
        Ok(config)
    }
}

/// The ID-number hash key: `APPEALFLOW_ID_HASH_KEY`, or — for an embedded SQLite
/// database only — a random key kept in a file beside it (`DB.idkey`, readable by its
/// owner only), created on first use. A PostgreSQL deployment must configure the key.
fn id_hash_key(given: Option<&str>, database_url: &str) -> Result<Option<String>, CliError> {
    if let Some(key) = given.filter(|k| !k.is_empty()) {
        return Ok(Some(key.to_string()));
    }
    let Some(path) = database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:")) else {
        return Ok(None);
    };
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path.contains(":memory:") {
        return Ok(None);
    }
    let file = PathBuf::from(format!("{path}.idkey"));
    if let Ok(key) = std::fs::read_to_string(&file) {
        return Ok(Some(key.trim().to_string()));
    }
    if file.parent().is_some_and(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
        return Ok(None);
    }
    let key = crate::app::access::new_secret("");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&file).and_then(|mut f| std::io::Write::write_all(&mut f, key.as_bytes())) {
        Ok(()) => {
            eprintln!("note: created the ID-number hash key {} (keep it with the database)", file.display());
            Ok(Some(key))
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(&file).ok().map(|k| k.trim().to_string()))
        }
        Err(e) => Err(CliError::usage(format!("cannot create the ID-number hash key {}: {e}", file.display()))),
    }
}

/// Where notifications and account changes go.
fn work_config(cli: &Cli) -> startup::WorkConfig {
    let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    let pair =
        |url: &Option<String>, secret: &Option<String>| given(url).map(|u| (u, given(secret).unwrap_or_default()));
    startup::WorkConfig {
        lead_emails: cli.lead_emails.iter().map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect(),
        notify_webhook: pair(&cli.notify_webhook_url, &cli.notify_webhook_secret),
        actions_url: pair(&cli.actions_url, &cli.actions_secret),
        http_timeout: std::time::Duration::from_secs(cli.http_timeout_secs),
    }
}

/// A parsed command line, not yet run: parsed before the runtime starts.
pub struct Parsed {
    cli: Cli,
    explicit_database: bool,
}

impl Parsed {
    /// The `worker` command (a process that only runs jobs and timers).
    pub fn is_worker(&self) -> bool {
        matches!(self.cli.command, Command::Worker(_))
    }

    /// Runs the command; the process's exit code.
    pub async fn run(self) -> ExitCode {
        match run(self.cli, self.explicit_database).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {}", e.message);
                e.exit_code()
            }
        }
    }
}

/// Parses the process's command line: the command to run, or the exit code of
/// `--help`, `--version` or a usage error (printed).
pub fn parse() -> Result<Parsed, ExitCode> {
    parse_from(std::env::args_os())
}

/// As [`parse`], from `args` (the program's name first).
fn parse_from<I, T>(args: I) -> Result<Parsed, ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = match Cli::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return Err(ExitCode::SUCCESS);
        }
        Err(e) => return Err(usage_error(&e)),
    };
    let cli = Cli::from_arg_matches(&matches).map_err(|e| usage_error(&e))?;
    let explicit_database = matches.value_source("database_url") == Some(ValueSource::CommandLine);
    Ok(Parsed { cli, explicit_database })
}

fn usage_error(e: &clap::Error) -> ExitCode {
    // One line, like every other error; `--help` shows the details.
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
    eprintln!("error: {first} (see --help)");
    ExitCode::from(2)
}

/// Runs a parsed command line. `explicit_database` says whether `--database-url` was
/// given on the command line (the demo ignores the environment's database).
pub async fn run(cli: Cli, explicit_database: bool) -> Result<(), CliError> {
    let override_allowed = cli.allow_clock_override;
    // `worker --until` simulates on a manual clock, starting now unless --now says when.
    let wants_manual = matches!(&cli.command, Command::Worker(w) if w.until.is_some());
    if wants_manual && !override_allowed {
        return Err(CliError::usage(format!(
            "worker --until runs a simulation on a manual clock: set {CLOCK_OVERRIDE_ENV}=1 to allow it"
        )));
    }
    let manual_clock = match manual_clock_for(cli.now.as_deref(), override_allowed)? {
        Some(c) => Some(c),
        None if wants_manual => Some(Arc::new(ManualClock::new(Utc::now()))),
        None => None,
    };
    let clock: Arc<dyn Clock> = match &manual_clock {
        Some(c) => c.clone(),
        None => Arc::new(SystemClock),
    };
    let workflows = cli.workflows.clone().unwrap_or_else(startup::default_workflows_dir);
    let ctx = Context {
        database_url: cli.database_url.clone().unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string()),
        id_hash_key: cli.id_hash_key.clone(),
        workflows: workflows.clone(),
        clock,
        intake: IntakeConfig {
            blob_dir: cli.blob_dir.clone(),
            // Resolved when a command needs it (`Context::intake_config`): a command that
            // opens no database creates no key file.
            id_hash_key: None,
            limits: DocumentLimits {
                max_bytes: cli.max_document_bytes,
                max_pixels: cli.max_image_pixels,
                max_per_draft: cli.max_documents_per_draft,
                max_per_kind: cli.max_documents_per_kind,
                max_draft_bytes: cli.max_draft_bytes,
            },
            // PDFs are parsed by this very binary in a sandboxed child process.
            pdf_inspector: std::env::current_exe().ok(),
        },
        work: work_config(&cli),
        db: startup::DbOptions {
            max_attempts: cli.max_attempts.max(1),
            sqlite_busy: std::time::Duration::from_millis(cli.sqlite_busy_ms),
        },
        janitor: crate::app::janitor::JanitorConfig {
            draft_ttl: std::time::Duration::from_secs(cli.draft_ttl_hours.max(1) * 3600),
            blob_grace: std::time::Duration::from_secs(cli.blob_grace_secs),
            ..Default::default()
        },
    };

    match cli.command {
        Command::Migrate => {
            ctx.database().await?;
            println!("migrations applied to {}", redact_url(&ctx.database_url));
        }
        Command::Demo => {
            let url = if explicit_database { cli.database_url.as_deref() } else { None };
            demo::run(url, &workflows, &ctx.db).await?
        }
        Command::Workflow(WorkflowCommand::Check { dir }) => {
            let (dir, workflows) = workflow_dir(dir, &workflows);
            match load_dir(&dir, &workflows) {
                Ok(versions) => {
                    for wf in versions.all() {
                        println!(
                            "{}: workflow {:?} v{} is valid ({} states, {} transitions, {} timers, calendar {})",
                            wf.dir.join("workflow.toml").display(),
                            wf.name(),
                            wf.def.workflow.version,
                            wf.def.states.len(),
                            wf.def.transitions.len(),
                            wf.def.timers.len(),
                            wf.calendar.name
                        );
                    }
                    for m in versions.migrations() {
                        println!("{}: migration v{} -> v{} is valid", m.file.display(), m.from, m.to);
                    }
                }
                Err(e) => {
                    // Every reason on stdout, one per line; the error itself stays one line.
                    for p in &e.0 {
                        println!("{p}");
                    }
                    return Err(CliError::usage(one_line(&e)));
                }
            }
        }
        Command::Workflow(WorkflowCommand::Graph { dir, format, version }) => {
            let (dir, workflows) = workflow_dir(dir, &workflows);
            let versions = load_dir(&dir, &workflows).map_err(|e| CliError::usage(one_line(&e)))?;
            let wf = match version {
                None => versions.newest(),
                Some(v) => versions.get(i64::from(v)).ok_or_else(|| {
                    let loaded: Vec<String> = versions.all().map(|w| w.def.workflow.version.to_string()).collect();
                    CliError::usage(format!("--version: no version {v} is loaded (loaded: {})", loaded.join(", ")))
                })?,
            };
            print!("{}", render(&wf.def, format));
        }
        Command::Appeal(cmd) => appeal::appeal(&ctx, cmd).await?,
        Command::Accounts(cmd) => appeal::accounts(&ctx, cmd).await?,
        Command::Timers(cmd) => appeal::timers(ctx.engine().await?.as_ref(), cmd).await?,
        Command::Calendar(cmd) => calendar::calendar(&workflows.join("calendars"), cmd)?,
        Command::Worker(args) => worker::worker(&ctx, args, manual_clock).await?,
        Command::Serve(args) => serve::serve(&ctx, args).await?,
        Command::Tokens(cmd) => serve::tokens(&ctx, cmd).await?,
        Command::Jobs(cmd) => worker::jobs(&ctx, cmd).await?,
        Command::Notifications(cmd) => worker::notifications(&ctx, cmd).await?,
        Command::Actions(cmd) => worker::actions(&ctx, cmd).await?,
        Command::Whatif(args) => whatif::whatif(&ctx, args).await?,
    }
    Ok(())
}

/// A workflow directory's versions and migrations; its calendars come from its parent's
/// `calendars/` when present.
fn load_dir(dir: &Path, workflows: &Path) -> Result<crate::workflow::Versions, crate::workflow::DefinitionError> {
    let calendars =
        dir.parent().map(|p| p.join("calendars")).filter(|c| c.is_dir()).unwrap_or_else(|| workflows.join("calendars"));
    crate::workflow::Versions::load(dir, &calendars)
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

#[cfg(test)]
mod tests;
