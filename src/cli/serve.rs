//! `appealflow serve` and `appealflow tokens`.

use std::sync::Arc;

use clap::{Args, Subcommand};

use super::{CliError, Context, print_json};
use crate::app::janitor::Janitor;
use crate::domain::Role;
use crate::engine::ErrorClass;
use crate::http::{AppState, HttpConfig};
use crate::jobs::WorkerSettings;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Do not run the job worker in this process.
    #[arg(long)]
    pub no_worker: bool,
    /// Progress queries allowed per client address a minute (counted in this process).
    #[arg(long, env = "APPEALFLOW_PROGRESS_PER_MINUTE", default_value_t = 10)]
    pub progress_per_minute: u32,
    /// Wrong progress answers one client may give for one ticket in 15 minutes
    /// (counted in the database, shared by every process).
    #[arg(long, env = "APPEALFLOW_PROGRESS_CLIENT_FAILURES", default_value_t = 5)]
    pub progress_client_failures: u32,
    /// Wrong progress answers one ticket may receive in a day before each client is
    /// held to one wrong answer a day for it (counted in the database).
    #[arg(long, env = "APPEALFLOW_PROGRESS_TICKET_FAILURES", default_value_t = 30)]
    pub progress_ticket_failures: u32,
    /// A wrong progress answer is sent no sooner than this many milliseconds after the
    /// query arrived (its timing then tells nothing about why it was wrong).
    #[arg(long, env = "APPEALFLOW_PROGRESS_FLOOR_MS", default_value_t = 25)]
    pub progress_floor_ms: u64,
    /// Drafts one client address may create an hour (counted in the database).
    #[arg(long, env = "APPEALFLOW_DRAFTS_PER_HOUR", default_value_t = 20)]
    pub drafts_per_hour: u32,
    /// A token that may read /metrics on --listen (admin tokens may too). Keep it in the
    /// environment, not on a command line.
    #[arg(long, env = "APPEALFLOW_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// The facial-recognition provider's callback secret (HMAC-SHA256); without it,
    /// provider callbacks are refused. Keep it in the environment.
    #[arg(long, env = "APPEALFLOW_FACE_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub face_secret: Option<String>,
    /// Also serve /metrics, without credentials, on this address (a private one: the
    /// scraper's network, never the applicants').
    #[arg(long, env = "APPEALFLOW_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Open connections at most (keep it below the process's open-file limit); when
    /// reached, the connection idle the longest is closed to make room.
    #[arg(long, env = "APPEALFLOW_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    /// A request's headers must arrive whole within this many seconds.
    #[arg(long, env = "APPEALFLOW_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
    /// A kept-alive connection with no request in flight is closed after this many seconds.
    #[arg(long, env = "APPEALFLOW_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// A document upload, its whole body included, must complete within this many seconds.
    #[arg(long, env = "APPEALFLOW_UPLOAD_TIMEOUT_SECS", default_value_t = 120)]
    pub upload_timeout_secs: u64,
    /// Mark the pages' cookies Secure: set when appealflow is reached over TLS (directly or
    /// behind a proxy that terminates it).
    #[arg(long, env = "APPEALFLOW_SECURE_COOKIES")]
    pub secure_cookies: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token for a reviewer, lead or admin; prints it once.
    Create {
        /// The token's role.
        #[arg(long, value_parser = super::role_parser(&[Role::Reviewer, Role::Lead, Role::Admin]))]
        role: Role,
        /// Who the token is for: the name decisions are recorded under (1 to 100
        /// characters; a reviewer's name is what `reassign` takes).
        #[arg(long)]
        name: String,
        /// A lead's email address: SLA warnings and breaches go there while the token
        /// is not revoked.
        #[arg(long)]
        email: Option<String>,
    },
    /// Tokens (never the tokens themselves).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id.
    Revoke {
        /// The token's id (`tokens list`).
        id: String,
    },
}

/// With no provider secret configured and a loopback listener, the development
/// facial-recognition provider stands in (a fresh machine's journey is whole); anywhere
/// else, a missing secret leaves applicants with no provider. Says which.
fn dev_face(config: &mut HttpConfig, addr: std::net::SocketAddr) -> &'static str {
    if config.face_secret.is_some() {
        return "the configured provider (APPEALFLOW_FACE_SECRET)";
    }
    if !addr.ip().is_loopback() {
        return "none: set APPEALFLOW_FACE_SECRET (the development provider serves loopback only)";
    }
    let secret = crate::app::access::new_secret("devface_").into_bytes();
    config.face_secret = Some(secret.clone());
    config.web.dev_face =
        Some(crate::http::web::DevFace { secret, callback: format!("http://{addr}/v1/facial-recognition") });
    "the development provider at /dev/face (loopback only; set APPEALFLOW_FACE_SECRET for a real one)"
}

pub(super) async fn serve(ctx: &Context, args: ServeArgs) -> Result<(), CliError> {
    let app = ctx.application(true).await?;
    let intake = app.intake().expect("built with intake settings").clone();
    let janitor = Janitor::new(app.engine.clone(), intake.blobs().clone(), ctx.janitor);
    let work = app.work.clone();
    if !args.no_worker && work.lead_emails().await?.is_empty() {
        tracing::warn!(
            "no reviewer lead has an email (tokens create --role lead --email ...) and APPEALFLOW_LEAD_EMAILS is not \
             set: SLA warnings and breaches reach nobody"
        );
    }
    let failures = |n: u32, secs: u64| crate::app::limits::Budget::per(n.max(1), std::time::Duration::from_secs(secs));
    let config = HttpConfig {
        progress_per_minute: args.progress_per_minute,
        progress_policy: crate::app::limits::ProgressPolicy {
            per_client_failures: failures(args.progress_client_failures, 15 * 60),
            per_ticket_failures: failures(args.progress_ticket_failures, 24 * 3600),
        },
        progress_floor: std::time::Duration::from_millis(args.progress_floor_ms),
        drafts_per_hour: args.drafts_per_hour,
        metrics_token: args.metrics_token.clone().filter(|t| !t.trim().is_empty()),
        upload_timeout: std::time::Duration::from_secs(args.upload_timeout_secs.max(1)),
        connections: crate::http::server::ConnectionLimits {
            max_connections: args.max_connections.max(1),
            header_read_timeout: std::time::Duration::from_secs(args.header_read_timeout_secs.max(1)),
            idle_timeout: std::time::Duration::from_secs(args.idle_timeout_secs.max(1)),
        },
        face_secret: args.face_secret.clone().filter(|s| !s.is_empty()).map(String::into_bytes),
        web: crate::http::web::WebConfig { secure_cookies: args.secure_cookies, ..Default::default() },
        ..HttpConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| CliError::usage(format!("--listen {}: cannot listen: {e}", args.listen)))?;
    let addr = listener.local_addr().map_err(|e| CliError { class: ErrorClass::Internal, message: e.to_string() })?;
    let mut config = config;
    let face = dev_face(&mut config, addr);
    println!("appealflow listening on http://{addr}");
    println!("  pages     http://{addr}/ (applicants), http://{addr}/console (staff)");
    println!("  face      {face}");
    println!("  database  {}", super::redact_url(&ctx.database_url));
    println!("  documents {}", ctx.intake.blob_dir.display());
    println!("  worker    {}", if args.no_worker { "not in this process (--no-worker)" } else { "in this process" });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal = super::worker::shutdown_signal();
    tokio::spawn(async move {
        signal.await;
        let _ = stop_tx.send(true);
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let worker = (!args.no_worker).then(|| {
        // In a server the worker never gives up: while it cannot work, /readyz says so.
        let settings = WorkerSettings { max_attempts: ctx.db.max_attempts, give_up_after: None, ..Default::default() };
        tokio::spawn(crate::jobs::run(app.runtime(settings).with_janitor(Arc::new(janitor)), wait(stop_rx.clone())))
    });
    let engine = intake.engine().clone();
    let state = Arc::new(AppState::new(intake, work, config));
    if let Some(addr) = &args.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| CliError::usage(format!("--metrics-listen {addr}: cannot listen: {e}")))?;
        println!(
            "  metrics   http://{}/metrics (no credentials)",
            metrics.local_addr().map_or(addr.clone(), |a| a.to_string())
        );
        tokio::spawn(crate::http::serve_metrics(metrics, state.clone(), wait(stop_rx.clone())));
    }
    crate::http::serve(listener, state, wait(stop_rx))
        .await
        .map_err(|e| CliError { class: ErrorClass::Internal, message: format!("server: {e}") })?;
    if let Some(w) = worker {
        match w.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(CliError { class: ErrorClass::Internal, message: format!("worker: {e}") }),
            Err(e) => return Err(CliError { class: ErrorClass::Internal, message: format!("worker: {e}") }),
        }
    }
    crate::app::health::close_database(&engine).await;
    println!("appealflow stopped");
    Ok(())
}

pub(super) async fn tokens(ctx: &Context, cmd: TokensCommand) -> Result<(), CliError> {
    let store = ctx.database().await?;
    match cmd {
        TokensCommand::Create { role, name, email } => {
            let (token, record) =
                crate::app::access::create_token(store.as_ref(), role, &name, email.as_deref(), ctx.clock.now())
                    .await
                    .map_err(|e| match e {
                        crate::app::access::TokenError::Store(s) => CliError::from(s),
                        other => CliError::usage(other.to_string()),
                    })?;
            println!("{token}");
            eprintln!(
                "note: token {} for {} ({}) — shown once; only its hash is stored",
                record.id, record.name, record.role
            );
        }
        TokensCommand::List { json } => {
            let tokens = store.tokens().await?;
            if json {
                print_json(&tokens);
            } else {
                for t in tokens {
                    println!(
                        "{}  {:<8} {:<24} {:<28} created {}{}",
                        t.id,
                        t.role.as_str(),
                        t.name,
                        t.email.as_deref().unwrap_or("-"),
                        t.created_at.to_rfc3339(),
                        t.revoked_at.map(|r| format!("  revoked {}", r.to_rfc3339())).unwrap_or_default()
                    );
                }
            }
        }
        TokensCommand::Revoke { id } => {
            if !store.revoke_token(&id, ctx.clock.now()).await? {
                return Err(CliError {
                    class: ErrorClass::Refused,
                    message: format!("no unrevoked token with id {id:?}"),
                });
            }
            println!("token {id} revoked");
        }
    }
    Ok(())
}
