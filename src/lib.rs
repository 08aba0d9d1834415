//! appealflow: a durable workflow engine for account appeals. See README.md for the
//! lifecycle and DESIGN notes; each module's first lines say what it owns.

pub mod adapters;
pub mod app;
pub mod calendar;
pub mod cli;
pub mod domain;
pub mod engine;
pub mod failpoint;
pub mod http;
pub mod jobs;
pub mod startup;
pub mod store;
pub mod workflow;
