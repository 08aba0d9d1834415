//! Golden tests of the business calendars shipped in `workflows/calendars/`.
//!
//! The rule under test (src/calendar/mod.rs): the day the receipt falls on (in the
//! calendar's zone) never counts; the first counted day is the next working day; the
//! deadline for N business days is local midnight after the Nth business day. Every
//! expected date below was worked out by hand from the published holiday arrangements,
//! with the weekday of each date checked independently.

use std::path::{Path, PathBuf};

use appealflow::calendar::{
    BeyondPublished, BusinessDays, Calendar, CalendarDays, CalendarError, DayKind, DayRole, PROVISIONAL_YEARS,
};
use chrono::{DateTime, NaiveDate, Utc};

fn calendars_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/calendars")
}

fn cn() -> Calendar {
    Calendar::load(&calendars_dir(), "cn-mainland").expect("cn-mainland loads")
}

fn weekdays() -> Calendar {
    Calendar::load(&calendars_dir(), "weekdays").expect("weekdays loads")
}

/// An instant written as RFC 3339.
fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("bad RFC 3339 {s:?}: {e}")).with_timezone(&Utc)
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap_or_else(|e| panic!("bad date {s:?}: {e}"))
}

/// Checks the three business-day computations against hand-worked answers.
#[track_caller]
fn golden(cal: &Calendar, receipt: &str, n: u32, nth_day: &str, start_of_nth: &str, deadline: &str) {
    let receipt_at = at(receipt);
    assert_eq!(
        cal.nth_business_day_after(receipt_at, BusinessDays(n)).unwrap(),
        day(nth_day),
        "{}: business day {n} after receipt {receipt}",
        cal.name
    );
    assert_eq!(
        cal.start_of_nth_business_day(receipt_at, BusinessDays(n)).unwrap(),
        at(start_of_nth),
        "{}: start of business day {n} after receipt {receipt}",
        cal.name
    );
    assert_eq!(
        cal.business_deadline(receipt_at, BusinessDays(n)).unwrap(),
        at(deadline),
        "{}: deadline of {n} business days after receipt {receipt}",
        cal.name
    );
}

#[track_caller]
fn assert_out_of_range(result: Result<impl std::fmt::Debug, CalendarError>, date: &str) {
    match result {
        Err(CalendarError::OutOfRange { calendar, date: d, first, last }) => {
            assert_eq!(calendar, "cn-mainland");
            assert_eq!(d, day(date));
            assert_eq!((first, last), (2025, 2026));
        }
        other => panic!("expected OutOfRange at {date}, got {other:?}"),
    }
}

// ------------------------------------------------------------ loading

#[test]
fn shipped_calendars_load_with_their_zones_and_ranges() {
    let cn = cn();
    assert_eq!(cn.name, "cn-mainland");
    assert_eq!(cn.time_zone, chrono_tz::Asia::Shanghai);
    assert_eq!((cn.published.first_year, cn.published.last_year), (2025, 2026));
    let wd = weekdays();
    assert_eq!(wd.time_zone, chrono_tz::UTC);
    assert_eq!((wd.published.first_year, wd.published.last_year), (2000, 2099));
    assert_eq!(Calendar::names(&calendars_dir()), vec!["cn-mainland".to_string(), "weekdays".to_string()]);
}

#[test]
fn unknown_calendar_name_is_refused_listing_the_known_ones() {
    match Calendar::load(&calendars_dir(), "atlantis") {
        Err(e @ CalendarError::Unknown { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("\"atlantis\""), "{msg}");
            assert!(msg.contains("cn-mainland, weekdays"), "{msg}");
        }
        other => panic!("expected Unknown, got {other:?}"),
    }
}

#[test]
fn calendar_whose_name_differs_from_its_file_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(calendars_dir().join("weekdays.toml")).unwrap();
    std::fs::write(dir.path().join("workdays.toml"), text).unwrap();
    match Calendar::load(dir.path(), "workdays") {
        Err(CalendarError::Invalid { file, problem }) => {
            assert_eq!(file, dir.path().join("workdays.toml"));
            assert!(problem.contains("\"weekdays\""), "{problem}");
            assert!(problem.contains("\"workdays\""), "{problem}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

// ------------------------------------------------------------ day kinds

#[test]
fn day_kinds_of_cn_mainland_2026() {
    let cn = cn();
    let spring = "Spring Festival 2026".to_string();
    let national = "National Day 2026".to_string();
    let cases = [
        // Plain days.
        ("2026-03-09", DayKind::Working), // Monday
        ("2026-03-07", DayKind::Weekend), // Saturday
        ("2026-03-08", DayKind::Weekend), // Sunday
        // Spring Festival: Sun 02-15 ..= Mon 02-23, make-up Saturdays 02-14 and 02-28.
        ("2026-02-13", DayKind::Working), // Friday before
        ("2026-02-14", DayKind::MakeupWorkingDay { for_holiday: spring.clone() }),
        ("2026-02-15", DayKind::Holiday { name: spring.clone() }),
        ("2026-02-21", DayKind::Holiday { name: spring.clone() }), // a Saturday inside the block is a holiday, not a weekend
        ("2026-02-23", DayKind::Holiday { name: spring.clone() }),
        ("2026-02-24", DayKind::Working),
        ("2026-02-28", DayKind::MakeupWorkingDay { for_holiday: spring.clone() }),
        ("2026-03-01", DayKind::Weekend),
        // National Day: Thu 10-01 ..= Wed 10-07; make-up Sun 09-20 and Sat 10-10;
        // Mid-Autumn Fri 09-25 ..= Sun 09-27.
        ("2026-09-20", DayKind::MakeupWorkingDay { for_holiday: national.clone() }),
        ("2026-09-25", DayKind::Holiday { name: "Mid-Autumn Festival 2026".into() }),
        ("2026-09-27", DayKind::Holiday { name: "Mid-Autumn Festival 2026".into() }),
        ("2026-09-30", DayKind::Working),
        ("2026-10-01", DayKind::Holiday { name: national.clone() }),
        ("2026-10-07", DayKind::Holiday { name: national.clone() }),
        ("2026-10-08", DayKind::Working),
        ("2026-10-10", DayKind::MakeupWorkingDay { for_holiday: national.clone() }),
        ("2026-10-11", DayKind::Weekend),
    ];
    for (date, kind) in cases {
        assert_eq!(cn.day_kind(day(date)), kind, "day kind of {date}");
    }
}

#[test]
fn weekdays_calendar_has_no_holidays() {
    let wd = weekdays();
    assert_eq!(wd.day_kind(day("2026-10-01")), DayKind::Working);
    assert_eq!(wd.day_kind(day("2026-02-16")), DayKind::Working);
    assert_eq!(wd.day_kind(day("2026-02-14")), DayKind::Weekend);
    assert_eq!(wd.day_kind(day("2026-09-20")), DayKind::Weekend);
}

// ------------------------------------------------------------ business days

#[test]
fn friday_receipt_is_due_at_the_end_of_wednesday() {
    // Fri 2026-03-06: day 1 Mon 03-09, day 2 Tue 03-10, day 3 Wed 03-11.
    golden(
        &cn(),
        "2026-03-06T10:00:00+08:00",
        3,
        "2026-03-11",
        "2026-03-11T00:00:00+08:00",
        "2026-03-12T00:00:00+08:00",
    );
    golden(&weekdays(), "2026-03-06T10:00:00Z", 3, "2026-03-11", "2026-03-11T00:00:00Z", "2026-03-12T00:00:00Z");
}

#[test]
fn spring_festival_2026_block_is_skipped_and_make_up_saturday_counts() {
    // Fri 02-13: day 1 Sat 02-14 (make-up), holidays 02-15..=02-23, day 2 Tue 02-24,
    // day 3 Wed 02-25.
    golden(
        &cn(),
        "2026-02-13T10:00:00+08:00",
        3,
        "2026-02-25",
        "2026-02-25T00:00:00+08:00",
        "2026-02-26T00:00:00+08:00",
    );
    // One business day after that Friday is the make-up Saturday itself.
    golden(
        &cn(),
        "2026-02-13T10:00:00+08:00",
        1,
        "2026-02-14",
        "2026-02-14T00:00:00+08:00",
        "2026-02-15T00:00:00+08:00",
    );
    // Thu 02-12: day 1 Fri 02-13, day 2 Sat 02-14 (make-up), day 3 Tue 02-24.
    golden(
        &cn(),
        "2026-02-12T09:00:00+08:00",
        3,
        "2026-02-24",
        "2026-02-24T00:00:00+08:00",
        "2026-02-25T00:00:00+08:00",
    );
    // The weekday calendar knows no festival: Fri 02-13 → Mon, Tue, Wed 02-18.
    golden(&weekdays(), "2026-02-13T10:00:00Z", 3, "2026-02-18", "2026-02-18T00:00:00Z", "2026-02-19T00:00:00Z");
}

#[test]
fn make_up_saturday_after_spring_festival_is_a_working_day() {
    // Thu 02-26: day 1 Fri 02-27, day 2 Sat 02-28 (make-up), day 3 Mon 03-02.
    golden(
        &cn(),
        "2026-02-26T15:00:00+08:00",
        3,
        "2026-03-02",
        "2026-03-02T00:00:00+08:00",
        "2026-03-03T00:00:00+08:00",
    );
}

#[test]
fn receipt_on_a_make_up_day_does_not_count_that_day() {
    // Sat 02-14 is worked, but it is the receipt day: day 1 Tue 02-24, day 2 Wed 02-25,
    // day 3 Thu 02-26.
    golden(
        &cn(),
        "2026-02-14T11:00:00+08:00",
        3,
        "2026-02-26",
        "2026-02-26T00:00:00+08:00",
        "2026-02-27T00:00:00+08:00",
    );
}

#[test]
fn receipt_on_a_holiday_counts_from_the_first_working_day_after() {
    // Wed 02-18 (Spring Festival): day 1 Tue 02-24, day 2 Wed 02-25, day 3 Thu 02-26.
    golden(
        &cn(),
        "2026-02-18T10:00:00+08:00",
        3,
        "2026-02-26",
        "2026-02-26T00:00:00+08:00",
        "2026-02-27T00:00:00+08:00",
    );
    // Thu 2026-01-01 (New Year 01-01..=01-03): day 1 Sun 01-04 (make-up), day 2 Mon
    // 01-05, day 3 Tue 01-06.
    golden(
        &cn(),
        "2026-01-01T12:00:00+08:00",
        3,
        "2026-01-06",
        "2026-01-06T00:00:00+08:00",
        "2026-01-07T00:00:00+08:00",
    );
    // Last day of the block, Mon 02-23: day 1 is the very next day, Tue 02-24.
    golden(
        &cn(),
        "2026-02-23T18:00:00+08:00",
        1,
        "2026-02-24",
        "2026-02-24T00:00:00+08:00",
        "2026-02-25T00:00:00+08:00",
    );
}

#[test]
fn national_day_2026_with_mid_autumn_and_two_make_up_days() {
    let cn = cn();
    // Fri 09-18: Sat 09-19 weekend; day 1 Sun 09-20 (make-up), day 2 Mon 09-21, day 3
    // Tue 09-22.
    golden(&cn, "2026-09-18T10:00:00+08:00", 3, "2026-09-22", "2026-09-22T00:00:00+08:00", "2026-09-23T00:00:00+08:00");
    // Thu 09-24: Mid-Autumn 09-25..=09-27; day 1 Mon 09-28, day 2 Tue 09-29, day 3 Wed
    // 09-30.
    golden(&cn, "2026-09-24T10:00:00+08:00", 3, "2026-09-30", "2026-09-30T00:00:00+08:00", "2026-10-01T00:00:00+08:00");
    // Wed 09-30: National Day 10-01..=10-07; day 1 Thu 10-08, day 2 Fri 10-09, day 3
    // Sat 10-10 (make-up).
    golden(&cn, "2026-09-30T10:00:00+08:00", 3, "2026-10-10", "2026-10-10T00:00:00+08:00", "2026-10-11T00:00:00+08:00");
    // Tue 09-29, five days: Wed 09-30, Thu 10-08, Fri 10-09, Sat 10-10, Mon 10-12.
    golden(&cn, "2026-09-29T10:00:00+08:00", 5, "2026-10-12", "2026-10-12T00:00:00+08:00", "2026-10-13T00:00:00+08:00");
    // Receipt inside the block, Sat 10-03: day 1 Thu 10-08, day 2 Fri 10-09, day 3 Sat
    // 10-10 (make-up).
    golden(&cn, "2026-10-03T10:00:00+08:00", 3, "2026-10-10", "2026-10-10T00:00:00+08:00", "2026-10-11T00:00:00+08:00");
}

#[test]
fn receipt_at_23_30_local_counts_the_next_day_as_day_one() {
    // 23:30 on Mon 03-09 in Shanghai is 15:30Z: day 1 Tue 03-10, day 3 Thu 03-12.
    golden(
        &cn(),
        "2026-03-09T23:30:00+08:00",
        3,
        "2026-03-12",
        "2026-03-12T00:00:00+08:00",
        "2026-03-13T00:00:00+08:00",
    );
    // The same instant spelled in UTC gives the same answer.
    golden(&cn(), "2026-03-09T15:30:00Z", 3, "2026-03-12", "2026-03-12T00:00:00+08:00", "2026-03-13T00:00:00+08:00");
}

#[test]
fn receipt_at_00_05_local_is_on_the_local_day_not_the_utc_day() {
    // 00:05 on Tue 03-10 in Shanghai is 16:05Z on Mon 03-09. The receipt day is Tue:
    // day 1 Wed 03-11, day 2 Thu 03-12, day 3 Fri 03-13.
    golden(
        &cn(),
        "2026-03-10T00:05:00+08:00",
        3,
        "2026-03-13",
        "2026-03-13T00:00:00+08:00",
        "2026-03-14T00:00:00+08:00",
    );
    // Friday 00:05 local (Thursday in UTC): the following Wednesday, as for any Friday.
    golden(&cn(), "2026-03-05T16:05:00Z", 3, "2026-03-11", "2026-03-11T00:00:00+08:00", "2026-03-12T00:00:00+08:00");
}

#[test]
fn instants_are_shown_in_the_calendars_zone_with_its_offset() {
    assert_eq!(cn().local_rfc3339(at("2026-12-07T15:59:59Z")), "2026-12-07T23:59:59+08:00");
    // Past local midnight in Shanghai while still the day before in UTC.
    assert_eq!(cn().local_rfc3339(at("2026-03-09T16:05:00Z")), "2026-03-10T00:05:00+08:00");
}

/// cn-mainland as it would be with the default policy: refuse past the published years.
fn cn_refusing() -> Calendar {
    let text = std::fs::read_to_string(calendars_dir().join("cn-mainland.toml")).unwrap();
    let start = text.find("beyond_published").expect("the shipped file sets a policy");
    let end = start + text[start..].find("\n]\n").expect("the recurring holidays end") + 3;
    let refusing = format!("{}{}", &text[..start], &text[end..]);
    Calendar::from_toml(&calendars_dir().join("cn-mainland.toml"), &refusing).expect("loads without the policy")
}

#[test]
fn receipt_near_the_end_of_the_published_range() {
    let cn = cn_refusing();
    assert_eq!(cn.beyond_published, BeyondPublished::Refuse);
    // Mon 12-28: Tue 12-29, Wed 12-30, Thu 12-31: the last day is still in 2026.
    golden(&cn, "2026-12-28T10:00:00+08:00", 3, "2026-12-31", "2026-12-31T00:00:00+08:00", "2027-01-01T00:00:00+08:00");
    // Tue 12-29: Wed 12-30, Thu 12-31, then a day in 2027, which is not published.
    let receipt = at("2026-12-29T10:00:00+08:00");
    assert_out_of_range(cn.business_deadline(receipt, BusinessDays(3)), "2027-01-01");
    assert_out_of_range(cn.nth_business_day_after(receipt, BusinessDays(3)), "2027-01-01");
    assert_out_of_range(cn.start_of_nth_business_day(receipt, BusinessDays(3)), "2027-01-01");
    // 16:30Z on 12-31 is already 2027-01-01 in Shanghai: the receipt itself is out.
    assert_out_of_range(cn.business_deadline(at("2026-12-31T16:30:00Z"), BusinessDays(1)), "2027-01-01");
}

#[test]
fn past_the_published_years_cn_mainland_is_provisional_with_the_statutory_fixed_holidays() {
    let cn = cn();
    assert_eq!(cn.beyond_published, BeyondPublished::Provisional);
    // Tue 12-29: Wed 12-30 (1), Thu 12-31 (2); Fri 2027-01-01 is New Year's Day by
    // statute, Sat and Sun the weekend; Mon 01-04 (3).
    golden(&cn, "2026-12-29T10:00:00+08:00", 3, "2027-01-04", "2027-01-04T00:00:00+08:00", "2027-01-05T00:00:00+08:00");
    let ex = cn.explain_business_deadline(at("2026-12-29T10:00:00+08:00"), BusinessDays(3)).unwrap();
    assert!(ex.provisional, "the deadline reaches past 2026");
    let new_year = ex.days.iter().find(|d| d.date == day("2027-01-01")).unwrap();
    assert_eq!(new_year.role, DayRole::Skipped);
    assert!(
        matches!(&new_year.kind, DayKind::Holiday { name } if name.contains("New Year's Day 2027") && name.contains("statutory")),
        "{:?}",
        new_year.kind
    );
    // Inside the published years nothing is provisional.
    let inside = cn.explain_business_deadline(at("2026-12-28T10:00:00+08:00"), BusinessDays(3)).unwrap();
    assert!(!inside.provisional);
    // National Day 2027 (Fri 10-01 to Sun 10-03): receipt Wed 09-29, Thu 09-30 (1),
    // Mon 10-04 (2), Tue 10-05 (3).
    golden(&cn, "2027-09-29T10:00:00+08:00", 3, "2027-10-05", "2027-10-05T00:00:00+08:00", "2027-10-06T00:00:00+08:00");
    assert!(matches!(cn.day_kind(day("2027-10-01")), DayKind::Holiday { .. }));
    assert!(matches!(cn.day_kind(day("2028-05-02")), DayKind::Holiday { .. }), "Labour Day is two days");
    assert_eq!(cn.day_kind(day("2028-05-03")), DayKind::Working);
    // The lunar holidays are counted too (2027-02-08, a Monday, is the Spring Festival's
    // third day); the make-up working days are not known: Sat 2027-02-20 is a weekend.
    assert!(
        matches!(cn.day_kind(day("2027-02-08")), DayKind::Holiday { name } if name.contains("Spring Festival 2027"))
    );
    assert_eq!(cn.day_kind(day("2027-02-20")), DayKind::Weekend);
}

#[test]
fn past_the_published_years_the_lunar_holidays_and_qingming_are_computed() {
    let cn = cn();
    let holiday = |d: &str| match cn.day_kind(day(d)) {
        DayKind::Holiday { name } => name,
        other => panic!("{d}: expected a statutory holiday, got {other:?}"),
    };
    // 2027: the lunar year begins Sat 02-06; its eve and first three days are statutory.
    for d in ["2027-02-05", "2027-02-06", "2027-02-07", "2027-02-08"] {
        assert!(holiday(d).starts_with("Spring Festival 2027"), "{d}: {}", holiday(d));
    }
    assert_eq!(cn.day_kind(day("2027-02-04")), DayKind::Working);
    assert_eq!(cn.day_kind(day("2027-02-09")), DayKind::Working);
    assert!(holiday("2027-04-05").starts_with("Qingming Festival 2027"));
    assert!(holiday("2027-06-09").starts_with("Dragon Boat Festival 2027"));
    assert!(holiday("2027-09-15").starts_with("Mid-Autumn Festival 2027"));
    // 2028: the lunar year begins Wed 01-26; Mid-Autumn falls on National Day's third day.
    for d in ["2028-01-25", "2028-01-26", "2028-01-27", "2028-01-28"] {
        assert!(holiday(d).starts_with("Spring Festival 2028"), "{d}: {}", holiday(d));
    }
    assert!(holiday("2028-04-04").starts_with("Qingming Festival 2028"));
    assert!(holiday("2028-05-28").starts_with("Dragon Boat Festival 2028"));
    let shared = holiday("2028-10-03");
    assert!(shared.contains("Mid-Autumn Festival") && shared.contains("National Day"), "{shared}");
    // A review SLA received the day before the 2027 eve: Fri 02-05 to Mon 02-08 are the
    // festival (Sat and Sun its own days too), then Tue (1), Wed (2), Thu 02-11 (3).
    golden(&cn, "2027-02-04T10:00:00+08:00", 3, "2027-02-11", "2027-02-11T00:00:00+08:00", "2027-02-12T00:00:00+08:00");
    let ex = cn.explain_business_deadline(at("2027-02-04T10:00:00+08:00"), BusinessDays(3)).unwrap();
    assert!(ex.provisional);
}

#[test]
fn every_statutory_day_computed_for_a_published_year_is_inside_its_published_holidays() {
    // No statutory day is missing from a provisional year: the computed statutory days
    // of 2025 and 2026 are all holidays of the published arrangements (which add bridge
    // days and make-up working days around them, the part a provisional year cannot
    // know).
    let cn = cn();
    let days = cn.statutory_days(2025..=2026);
    assert_eq!(days.len(), 2 * 13, "13 statutory days a year (2024 amendment): {days:?}");
    for (d, name) in days {
        assert!(
            matches!(cn.day_kind(d), DayKind::Holiday { .. }),
            "{d} ({name}) is a statutory day but the published arrangement has {:?}",
            cn.day_kind(d)
        );
    }
}

#[test]
fn a_provisional_calendar_stops_two_years_past_its_published_range() {
    let cn = cn();
    assert_eq!(PROVISIONAL_YEARS, 2);
    // Mon 2028-12-25: Tue, Wed, Thu 12-28 — still 2028, the last provisional year.
    golden(&cn, "2028-12-25T10:00:00+08:00", 3, "2028-12-28", "2028-12-28T00:00:00+08:00", "2028-12-29T00:00:00+08:00");
    // Wed 2028-12-27: Thu 12-28, Fri 12-29, then 2029 — refused.
    assert_out_of_range(cn.business_deadline(at("2028-12-27T10:00:00+08:00"), BusinessDays(3)), "2029-01-01");
    assert_out_of_range(cn.business_deadline(at("2029-03-01T10:00:00+08:00"), BusinessDays(1)), "2029-03-01");
}

#[test]
fn receipt_before_the_published_range_is_refused() {
    let cn = cn();
    assert_out_of_range(cn.business_deadline(at("2024-12-31T10:00:00+08:00"), BusinessDays(3)), "2024-12-31");
    assert_out_of_range(cn.start_of_nth_business_day(at("2024-06-03T10:00:00+08:00"), BusinessDays(1)), "2024-06-03");
    // 20:00Z on 2024-12-31 is 04:00 on 2025-01-01 in Shanghai: inside the range.
    // New Year's Day (Wed) is a holiday: day 1 Thu 01-02, day 2 Fri 01-03, day 3 Mon
    // 01-06.
    golden(&cn, "2024-12-31T20:00:00Z", 3, "2025-01-06", "2025-01-06T00:00:00+08:00", "2025-01-07T00:00:00+08:00");
}

#[test]
fn out_of_range_error_says_how_to_fix_it() {
    let err = cn_refusing().business_deadline(at("2026-12-29T10:00:00+08:00"), BusinessDays(3)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("\"cn-mainland\""), "{msg}");
    assert!(msg.contains("2025..=2026"), "{msg}");
    assert!(msg.contains("2027-01-01"), "{msg}");
    assert!(msg.contains("workflows/calendars/cn-mainland.toml"), "{msg}");
}

// ------------------------------------------------------------ calendar days

#[test]
fn calendar_day_deadline_uses_the_local_date() {
    let cn = cn();
    // 16:05Z on Mon 03-09 is 00:05 on Tue 03-10 in Shanghai: 3 calendar days after Tue
    // 03-10 is Fri 03-13, due at its end.
    assert_eq!(
        cn.calendar_deadline(at("2026-03-09T16:05:00Z"), CalendarDays(3)).unwrap(),
        at("2026-03-14T00:00:00+08:00")
    );
    // 15:30Z on the same Monday is still 23:30 Monday locally: due at the end of Thu.
    assert_eq!(
        cn.calendar_deadline(at("2026-03-09T15:30:00Z"), CalendarDays(3)).unwrap(),
        at("2026-03-13T00:00:00+08:00")
    );
    // The weekday calendar is in UTC: 16:05Z Monday is Monday.
    assert_eq!(
        weekdays().calendar_deadline(at("2026-03-09T16:05:00Z"), CalendarDays(3)).unwrap(),
        at("2026-03-13T00:00:00Z")
    );
}

#[test]
fn calendar_days_count_holidays_and_weekends() {
    let cn = cn();
    // Fri 02-13: Sat, Sun, Mon — every day counts; due at the end of Mon 02-16.
    assert_eq!(
        cn.calendar_deadline(at("2026-02-13T10:00:00+08:00"), CalendarDays(3)).unwrap(),
        at("2026-02-17T00:00:00+08:00")
    );
    // Calendar days need no holiday data, so they may run past the published range.
    assert_eq!(
        cn.calendar_deadline(at("2026-12-30T10:00:00+08:00"), CalendarDays(3)).unwrap(),
        at("2027-01-03T00:00:00+08:00")
    );
}

#[test]
fn local_date_and_start_of_day_in_shanghai() {
    let cn = cn();
    assert_eq!(cn.local_date(at("2026-03-09T16:05:00Z")), day("2026-03-10"));
    assert_eq!(cn.local_date(at("2026-03-09T15:59:59Z")), day("2026-03-09"));
    assert_eq!(cn.start_of(day("2026-03-10")).unwrap(), at("2026-03-09T16:00:00Z"));
}

// ------------------------------------------------------------ from_toml refusals

const BASE: &str = r#"
name = "test"
time_zone = "Asia/Shanghai"
weekend = ["sat", "sun"]
published = { first_year = 2026, last_year = 2026 }
"#;

#[track_caller]
fn refused(text: &str) -> String {
    let file = Path::new("/calendars/test.toml");
    match Calendar::from_toml(file, text) {
        Err(CalendarError::Invalid { file: f, problem }) => {
            assert_eq!(f, file);
            problem
        }
        Err(other) => panic!("expected Invalid, got {other:?}"),
        Ok(cal) => panic!("expected a refusal, calendar loaded: {cal:?}"),
    }
}

#[test]
fn from_toml_accepts_the_base_calendar() {
    let cal = Calendar::from_toml(Path::new("test.toml"), BASE).unwrap();
    assert_eq!(cal.name, "test");
    assert_eq!(cal.description, "");
    assert_eq!(cal.day_kind(day("2026-03-07")), DayKind::Weekend);
}

#[test]
fn from_toml_refuses_a_make_up_day_that_is_not_a_weekend_day() {
    // 2026-03-10 is a Tuesday.
    let problem = refused(&format!("{BASE}\n[[makeup_working_days]]\ndate = \"2026-03-10\"\nfor = \"X\"\n"));
    assert!(problem.contains("2026-03-10"), "{problem}");
    assert!(problem.contains("already a working day"), "{problem}");
}

#[test]
fn from_toml_refuses_a_make_up_day_on_a_weekday_the_file_marks_as_weekend() {
    // With a Friday/Saturday weekend, a Sunday make-up day is refused and a Friday one
    // is accepted.
    let base = BASE.replace(r#"["sat", "sun"]"#, r#"["friday", "Saturday"]"#);
    let problem = refused(&format!("{base}\n[[makeup_working_days]]\ndate = \"2026-03-08\"\nfor = \"X\"\n"));
    assert!(problem.contains("2026-03-08"), "{problem}");
    let cal = Calendar::from_toml(
        Path::new("test.toml"),
        &format!(
            "{base}\n[[holidays]]\nname = \"X\"\nfrom = \"2026-03-02\"\n\n[[makeup_working_days]]\ndate = \"2026-03-06\"\nfor = \"X\"\n"
        ),
    )
    .unwrap();
    assert_eq!(cal.day_kind(day("2026-03-06")), DayKind::MakeupWorkingDay { for_holiday: "X".into() });
    assert_eq!(cal.day_kind(day("2026-03-08")), DayKind::Working);
}

#[test]
fn from_toml_refuses_a_holiday_outside_the_published_years() {
    let problem = refused(&format!("{BASE}\n[[holidays]]\nname = \"New Year 2027\"\nfrom = \"2027-01-01\"\n"));
    assert!(problem.contains("\"New Year 2027\""), "{problem}");
    assert!(problem.contains("outside the published years"), "{problem}");
    // A block that starts inside the range and runs out of it is refused too.
    let problem =
        refused(&format!("{BASE}\n[[holidays]]\nname = \"Year end\"\nfrom = \"2026-12-31\"\nto = \"2027-01-02\"\n"));
    assert!(problem.contains("2027-01-01"), "{problem}");
}

#[test]
fn from_toml_refuses_a_make_up_day_outside_the_published_years() {
    // Sat 2027-01-02.
    let problem = refused(&format!("{BASE}\n[[makeup_working_days]]\ndate = \"2027-01-02\"\nfor = \"X\"\n"));
    assert!(problem.contains("outside the published years"), "{problem}");
}

#[test]
fn from_toml_refuses_a_day_both_holiday_and_make_up() {
    // Sun 2026-02-15.
    let problem = refused(&format!(
        "{BASE}\n[[holidays]]\nname = \"Spring\"\nfrom = \"2026-02-15\"\nto = \"2026-02-17\"\n\
         \n[[makeup_working_days]]\ndate = \"2026-02-15\"\nfor = \"Spring\"\n"
    ));
    assert!(problem.contains("2026-02-15"), "{problem}");
    assert!(problem.contains("both a holiday and a make-up working day"), "{problem}");
}

#[test]
fn from_toml_refuses_overlapping_holidays_and_reversed_ranges() {
    let problem = refused(&format!(
        "{BASE}\n[[holidays]]\nname = \"A\"\nfrom = \"2026-05-01\"\nto = \"2026-05-03\"\n\
         \n[[holidays]]\nname = \"B\"\nfrom = \"2026-05-03\"\n"
    ));
    assert!(problem.contains("2026-05-03"), "{problem}");
    assert!(problem.contains("\"A\"") && problem.contains("\"B\""), "{problem}");
    let problem = refused(&format!("{BASE}\n[[holidays]]\nname = \"A\"\nfrom = \"2026-05-03\"\nto = \"2026-05-01\"\n"));
    assert!(problem.contains("before"), "{problem}");
}

#[test]
fn from_toml_refuses_an_unknown_weekday_name() {
    let problem = refused(&BASE.replace(r#"["sat", "sun"]"#, r#"["sat", "sunday", "caturday"]"#));
    assert!(problem.contains("\"caturday\""), "{problem}");
    assert!(problem.contains("not a day of the week"), "{problem}");
}

#[test]
fn from_toml_refuses_first_year_after_last_year() {
    let problem = refused(&BASE.replace("first_year = 2026, last_year = 2026", "first_year = 2027, last_year = 2026"));
    assert!(problem.contains("2027"), "{problem}");
    assert!(problem.contains("after last_year 2026"), "{problem}");
}

#[test]
fn from_toml_refuses_unknown_fields_and_bad_zones() {
    let problem = refused(&format!("{BASE}\ncolour = \"red\"\n"));
    assert!(problem.contains("colour"), "{problem}");
    let problem = refused(&BASE.replace("Asia/Shanghai", "Asia/Atlantis"));
    assert!(problem.contains("Asia/Atlantis"), "{problem}");
}

#[test]
fn from_toml_refuses_a_weekend_of_every_day() {
    let base = BASE.replace(r#"["sat", "sun"]"#, r#"["mon", "tue", "wed", "thu", "fri", "sat", "sun"]"#);
    assert!(refused(&base).contains("no working day"));
}

#[test]
fn from_toml_refuses_a_make_up_day_listed_twice() {
    let problem = refused(&format!(
        "{BASE}\n[[holidays]]\nname = \"X\"\nfrom = \"2026-03-02\"\n\n\
         [[makeup_working_days]]\ndate = \"2026-03-07\"\nfor = \"X\"\n\n\
         [[makeup_working_days]]\ndate = \"2026-03-07\"\nfor = \"X\"\n"
    ));
    assert!(problem.contains("2026-03-07 is listed twice"), "{problem}");
}

#[test]
fn from_toml_refuses_a_make_up_day_for_an_unknown_holiday() {
    let problem =
        refused(&format!("{BASE}\n[[makeup_working_days]]\ndate = \"2026-03-07\"\nfor = \"Nonexistent Festival\"\n"));
    assert!(problem.contains("\"Nonexistent Festival\""), "{problem}");
    assert!(problem.contains("not a holiday in this file"), "{problem}");
}

#[test]
fn a_count_longer_than_the_published_range_is_refused_without_walking() {
    let result = cn().business_deadline(at("2026-03-02T10:00:00+08:00"), BusinessDays(u32::MAX));
    assert!(matches!(result, Err(CalendarError::OutOfRange { .. })), "{result:?}");
}

#[test]
fn from_toml_refuses_recurring_holidays_without_the_provisional_policy_or_with_bad_dates() {
    let recurring = |r: &str| format!("{BASE}recurring_holidays = [{r}]\n");
    let problem = refused(&recurring(r#"{ name = "New Year's Day", month = 1, day = 1 }"#));
    assert!(problem.contains("beyond_published = \"provisional\""), "{problem}");
    let provisional = |r: &str| format!("{BASE}beyond_published = \"provisional\"\nrecurring_holidays = [{r}]\n");
    let problem = refused(&provisional(r#"{ name = "Leap", month = 2, day = 30 }"#));
    assert!(problem.contains("\"Leap\"") && problem.contains("month 2 day 30 is not a date"), "{problem}");
    let problem = refused(&provisional(r#"{ name = "Long", month = 10, day = 1, days = 0 }"#));
    assert!(problem.contains("`days` must be 1 to 7, not 0"), "{problem}");
    let problem = refused(&format!("{BASE}beyond_published = \"guess\"\n"));
    assert!(problem.contains("guess"), "{problem}");
    Calendar::from_toml(Path::new("/calendars/test.toml"), &provisional(r#"{ name = "Day", month = 2, day = 29 }"#))
        .expect("29 February recurs (in leap years)");
    // Lunar dates and solar terms: each field's rule, by the holiday's name.
    for (entry, rule) in [
        (r#"{ name = "L", lunar = true, month = 13, day = 1 }"#, "lunar month 13 day 1 is not a lunar date"),
        (r#"{ name = "L", lunar = true, month = 1, day = 31 }"#, "lunar month 1 day 31 is not a lunar date"),
        (r#"{ name = "L", solar_term = "midsummer" }"#, "solar_term \"midsummer\" is not one of the 24 solar terms"),
        (r#"{ name = "L", solar_term = "qingming", month = 4, day = 5 }"#, "or a `solar_term`"),
        (r#"{ name = "L", lunar = true, solar_term = "qingming" }"#, "or a `solar_term`"),
        (r#"{ name = "L", month = 4 }"#, "or a `solar_term`"),
        (r#"{ name = "L", month = 4, day = 5, starts_before = 8 }"#, "`starts_before` must be 0 to 7, not 8"),
    ] {
        let problem = refused(&provisional(entry));
        assert!(problem.contains("\"L\"") && problem.contains(rule), "{entry}: {problem}");
    }
    let cal = Calendar::from_toml(
        Path::new("/calendars/test.toml"),
        &provisional(r#"{ name = "Solstice", solar_term = "dongzhi" }"#),
    )
    .expect("every solar term by its pinyin name");
    // Years the lunisolar arithmetic does not answer for are refused, not computed.
    for years in ["first_year = 9990, last_year = 9995", "first_year = 0, last_year = 2026"] {
        let text = provisional(r#"{ name = "L", lunar = true, month = 12, day = 1 }"#)
            .replace("first_year = 2026, last_year = 2026", years);
        let problem = refused(&text);
        assert!(problem.contains("must lie within 1..=9990"), "{years}: {problem}");
    }
    let solstice: Vec<_> = cal.statutory_days(2027..=2027).into_iter().map(|(d, _)| d).collect();
    assert_eq!(solstice, [day("2027-12-22")], "the winter solstice of the year asked for, in December");
}
