//! Deadline arithmetic: the nth business day after a day, business-day and calendar-day
//! deadlines, and a business-day deadline explained day by day.

use super::*;

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

impl Calendar {
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
                "business day counted past the published years: provisional (weekend and statutory holidays \
                 only, no make-up working days); add the year's arrangement to the calendar file"
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
