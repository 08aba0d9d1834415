//! `appealflow whatif`: the recorded timers re-armed under a proposed calendar or
//! workflow (`app::whatif`), as a summary table and the timers that would differ, or
//! `--json`. Nothing is written.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Args;

use super::{CliError, Context, load_dir, one_line, print_json};
use crate::app::whatif::{self, TimerChange};
use crate::calendar::Calendar;
use crate::workflow::Workflow;

#[derive(Debug, Args)]
pub struct WhatifArgs {
    /// A proposed calendar file (say, the loaded one with next year's arrangement added):
    /// it replaces the workflow's calendar.
    #[arg(long, value_name = "FILE")]
    pub calendar: Option<PathBuf>,
    /// A proposed workflow directory (its workflow.toml; calendars from its parent's
    /// `calendars/`). With --calendar too, that calendar replaces the proposal's.
    #[arg(long, value_name = "DIR")]
    pub workflow: Option<PathBuf>,
    /// Only timers armed at or after this instant (default: the first).
    #[arg(long, value_name = "RFC3339")]
    pub from: Option<String>,
    /// Only timers armed before this instant (default: none excluded).
    #[arg(long, value_name = "RFC3339")]
    pub to: Option<String>,
    /// How many differing timers the text output lists (--json lists all).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print the whole report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn instant(flag: &str, raw: Option<&str>, default: DateTime<Utc>) -> Result<DateTime<Utc>, CliError> {
    match raw {
        None => Ok(default),
        Some(raw) => DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)).map_err(|e| {
            CliError::usage(format!(
                "--{flag}: {raw:?} is not an RFC 3339 instant ({e}); e.g. 2027-01-01T00:00:00+08:00"
            ))
        }),
    }
}

pub(super) async fn whatif(ctx: &Context, args: WhatifArgs) -> Result<(), CliError> {
    if args.calendar.is_none() && args.workflow.is_none() {
        return Err(CliError::usage("nothing proposed: give --calendar FILE, --workflow DIR, or both"));
    }
    // Bounds every stored instant compares with as text too (SQLite's column), year 0001
    // to 9999: no timer is armed outside them.
    let earliest = DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z").expect("an instant").to_utc();
    let latest = DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z").expect("an instant").to_utc();
    let from = instant("from", args.from.as_deref(), earliest)?.max(earliest);
    let to = instant("to", args.to.as_deref(), latest)?.min(latest);
    if from >= to {
        return Err(CliError::usage(format!("--from {from} is not before --to {to}")));
    }
    let engine = ctx.engine().await?;
    let mut proposed = match &args.workflow {
        Some(dir) => {
            let versions =
                load_dir(dir, &ctx.workflows).map_err(|e| CliError::usage(format!("--workflow: {}", one_line(&e))))?;
            // The proposal is the folder's newest version.
            Workflow::clone(versions.newest())
        }
        None => Workflow::clone(engine.workflow()),
    };
    if let Some(file) = &args.calendar {
        let text = std::fs::read_to_string(file)
            .map_err(|e| CliError::usage(format!("--calendar {}: cannot read: {e}", file.display())))?;
        proposed.calendar =
            Calendar::from_toml(file, &text).map_err(|e| CliError::usage(format!("--calendar: {e}")))?;
    }
    let report = whatif::replay(&engine, &proposed, from, to).await?;
    if args.json {
        print_json(&report);
        return Ok(());
    }
    let zone = engine.workflow().calendar.time_zone;
    let local = |t: DateTime<Utc>| t.with_timezone(&zone).format("%Y-%m-%d %H:%M").to_string();
    println!(
        "what-if: {} with calendar {} (proposed): {} timers read, {} would differ on {} appeals",
        report.workflow,
        report.calendar,
        report.timers_read,
        report.changes.len(),
        report.appeals_affected
    );
    println!(
        "{:<28} {:>7} {:>7} {:>8} {:>7} {:>13} {:>11}  consequences",
        "timer", "read", "differ", "earlier", "later", "most earlier", "most later"
    );
    for s in &report.summary {
        let consequences: Vec<String> = s.consequences.iter().map(|(c, n)| format!("{} {n}", name(c))).collect();
        println!(
            "{:<28} {:>7} {:>7} {:>8} {:>7} {:>13} {:>11}  {}",
            s.timer,
            s.read,
            s.differ,
            s.earlier,
            s.later,
            shift(s.most_earlier_seconds),
            shift(s.most_later_seconds),
            consequences.join(", ")
        );
    }
    for c in report.changes.iter().take(args.limit) {
        println!("{}", line(c, &local));
    }
    if report.changes.len() > args.limit {
        println!("... and {} more (--limit N, or --json for all)", report.changes.len() - args.limit);
    }
    Ok(())
}

fn name(c: &whatif::Consequence) -> String {
    serde_json::to_value(c).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// A shift in seconds as days and hours, signed (`+6d 0h`, `-3h`); `0` for none.
fn shift(seconds: i64) -> String {
    if seconds == 0 {
        return "0".into();
    }
    let sign = if seconds < 0 { '-' } else { '+' };
    let (days, hours) = (seconds.abs() / 86_400, seconds.abs() % 86_400 / 3_600);
    if days > 0 { format!("{sign}{days}d {hours}h") } else { format!("{sign}{hours}h") }
}

fn line(c: &TimerChange, local: &impl Fn(DateTime<Utc>) -> String) -> String {
    let proposed = c.proposed_due.map_or_else(|| "—".to_string(), local);
    let moved = c.shift_seconds.map_or_else(String::new, |s| format!(" ({})", shift(s)));
    let note = match (&c.problem, c.provisional) {
        (Some(p), _) => format!(" — {p}"),
        (None, true) => " [recorded deadline provisional]".into(),
        (None, false) => String::new(),
    };
    format!(
        "{} {} #{} {}: due {} → {}{}: {}{}",
        c.ticket,
        c.timer,
        c.generation,
        c.status.as_str(),
        local(c.recorded_due),
        proposed,
        moved,
        name(&c.consequence),
        note
    )
}
