//! Tests of the `--now` permission and of database URLs redacted for printing.

use super::*;

#[test]
fn now_is_refused_without_the_override_permission() {
    let err = clock_for(Some("2026-01-05T09:00:00Z"), false).err().unwrap();
    assert_eq!(err.class, ErrorClass::BadInput);
    assert!(err.message.contains(CLOCK_OVERRIDE_ENV));
    let clock = clock_for(Some("2026-01-05T09:00:00+08:00"), true).unwrap();
    assert_eq!(clock.now().to_rfc3339(), "2026-01-05T01:00:00+00:00");
}

#[test]
fn database_passwords_are_redacted() {
    assert_eq!(redact_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    assert_eq!(redact_url("sqlite://appealflow.db"), "sqlite://appealflow.db");
}
