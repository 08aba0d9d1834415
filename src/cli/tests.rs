//! Tests of the `--now` permission, of database URLs redacted for printing, and of the
//! command the binary sees before its runtime starts.

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

#[test]
fn the_worker_command_is_known_before_the_runtime_starts() {
    // Global options may come before the command.
    let worker = parse_from(["appealflow", "--database-url", "sqlite::memory:", "worker", "--concurrency", "4"]);
    assert!(worker.ok().unwrap().is_worker());
    assert!(!parse_from(["appealflow", "serve", "--no-worker"]).ok().unwrap().is_worker());
    assert!(!parse_from(["appealflow", "migrate"]).ok().unwrap().is_worker());
    // --version answers success without a command to run; an unknown flag is a usage error.
    assert_eq!(parse_from(["appealflow", "--version"]).err(), Some(ExitCode::SUCCESS));
    assert_eq!(parse_from(["appealflow", "--bogus"]).err(), Some(ExitCode::from(2)));
}
