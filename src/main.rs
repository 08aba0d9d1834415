//! The `appealflow` binary: logging to stderr, then the command line.

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

/// mimalloc rather than the system's allocator: the timer loop and the server allocate
/// and free many small values per firing and per request, often on one thread what
/// another (a SQLite connection's) allocated, where glibc's allocator spends its time
/// in locks and consolidation (`cargo bench --bench ceiling` measures both runs with it).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    appealflow::startup::no_huge_pages();
    // The PDF inspection child (see adapters::pdf_sandbox): nothing else, no runtime.
    if std::env::args_os().nth(1).is_some_and(|a| a == appealflow::adapters::pdf_sandbox::COMMAND) {
        return appealflow::adapters::pdf_sandbox::child_main();
    }
    let parsed = match appealflow::cli::parse() {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    run(parsed)
}

#[tokio::main]
async fn run(parsed: appealflow::cli::Parsed) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("APPEALFLOW_LOG").unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    parsed.run().await
}
