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
    // The PDF inspection child (see adapters::pdf_sandbox): nothing else, no runtime.
    if std::env::args_os().nth(1).is_some_and(|a| a == appealflow::adapters::pdf_sandbox::COMMAND) {
        return appealflow::adapters::pdf_sandbox::child_main();
    }
    let parsed = match appealflow::cli::parse() {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    if parsed.is_worker() {
        limit_malloc_arenas();
    }
    run(parsed)
}

/// A worker keeps one glibc malloc arena per core, unless `MALLOC_ARENA_MAX` says
/// otherwise. glibc gives a thread that finds the arenas busy a new one, up to eight per
/// core, and an arena keeps what it has grown to; the SQLite driver runs each connection
/// on a thread of its own (16 in a worker: writers and readers), so a worker burning
/// down a backlog held 103–109 MiB where one arena per core holds 80–92 MiB, firing as
/// many timers a second (the queue bench at 100,000 appeals; see README, Benchmarks).
/// `serve` keeps glibc's default: with one arena per core it answered 13–17 % fewer
/// queue pages a second under load, and its memory is well inside its budget. Called
/// before any thread starts.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, i32::try_from(cores).unwrap_or(i32::MAX)) };
    }
}

#[tokio::main]
async fn run(parsed: appealflow::cli::Parsed) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("APPEALFLOW_LOG").unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    parsed.run().await
}
