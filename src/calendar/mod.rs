//! Business calendars: which days are working days in a jurisdiction, loaded from
//! `workflows/calendars/*.toml`, and the deadline arithmetic the workflow timers use.
//! Built on `bdays`: [`Calendar`] implements its `HolidayCalendar` with `is_bday`
//! overridden so configured weekends and make-up working days are honoured.
//!
//! A calendar is published for a range of years. Past that range a calendar either
//! refuses ([`CalendarError::OutOfRange`]; the default) or, when its file says
//! `beyond_published = "provisional"`, goes on for up to [`PROVISIONAL_YEARS`] more years
//! knowing only its weekend and its statutory holidays (`recurring_holidays`: fixed
//! dates, lunar dates and solar terms, computed for those years when the file loads),
//! not the make-up working days an arrangement adds: such deadlines are flagged
//! provisional and logged.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use bdays::HolidayCalendar;
use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

mod deadline;
mod file;
mod lunar;

pub use deadline::{DayRole, ExplainedDay, Explanation};
pub use file::{Published, RecurringFile};
pub use lunar::{Anchor, SOLAR_TERMS};

/// A count of business (working) days. Deliberately not interchangeable with
/// [`CalendarDays`]: a deadline in one cannot be passed where the other is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BusinessDays(pub u32);

/// A count of calendar days (every day counts, working or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CalendarDays(pub u32);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error(
        "calendar {calendar:?} is published for {first}..={last}; {date} is outside that range \
         (add the next year's calendar to workflows/calendars/{calendar}.toml)"
    )]
    OutOfRange { calendar: String, date: NaiveDate, first: i32, last: i32 },
    #[error("{file}: {problem}")]
    Invalid { file: PathBuf, problem: String },
    #[error("no calendar named {name:?} in {dir} (known: {known})")]
    Unknown { name: String, dir: PathBuf, known: String },
    #[error("{0}: local midnight does not exist in the calendar's time zone")]
    NoMidnight(NaiveDate),
}

/// How many years past the published range a provisional calendar goes on.
pub const PROVISIONAL_YEARS: i32 = 2;

/// What a calendar does with a day past its published years.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BeyondPublished {
    /// Refuse: the computation is an error.
    #[default]
    Refuse,
    /// Go on for [`PROVISIONAL_YEARS`] years with the weekend and the recurring
    /// statutory holidays only; results are flagged provisional.
    Provisional,
}

/// Why a day was skipped or counted while computing a deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DayKind {
    Working,
    Weekend,
    Holiday { name: String },
    MakeupWorkingDay { for_holiday: String },
}

#[derive(Debug, Clone)]
pub struct Calendar {
    pub name: String,
    pub description: String,
    pub time_zone: Tz,
    pub published: Published,
    pub beyond_published: BeyondPublished,
    pub recurring_holidays: Vec<RecurringFile>,
    weekend: HashSet<Weekday>,
    holidays: BTreeMap<NaiveDate, String>,
    makeup: BTreeMap<NaiveDate, String>,
    /// The recurring holidays' days in the provisional years.
    provisional_holidays: BTreeMap<NaiveDate, String>,
}

impl HolidayCalendar<NaiveDate> for Calendar {
    fn is_holiday(&self, date: NaiveDate) -> bool {
        self.holidays.contains_key(&date)
    }

    fn is_bday(&self, date: NaiveDate) -> bool {
        matches!(self.day_kind(date), DayKind::Working | DayKind::MakeupWorkingDay { .. })
    }
}

impl Calendar {
    pub fn day_kind(&self, date: NaiveDate) -> DayKind {
        if self.is_provisional(date)
            && let Some(name) = self.recurring_holiday(date)
        {
            return DayKind::Holiday {
                name: format!("{name} {} (statutory; arrangement not yet published)", date.year()),
            };
        }
        if let Some(name) = self.holidays.get(&date) {
            return DayKind::Holiday { name: name.clone() };
        }
        if let Some(for_holiday) = self.makeup.get(&date) {
            return DayKind::MakeupWorkingDay { for_holiday: for_holiday.clone() };
        }
        if self.weekend.contains(&date.weekday()) { DayKind::Weekend } else { DayKind::Working }
    }

    /// A day past the published years that a provisional calendar still answers for.
    pub fn is_provisional(&self, date: NaiveDate) -> bool {
        self.beyond_published == BeyondPublished::Provisional
            && date.year() > self.published.last_year
            && date.year() <= self.last_year()
    }

    /// The last year this calendar answers for (provisionally past the published ones).
    fn last_year(&self) -> i32 {
        match self.beyond_published {
            BeyondPublished::Refuse => self.published.last_year,
            BeyondPublished::Provisional => self.published.last_year + PROVISIONAL_YEARS,
        }
    }

    fn recurring_holiday(&self, date: NaiveDate) -> Option<&str> {
        self.provisional_holidays.get(&date).map(String::as_str)
    }

    /// The days the recurring statutory holidays fall on in `years` (published or not),
    /// by day, as the provisional years count them.
    pub fn statutory_days(&self, years: std::ops::RangeInclusive<i32>) -> Vec<(NaiveDate, String)> {
        lunar::holidays(&self.recurring_holidays, years)
    }

    /// The recurring statutory holidays of the provisional years, by day.
    pub fn provisional_holidays(&self) -> impl Iterator<Item = (NaiveDate, &str)> {
        self.provisional_holidays.iter().map(|(d, n)| (*d, n.as_str()))
    }

    fn check_range(&self, date: NaiveDate) -> Result<(), CalendarError> {
        let Published { first_year, last_year } = self.published;
        if (first_year..=self.last_year()).contains(&date.year()) {
            Ok(())
        } else {
            Err(CalendarError::OutOfRange { calendar: self.name.clone(), date, first: first_year, last: last_year })
        }
    }

    /// The calendar day (in the calendar's zone) an instant falls on.
    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.time_zone).date_naive()
    }

    /// An instant as applicants are shown it: RFC 3339 in the calendar's zone, with the
    /// zone's offset (`2026-12-07T23:59:59+08:00`), never UTC.
    pub fn local_rfc3339(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.time_zone).to_rfc3339()
    }

    /// The instant local midnight starts `date`.
    pub fn start_of(&self, date: NaiveDate) -> Result<DateTime<Utc>, CalendarError> {
        let midnight = date.and_hms_opt(0, 0, 0).expect("midnight is a valid time");
        self.time_zone
            .from_local_datetime(&midnight)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or(CalendarError::NoMidnight(date))
    }
}

impl fmt::Display for DayKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DayKind::Working => f.write_str("working day"),
            DayKind::Weekend => f.write_str("weekend"),
            DayKind::Holiday { name } => write!(f, "holiday: {name}"),
            DayKind::MakeupWorkingDay { for_holiday } => {
                write!(f, "make-up working day for {for_holiday}")
            }
        }
    }
}
