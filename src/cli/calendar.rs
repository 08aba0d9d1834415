//! The `calendar` commands: the calendars available, and a business-day deadline explained
//! day by day.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::{CalendarCommand, CliError, print_json};
use crate::engine::ErrorClass;

pub(super) fn calendar(dir: &Path, cmd: CalendarCommand) -> Result<(), CliError> {
    use crate::calendar::{BusinessDays, Calendar, DayRole};
    let load = |name: &str| Calendar::load(dir, name).map_err(|e| CliError::usage(e.to_string()));
    match cmd {
        CalendarCommand::List => {
            for name in Calendar::names(dir) {
                let cal = load(&name)?;
                println!(
                    "{:<14} {:<16} {}-{}  {}",
                    cal.name,
                    cal.time_zone.to_string(),
                    cal.published.first_year,
                    cal.published.last_year,
                    cal.description
                );
            }
        }
        CalendarCommand::Due { calendar, from, business_days, json } => {
            let cal = load(&calendar)?;
            let at = DateTime::parse_from_rfc3339(&from)
                .map_err(|e| CliError::usage(format!("--from: {from:?} is not an RFC 3339 instant ({e})")))?
                .with_timezone(&Utc);
            let ex = cal
                .explain_business_deadline(at, BusinessDays(business_days))
                .map_err(|e| CliError { class: ErrorClass::Refused, message: e.to_string() })?;
            let tz = cal.time_zone;
            let local = |t: DateTime<Utc>| t.with_timezone(&tz).to_rfc3339();
            if json {
                let skipped: Vec<_> = ex
                    .skipped()
                    .map(|d| serde_json::json!({ "date": d.date, "reason": d.kind.to_string(), "kind": d.kind }))
                    .collect();
                let makeup: Vec<_> = ex
                    .makeup_counted()
                    .map(|d| serde_json::json!({ "date": d.date, "reason": d.kind.to_string() }))
                    .collect();
                print_json(&serde_json::json!({
                    "calendar": ex.calendar,
                    "time_zone": ex.time_zone,
                    "from": local(ex.received),
                    "business_days": ex.business_days,
                    "last_business_day": ex.last_business_day,
                    "due": local(ex.due),
                    "provisional": ex.provisional,
                    "skipped": skipped,
                    "makeup_working_days_counted": makeup,
                    "days": ex.days,
                }));
            } else {
                println!(
                    "due {} — the end of {}, {} business day(s) on {} ({}) from {}",
                    local(ex.due),
                    ex.last_business_day.format("%a %Y-%m-%d"),
                    ex.business_days,
                    ex.calendar,
                    ex.time_zone,
                    local(ex.received)
                );
                if ex.provisional {
                    println!(
                        "  PROVISIONAL: {} is published only until {}; past it the weekend and the statutory \
                         holidays (fixed, lunar and solar-term dates) are counted, the make-up working days \
                         are not known",
                        ex.calendar, cal.published.last_year
                    );
                }
                for d in &ex.days {
                    let what = match &d.role {
                        DayRole::DayOfReceipt => "day of receipt, not counted".to_string(),
                        DayRole::Counted(n) => format!("business day {n} ({})", d.kind),
                        DayRole::Skipped => format!("skipped: {}", d.kind),
                    };
                    println!("  {}  {what}", d.date.format("%a %Y-%m-%d"));
                }
            }
        }
    }
    Ok(())
}
