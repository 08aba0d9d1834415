//! The `appealflow` binary: logging to stderr, then the command line.

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // The PDF inspection child (see adapters::pdf_sandbox): nothing else, no runtime.
    if std::env::args_os().nth(1).is_some_and(|a| a == appealflow::adapters::pdf_sandbox::COMMAND) {
        return appealflow::adapters::pdf_sandbox::child_main();
    }
    run()
}

#[tokio::main]
async fn run() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("APPEALFLOW_LOG").unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    appealflow::cli::main().await
}
