//! Handlers of the `appeal`, `accounts` and `timers` subcommands.

use super::{AccountsCommand, AppealCommand, CliError, Context, Format, TimersCommand, print_json, read_input};
use crate::app::intake::{EntityLink, LocalFiles};
use crate::app::{self, parse_json};
use crate::domain::draft::DraftInput;
use crate::domain::rules::Checklist;
use crate::domain::{Account, AccountInput, Actor, FieldError, check_text};
use crate::engine::{Engine, EngineError};
use crate::workflow::Fire;

fn actor(name: &str, role: crate::domain::Role) -> Result<Actor, CliError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(CliError::usage("--actor: required, the name of who acts"));
    }
    check_text("--actor", name, false).map_err(|e| CliError::usage(e.to_string()))?;
    Ok(Actor::new(name, role))
}

pub(super) async fn appeal(ctx: &Context, cmd: AppealCommand) -> Result<(), CliError> {
    match cmd {
        AppealCommand::Create { json, idempotency_key } => {
            let (text, base) = read_input(&json)?;
            let input: DraftInput = parse_json(&text)?;
            let intake = ctx.intake().await?;
            let out = intake.submit(input, &LocalFiles { base }, idempotency_key.as_deref()).await?;
            println!("{}", out.ticket);
            if let Some(old) = &out.superseded {
                eprintln!("note: appeal {old} was waiting in its resubmission window and is now closed as superseded");
            }
            if let Some(screening) = &out.screening {
                eprintln!("note: rejected at screening: {screening}");
            }
        }
        AppealCommand::Checklist { json, format } => {
            let (text, base) = read_input(&json)?;
            let input: DraftInput = parse_json(&text)?;
            // The local files examined as `create` would, so "ready" means it would accept them.
            let checklist = ctx.intake().await?.checklist_with_files(input, &LocalFiles { base }).await?;
            match format {
                Format::Json => print_json(&checklist),
                Format::Text => print_checklist(&checklist),
            }
            if !checklist.ready() {
                // As `create` would refuse it: bad input, exit 2.
                return Err(CliError::usage(format!(
                    "the draft is not ready to submit: {} problem(s), listed above",
                    checklist.problems.len()
                )));
            }
        }
        AppealCommand::Resubmit { ticket, json, idempotency_key } => {
            let ticket = app::parse_ticket(&ticket)?;
            let (text, base) = read_input(&json)?;
            let input: DraftInput = parse_json(&text)?;
            let intake = ctx.intake().await?;
            let out = intake.resubmit(&ticket, input, &LocalFiles { base }, idempotency_key.as_deref()).await?;
            println!(
                "{}: {} -> {} (version {}){}",
                out.ticket,
                out.from.as_deref().unwrap_or("(new)"),
                out.state,
                out.version,
                if out.replayed { " [replayed]" } else { "" }
            );
        }
        AppealCommand::Progress { ticket, phone, json } => {
            let progress = ctx.intake().await?.progress(&ticket, &phone).await?;
            if json {
                print_json(&progress);
            } else {
                println!("ticket    {}", progress.ticket);
                println!(
                    "stage     {}{}",
                    progress.stage,
                    progress.outcome.as_deref().map(|o| format!(" ({o})")).unwrap_or_default()
                );
                // In the appeal's language; `--json` keeps the codes beside the words.
                for r in &progress.reasons_in_words {
                    println!("reason    {r}");
                }
                if let Some(until) = &progress.continue_until {
                    println!("continue  until {until}: modify and add documents, then resubmit");
                }
                println!("received  {}", progress.received_at);
                println!("updated   {}", progress.updated_at);
                println!("time zone {}", progress.time_zone);
            }
        }
        AppealCommand::Migrate { tickets, to, actor: name } => {
            let engine = ctx.engine().await?;
            let who = actor(&name, crate::domain::Role::Admin)?;
            // Every ticket number is parsed before any appeal moves; then each appeal moves
            // on its own (one unit of work each), and a failure does not stop the rest. An
            // appeal already on `to` is left as it is, so a batch can simply be run again.
            let tickets = tickets.iter().map(|t| app::parse_ticket(t)).collect::<Result<Vec<_>, _>>()?;
            let mut failed: Vec<CliError> = Vec::new();
            for ticket in &tickets {
                if app::show(&engine, ticket).await.is_ok_and(|v| v.workflow_version == to) {
                    println!("{ticket}: already on v{to}");
                    continue;
                }
                match engine.migrate(ticket, to, &who).await {
                    Ok(out) => println!(
                        "{}: migrated to v{to}: {} -> {} (version {})",
                        out.ticket,
                        out.from.as_deref().unwrap_or(""),
                        out.state,
                        out.version
                    ),
                    Err(e) => {
                        eprintln!("{ticket}: not migrated: {e}");
                        failed.push(e.into());
                    }
                }
            }
            if let Some(first) = failed.into_iter().next() {
                return Err(first);
            }
        }
        AppealCommand::Show { ticket, json } => {
            let engine = ctx.engine().await?;
            let view = app::show(&engine, &app::parse_ticket(&ticket)?).await?;
            if json {
                print_json(&view);
            } else {
                println!("ticket     {}", view.ticket);
                println!("account    {}", view.account);
                println!("workflow   {} v{}", view.workflow, view.workflow_version);
                println!(
                    "state      {}{}",
                    view.state,
                    view.outcome.as_deref().map(|o| format!(" ({o})")).unwrap_or_default()
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
                    let reasons =
                        if h.reasons.is_empty() { String::new() } else { format!(" — {}", h.reasons.join("; ")) };
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
            let actor = actor(&args.actor, args.role)?;
            let cmd = Fire {
                transition: args.transition,
                reasons: args.reasons,
                payload: serde_json::Value::Null,
                expect_version: args.expect_version,
            };
            let engine = ctx.engine().await?;
            let out = engine.fire(&ticket, &cmd, &actor, args.idempotency_key.as_deref()).await?;
            println!(
                "{}: {} -> {}{} (version {}){}",
                out.ticket,
                out.from.as_deref().unwrap_or("(new)"),
                out.state,
                out.outcome.as_deref().map(|o| format!(" ({o})")).unwrap_or_default(),
                out.version,
                if out.replayed { " [replayed]" } else { "" }
            );
        }
        AppealCommand::LinkEntityChange {
            ticket,
            entity_ticket,
            account,
            actor: name,
            role,
            idempotency_key,
            expect_version,
        } => {
            let ticket = app::parse_ticket(&ticket)?;
            let actor = actor(&name, role)?;
            let intake = ctx.intake().await?;
            let link = EntityLink { entity_ticket: &entity_ticket, account: &account };
            let out =
                intake.link_entity_change(&ticket, &link, &actor, expect_version, idempotency_key.as_deref()).await?;
            println!("{}: entity-change ticket {entity_ticket} linked (version {})", out.ticket, out.version);
        }
        AppealCommand::List { state, json } => {
            let engine = ctx.engine().await?;
            let rows = app::list(&engine, state).await?;
            if json {
                print_json(&rows);
            } else {
                for r in rows {
                    println!("{}  {:<20} v{:<3} {}", r.ticket, r.state, r.version, r.account);
                }
            }
        }
    }
    Ok(())
}

fn print_checklist(c: &Checklist) {
    match (&c.case, &c.case_title) {
        (Some(case), Some(title)) => println!("case: {case} — {title}"),
        _ => println!("case: none"),
    }
    if let Some(s) = &c.screening {
        println!("screening: this appeal will be rejected on submission — {s}");
    }
    println!("secure phone changes: {}", if c.changes_secure_phone { "yes" } else { "no" });
    if c.requires_entity_change_ticket {
        println!(
            "before approval: an entity-change request from an account verified as the new company must be linked"
        );
    }
    if !c.documents.is_empty() {
        println!("documents:");
    }
    for d in &c.documents {
        let kinds: Vec<&str> = d.documents.iter().map(|k| k.as_str()).collect();
        let need = match d.when {
            Some(w) => format!(
                "{:?} ({})",
                d.need,
                serde_json::to_value(w).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
            ),
            None => format!("{:?}", d.need),
        };
        println!(
            "  [{:<10}] {:<50} {:<40} {}",
            d.status.to_string(),
            kinds.join(" or "),
            need.to_lowercase(),
            d.reason
        );
    }
    if !c.missing.is_empty() {
        println!("missing: {}", c.missing.join("; "));
    }
    if !c.problems.is_empty() {
        println!("problems:");
        for p in &c.problems {
            println!("  {p}");
        }
    }
    println!("ready to submit: {}", if c.ready() { "yes" } else { "no" });
}

pub(super) async fn accounts(ctx: &Context, cmd: AccountsCommand) -> Result<(), CliError> {
    match cmd {
        AccountsCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::usage(format!("{}: cannot read: {e}", file.display())))?;
            let inputs: Vec<AccountInput> = parse_json(&text)?;
            let hasher = crate::startup::id_hasher(ctx.intake_config()?.id_hash_key.as_deref())?;
            let mut accounts = Vec::new();
            let mut problems: Vec<FieldError> = Vec::new();
            for (i, input) in inputs.into_iter().enumerate() {
                match input.into_account(&format!("[{i}]"), &hasher) {
                    Ok(a) => accounts.push(a),
                    Err(mut e) => problems.append(&mut e),
                }
            }
            if !problems.is_empty() {
                return Err(EngineError::Invalid(problems).into());
            }
            let engine = ctx.engine().await?;
            app::admin::import_accounts(&engine, &accounts).await?;
            println!("{} account(s) imported", accounts.len());
        }
        AccountsCommand::Show { name, json } => {
            let engine = ctx.engine().await?;
            let account = app::admin::account(&engine, &name)
                .await?
                .ok_or_else(|| CliError::usage(format!("no account named {name:?} in the directory")))?;
            if json {
                print_json(&account);
            } else {
                print_account(&account);
            }
        }
    }
    Ok(())
}

fn print_account(a: &Account) {
    println!("account        {}", a.name);
    let name = |v: serde_json::Value| v.as_str().map(str::to_string).unwrap_or_default();
    println!("verification   {}", name(serde_json::json!(a.verification)));
    if let Some(p) = &a.verified_individual {
        println!("individual     {} ({})", p.name, p.id.masked);
    }
    if let Some(n) = &a.enterprise_name {
        println!("enterprise     {n} ({})", name(serde_json::json!(a.enterprise_status)));
    }
    if let Some(p) = &a.legal_representative {
        println!("legal rep.     {} ({})", p.name, p.id.masked);
    }
    let s = &a.associations;
    println!(
        "associations   phone: {}, domains: {}, ICP domains: {}, email domains: {}, invoices: {}, ICP filings: {}",
        s.phone.as_ref().map_or("-".into(), |p| p.masked()),
        s.domains.join(" "),
        s.icp_domains.join(" "),
        s.email_domains.join(" "),
        s.issued_invoices,
        s.icp_filings
    );
    let sec = &a.security;
    println!(
        "security       phone: {}, email: {}, MFA: {}, questions: {}, IP mask: {}",
        sec.secure_phone.as_ref().map_or("-".into(), |p| p.masked()),
        sec.security_email.as_deref().unwrap_or("-"),
        sec.mfa_attached,
        sec.security_questions_set,
        sec.ip_logon_mask.as_deref().unwrap_or("-")
    );
}

pub(super) async fn timers(engine: &Engine, cmd: TimersCommand) -> Result<(), CliError> {
    match cmd {
        TimersCommand::List { appeal, json } => {
            let ticket = appeal.as_deref().map(app::parse_ticket).transpose()?;
            let timers = app::admin::timers(engine, ticket.as_ref()).await?;
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
                match r.outcome {
                    "fired" => println!("{}  {} fired", r.timer.ticket, r.timer.name),
                    other => {
                        println!("{}  {} {other}: {}", r.timer.ticket, r.timer.name, r.note.as_deref().unwrap_or(""))
                    }
                }
            }
            // A timer left `changed` is decided again by a later batch of the same run:
            // counted once, by its last outcome.
            let timers: std::collections::HashSet<i64> = runs.iter().map(|r| r.timer.id).collect();
            println!("{} timer(s) due", timers.len());
        }
    }
    Ok(())
}
