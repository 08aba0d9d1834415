//! The days a recurring statutory holiday falls on in a given year: fixed Gregorian
//! dates, dates of the Chinese lunisolar calendar (the Spring Festival, the Dragon Boat
//! and Mid-Autumn festivals) and solar terms (Qingming). The lunisolar and solar-term
//! arithmetic is `tyme4rs`'s (the ShouXing astronomical algorithms that China's almanacs
//! use), not appealflow's.

use chrono::{Days, NaiveDate};
use tyme4rs::tyme::lunar::LunarDay;
use tyme4rs::tyme::solar::{SolarDay, SolarTerm};

use super::RecurringFile;

/// The 24 solar terms by their pinyin names, in `tyme4rs`'s order: from the winter
/// solstice (冬至, in December of the year before), so every other one falls in the year
/// it is asked for.
pub const SOLAR_TERMS: [&str; 24] = [
    "dongzhi",
    "xiaohan",
    "dahan",
    "lichun",
    "yushui",
    "jingzhe",
    "chunfen",
    "qingming",
    "guyu",
    "lixia",
    "xiaoman",
    "mangzhong",
    "xiazhi",
    "xiaoshu",
    "dashu",
    "liqiu",
    "chushu",
    "bailu",
    "qiufen",
    "hanlu",
    "shuangjiang",
    "lidong",
    "xiaoxue",
    "daxue",
];

/// What a recurring holiday is anchored to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    Gregorian { month: u32, day: u32 },
    Lunar { month: u32, day: u32 },
    SolarTerm(usize),
}

impl RecurringFile {
    /// The holiday's anchor, or what is wrong with its fields.
    pub fn anchor(&self) -> Result<Anchor, String> {
        match (self.month, self.day, self.solar_term.as_deref()) {
            (Some(month), Some(day), None) if self.lunar => {
                if (1..=12).contains(&month) && (1..=30).contains(&day) {
                    Ok(Anchor::Lunar { month, day })
                } else {
                    Err(format!("lunar month {month} day {day} is not a lunar date (months 1 to 12, days 1 to 30)"))
                }
            }
            (Some(month), Some(day), None) => {
                if NaiveDate::from_ymd_opt(2000, month, day).is_some() {
                    Ok(Anchor::Gregorian { month, day })
                } else {
                    Err(format!("month {month} day {day} is not a date"))
                }
            }
            (None, None, Some(term)) if !self.lunar => {
                SOLAR_TERMS.iter().position(|t| *t == term).map(Anchor::SolarTerm).ok_or_else(|| {
                    format!("solar_term {term:?} is not one of the 24 solar terms ({})", SOLAR_TERMS.join(", "))
                })
            }
            _ => Err("give `month` and `day` (with `lunar = true` for a lunar date), or a `solar_term`".into()),
        }
    }

    /// The days of this holiday in `year` (its anchor's year): from `starts_before` days
    /// before the anchor day, `days` days in all. None if the year has no such day
    /// (29 February in a common year, a lunar day 30 in a short month).
    pub fn days_in(&self, year: i32) -> Option<Vec<NaiveDate>> {
        // tyme4rs answers for years 1 to 9999 (and panics outside them); a lunar date late
        // in the year may fall in January of the next.
        if !(1..=9998).contains(&year) {
            return None;
        }
        let anchor = match self.anchor().ok()? {
            Anchor::Gregorian { month, day } => NaiveDate::from_ymd_opt(year, month, day)?,
            Anchor::Lunar { month, day } => {
                let lunar = LunarDay::new(year as isize, month as isize, day as usize).ok()?;
                naive(lunar.get_solar_day())?
            }
            Anchor::SolarTerm(index) => {
                // The winter solstice opens tyme4rs's year: December's is the next one's.
                let term_year = if index == 0 { year + 1 } else { year };
                naive(SolarTerm::from_index(term_year as isize, index as isize).get_solar_day())?
            }
        };
        let first = anchor.checked_sub_days(Days::new(u64::from(self.starts_before)))?;
        (0..self.days).map(|i| first.checked_add_days(Days::new(u64::from(i)))).collect()
    }
}

fn naive(day: SolarDay) -> Option<NaiveDate> {
    let month = day.get_solar_month();
    NaiveDate::from_ymd_opt(i32::try_from(month.get_year()).ok()?, day.get_month() as u32, day.get_day() as u32)
}

/// The recurring holidays of `years`, by day; a day two of them share is named for both.
pub fn holidays(recurring: &[RecurringFile], years: std::ops::RangeInclusive<i32>) -> Vec<(NaiveDate, String)> {
    let mut by_day: std::collections::BTreeMap<NaiveDate, Vec<String>> = Default::default();
    for year in years {
        for r in recurring {
            for d in r.days_in(year).unwrap_or_default() {
                by_day.entry(d).or_default().push(r.name.clone());
            }
        }
    }
    by_day.into_iter().map(|(d, names)| (d, names.join(" / "))).collect()
}
