//! appealflow's integration tests, one binary: real SQLite files, a real PostgreSQL
//! database when `APPEALFLOW_TEST_POSTGRES_URL` is set, real HTTP servers on loopback,
//! the real binary. The slow process tests (`crash_matrix`, and `worker_faults`' kill -9
//! loops) are `#[ignore]`d and run apart:
//! `cargo test --test it -- --ignored crash_matrix::` and
//! `cargo test --test it -- --ignored worker_faults:: --test-threads 1`.

#[macro_use]
mod common;

mod applicant_view;
mod browser;
mod calendar;
mod cli;
mod cooling_off;
mod crash_matrix;
mod four_eyes;
mod http_applicant;
mod http_staff;
mod intake;
mod intake_rules;
mod review_queue;
mod sessions;
mod sqlite_idle;
mod sqlite_jobs;
mod sqlite_locks;
mod sqlite_wal;
mod store_conformance;
mod store_driver;
mod versions;
mod web;
mod whatif;
mod worker;
mod worker_faults;
mod workflow_definitions;
