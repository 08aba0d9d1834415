//! Business calendars: which days are working days in a jurisdiction, loaded from
//! `workflows/calendars/*.toml`, and the deadline arithmetic the workflow timers use.
//! Built on `bdays`: [`Calendar`] implements its `HolidayCalendar` with `is_bday`
//! overridden so configured weekends and make-up working days are honoured.
//!
//! A calendar is published for a range of years. Past that range a calendar either
//! refuses ([`CalendarError::OutOfRange`]; the default) or, when its file says
//! `beyond_published = "provisional"`, goes on for up to [`PROVISIONAL_YEARS`] more years
//! knowing only its weekend and its fixed-date statutory holidays
//! (`recurring_holidays`): such deadlines are flagged provisional and logged.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use bdays::HolidayCalendar;
use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BeyondPublished {
    /// Refuse: the computation is an error.
    #[default]
    Refuse,
    /// Go on for [`PROVISIONAL_YEARS`] years with the weekend and the recurring
    /// (fixed-date statutory) holidays only; results are flagged provisional.
    Provisional,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    name: String,
    description: Option<String>,
    time_zone: Tz,
    /// Days of the week that are not working days, e.g. `["sat", "sun"]`.
    weekend: Vec<String>,
    published: Published,
    #[serde(default)]
    beyond_published: BeyondPublished,
    /// Holidays fixed by date every year, used only past the published years.
    #[serde(default)]
    recurring_holidays: Vec<RecurringFile>,
    #[serde(default)]
    holidays: Vec<HolidayFile>,
    #[serde(default)]
    makeup_working_days: Vec<MakeupFile>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    pub first_year: i32,
    pub last_year: i32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayFile {
    name: String,
    from: NaiveDate,
    /// Inclusive; defaults to `from` for a one-day holiday.
    to: Option<NaiveDate>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecurringFile {
    pub name: String,
    pub month: u32,
    pub day: u32,
    /// Consecutive days from `month`/`day` (1 to 7).
    #[serde(default = "one_day")]
    pub days: u32,
}

fn one_day() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MakeupFile {
    date: NaiveDate,
    /// The holiday this working day makes up for.
    #[serde(rename = "for")]
    for_holiday: String,
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

/// What a day was when a deadline was computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "role", content = "n")]
pub enum DayRole {
    /// The day the appeal arrived: never counted.
    DayOfReceipt,
    /// A working day, the nth counted.
    Counted(u32),
    /// A weekend day or a holiday.
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExplainedDay {
    pub date: NaiveDate,
    pub kind: DayKind,
    #[serde(flatten)]
    pub role: DayRole,
}

/// A business-day deadline and why: each day looked at and what it was.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub calendar: String,
    pub time_zone: String,
    pub received: DateTime<Utc>,
    pub business_days: u32,
    pub last_business_day: NaiveDate,
    pub due: DateTime<Utc>,
    /// The deadline reaches past the published years: only the weekend and the
    /// recurring holidays were known there.
    pub provisional: bool,
    pub days: Vec<ExplainedDay>,
}

impl Explanation {
    /// The days skipped (weekends and holidays), with the reason for each.
    pub fn skipped(&self) -> impl Iterator<Item = &ExplainedDay> {
        self.days.iter().filter(|d| d.role == DayRole::Skipped)
    }

    /// Make-up working days that were counted.
    pub fn makeup_counted(&self) -> impl Iterator<Item = &ExplainedDay> {
        self.days
            .iter()
            .filter(|d| matches!(d.role, DayRole::Counted(_)) && matches!(d.kind, DayKind::MakeupWorkingDay { .. }))
    }
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
}

impl HolidayCalendar<NaiveDate> for Calendar {
    fn is_holiday(&self, date: NaiveDate) -> bool {
        self.holidays.contains_key(&date)
    }

    fn is_bday(&self, date: NaiveDate) -> bool {
        matches!(self.day_kind(date), DayKind::Working | DayKind::MakeupWorkingDay { .. })
    }
}

fn parse_weekday(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => return None,
    })
}

impl Calendar {
    /// Parses and validates one calendar file.
    pub fn from_toml(file: &Path, text: &str) -> Result<Calendar, CalendarError> {
        let invalid = |problem: String| CalendarError::Invalid { file: file.to_path_buf(), problem };
        let raw: CalendarFile = toml::from_str(text).map_err(|e| invalid(e.message().to_string()))?;
        let Published { first_year, last_year } = raw.published;
        if first_year > last_year {
            return Err(invalid(format!("published.first_year {first_year} is after last_year {last_year}")));
        }
        let in_range = |d: NaiveDate| (first_year..=last_year).contains(&d.year());
        let mut weekend = HashSet::new();
        for w in &raw.weekend {
            weekend
                .insert(parse_weekday(w).ok_or_else(|| invalid(format!("weekend: {w:?} is not a day of the week")))?);
        }
        if weekend.len() == 7 {
            return Err(invalid("weekend: lists every day of the week, leaving no working day".into()));
        }
        let mut holidays = BTreeMap::new();
        for h in &raw.holidays {
            let to = h.to.unwrap_or(h.from);
            if to < h.from {
                return Err(invalid(format!("holiday {:?}: `to` {to} is before `from` {}", h.name, h.from)));
            }
            let mut d = h.from;
            while d <= to {
                if !in_range(d) {
                    return Err(invalid(format!("holiday {:?}: {d} is outside the published years", h.name)));
                }
                if let Some(prev) = holidays.insert(d, h.name.clone()) {
                    return Err(invalid(format!("{d} is listed as both {prev:?} and {:?}", h.name)));
                }
                d = d + Days::new(1);
            }
        }
        let mut makeup = BTreeMap::new();
        for m in &raw.makeup_working_days {
            if !weekend.contains(&m.date.weekday()) {
                return Err(invalid(format!(
                    "make-up working day {} is a {}, which is already a working day",
                    m.date,
                    m.date.weekday()
                )));
            }
            if holidays.contains_key(&m.date) {
                return Err(invalid(format!("{} is both a holiday and a make-up working day", m.date)));
            }
            if !in_range(m.date) {
                return Err(invalid(format!("make-up working day {} is outside the published years", m.date)));
            }
            if !raw.holidays.iter().any(|h| h.name == m.for_holiday) {
                return Err(invalid(format!(
                    "make-up working day {}: `for` names {:?}, which is not a holiday in this file",
                    m.date, m.for_holiday
                )));
            }
            if makeup.insert(m.date, m.for_holiday.clone()).is_some() {
                return Err(invalid(format!("make-up working day {} is listed twice", m.date)));
            }
        }
        for r in &raw.recurring_holidays {
            if NaiveDate::from_ymd_opt(2000, r.month, r.day).is_none() {
                return Err(invalid(format!(
                    "recurring holiday {:?}: month {} day {} is not a date",
                    r.name, r.month, r.day
                )));
            }
            if !(1..=7).contains(&r.days) {
                return Err(invalid(format!("recurring holiday {:?}: `days` must be 1 to 7, not {}", r.name, r.days)));
            }
        }
        if !raw.recurring_holidays.is_empty() && raw.beyond_published == BeyondPublished::Refuse {
            return Err(invalid(
                "recurring_holidays are used only past the published years: set beyond_published = \"provisional\""
                    .into(),
            ));
        }
        Ok(Calendar {
            name: raw.name,
            description: raw.description.unwrap_or_default(),
            time_zone: raw.time_zone,
            published: raw.published,
            beyond_published: raw.beyond_published,
            recurring_holidays: raw.recurring_holidays,
            weekend,
            holidays,
            makeup,
        })
    }

    /// Loads `dir/NAME.toml`.
    pub fn load(dir: &Path, name: &str) -> Result<Calendar, CalendarError> {
        let file = dir.join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&file).map_err(|_| CalendarError::Unknown {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            known: Self::names(dir).join(", "),
        })?;
        let cal = Self::from_toml(&file, &text)?;
        if cal.name != name {
            return Err(CalendarError::Invalid {
                file,
                problem: format!("name {:?} does not match the file name {name:?}", cal.name),
            });
        }
        Ok(cal)
    }

    /// The calendar names available in `dir`, sorted.
    pub fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(str::to_string))?
            })
            .collect();
        names.sort();
        names
    }

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
        self.recurring_holidays.iter().find_map(|r| {
            let first = NaiveDate::from_ymd_opt(date.year(), r.month, r.day)?;
            (first <= date && date < first + Days::new(u64::from(r.days))).then_some(r.name.as_str())
        })
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

    /// The instant local midnight starts `date`.
    pub fn start_of(&self, date: NaiveDate) -> Result<DateTime<Utc>, CalendarError> {
        let midnight = date.and_hms_opt(0, 0, 0).expect("midnight is a valid time");
        self.time_zone
            .from_local_datetime(&midnight)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or(CalendarError::NoMidnight(date))
    }

    /// The `n`th business day after the day `at` falls on (the day itself never counts).
    pub fn nth_business_day_after(&self, at: DateTime<Utc>, n: BusinessDays) -> Result<NaiveDate, CalendarError> {
        let start = self.local_date(at);
        self.check_range(start)?;
        let count = i32::try_from(n.0).map_err(|_| CalendarError::OutOfRange {
            calendar: self.name.clone(),
            date: NaiveDate::MAX,
            first: self.published.first_year,
            last: self.published.last_year,
        })?;
        if count == 0 {
            return Ok(start);
        }
        // More business days than the published range has calendar days left cannot end
        // inside it; refuse before walking (the walk past the range would be a guess).
        let range_end = NaiveDate::from_ymd_opt(self.last_year(), 12, 31).expect("a valid date");
        if i64::from(count) > (range_end - start).num_days() {
            return Err(CalendarError::OutOfRange {
                calendar: self.name.clone(),
                date: range_end + Days::new(1),
                first: self.published.first_year,
                last: self.published.last_year,
            });
        }
        // `advance_bdays` first rolls a non-working day forward to the next working day,
        // which then is already the first day counted.
        let day =
            if self.is_bday(start) { self.advance_bdays(start, count) } else { self.advance_bdays(start, count - 1) };
        // The walk is monotonic: if its end is inside the published range, so is every
        // day it looked at. Past the range, `day_kind` knows no holidays, so the answer
        // would be a guess and is refused.
        self.check_range(day)?;
        if self.is_provisional(day) {
            tracing::warn!(
                calendar = %self.name,
                %day,
                published_until = self.published.last_year,
                "business day counted past the published years: provisional (weekend and statutory fixed-date \
                 holidays only); add the year's arrangement to the calendar file"
            );
        }
        Ok(day)
    }

    /// Deadline for `n` business days from `at`: the end (local midnight that follows)
    /// of the `n`th business day after the day of `at`.
    pub fn business_deadline(&self, at: DateTime<Utc>, n: BusinessDays) -> Result<DateTime<Utc>, CalendarError> {
        let last = self.nth_business_day_after(at, n)?;
        self.start_of(last + Days::new(1))
    }

    /// The same deadline as [`Calendar::business_deadline`], with the reasoning: every
    /// day from the day of receipt to the last day counted, and what each one was.
    pub fn explain_business_deadline(&self, at: DateTime<Utc>, n: BusinessDays) -> Result<Explanation, CalendarError> {
        let last = self.nth_business_day_after(at, n)?;
        let received = self.local_date(at);
        let mut days = Vec::new();
        let mut counted = 0;
        let mut d = received;
        while d <= last {
            let kind = self.day_kind(d);
            let role = if d == received {
                DayRole::DayOfReceipt
            } else if self.is_bday(d) {
                counted += 1;
                DayRole::Counted(counted)
            } else {
                DayRole::Skipped
            };
            days.push(ExplainedDay { date: d, kind, role });
            d = d + Days::new(1);
        }
        Ok(Explanation {
            calendar: self.name.clone(),
            time_zone: self.time_zone.to_string(),
            received: at,
            business_days: n.0,
            last_business_day: last,
            due: self.start_of(last + Days::new(1))?,
            provisional: self.is_provisional(last),
            days,
        })
    }

    /// The start (local midnight) of the `n`th business day after the day of `at`:
    /// the default SLA warning point when `n` is the SLA length.
    pub fn start_of_nth_business_day(
        &self,
        at: DateTime<Utc>,
        n: BusinessDays,
    ) -> Result<DateTime<Utc>, CalendarError> {
        self.start_of(self.nth_business_day_after(at, n)?)
    }

    /// Deadline for `n` calendar days from `at`: the end of the `n`th calendar day
    /// after the day of `at`, in the calendar's zone. Calendar days need no published
    /// holiday data, so no range applies.
    pub fn calendar_deadline(&self, at: DateTime<Utc>, n: CalendarDays) -> Result<DateTime<Utc>, CalendarError> {
        self.start_of(self.local_date(at) + Days::new(u64::from(n.0) + 1))
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
