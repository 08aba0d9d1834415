//! Calendar files (`workflows/calendars/NAME.toml`): their format, and each file parsed,
//! validated and loaded by name into a `Calendar`.

use super::*;

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

#[derive(Debug, Clone, Copy, Deserialize, Serialize, utoipa::ToSchema)]
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

/// A statutory holiday that recurs every year, counted only past the published years:
/// on a Gregorian date (`month`, `day`), a Chinese lunar date (the same with
/// `lunar = true`), or a solar term (`solar_term`, e.g. `"qingming"`).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecurringFile {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<u32>,
    /// `month` and `day` are of the Chinese lunisolar calendar.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lunar: bool,
    /// A solar term by its pinyin name, instead of `month` and `day`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solar_term: Option<String>,
    /// The holiday starts this many days before its anchor day (the Spring Festival's
    /// eve: 1); 0 to 7.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub starts_before: u32,
    /// Consecutive days from its first (1 to 7).
    #[serde(default = "one_day")]
    pub days: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The published years a calendar may have: the lunisolar arithmetic answers for years 1
/// to 9999, and a provisional calendar goes on past its last published year.
const MIN_YEAR: i32 = 1;
const MAX_YEAR: i32 = 9990;

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
        if first_year < MIN_YEAR || last_year > MAX_YEAR {
            return Err(invalid(format!(
                "published years {first_year}..={last_year} must lie within {MIN_YEAR}..={MAX_YEAR}"
            )));
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
            if let Err(problem) = r.anchor() {
                return Err(invalid(format!("recurring holiday {:?}: {problem}", r.name)));
            }
            if !(1..=7).contains(&r.days) {
                return Err(invalid(format!("recurring holiday {:?}: `days` must be 1 to 7, not {}", r.name, r.days)));
            }
            if r.starts_before > 7 {
                return Err(invalid(format!(
                    "recurring holiday {:?}: `starts_before` must be 0 to 7, not {}",
                    r.name, r.starts_before
                )));
            }
        }
        if !raw.recurring_holidays.is_empty() && raw.beyond_published == BeyondPublished::Refuse {
            return Err(invalid(
                "recurring_holidays are used only past the published years: set beyond_published = \"provisional\""
                    .into(),
            ));
        }
        let provisional_holidays = match raw.beyond_published {
            BeyondPublished::Refuse => BTreeMap::new(),
            BeyondPublished::Provisional => {
                let years = last_year + 1..=last_year + PROVISIONAL_YEARS;
                lunar::holidays(&raw.recurring_holidays, years).into_iter().collect()
            }
        };
        Ok(Calendar {
            provisional_holidays,
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
}
