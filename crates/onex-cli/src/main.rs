//! The `onex` binary: parses arguments, sets up logging, calls [`onex_cli::run`].

use std::process::ExitCode;

use clap::Parser;
use onex_cli::cli::Cli;

// The bus moves many small allocations between threads; mimalloc handles that far better than
// glibc malloc (measured in `onex bench bus-memory`, docs/benchmarks.md), when entered the way
// its fast path expects (onex-alloc).
#[global_allocator]
static GLOBAL: onex_alloc::Allocator = onex_alloc::Allocator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo tells its own story (including the DLQ it triggers on purpose).
    let quiet_demo = matches!(cli.command, onex_cli::cli::Command::Demo(_)) && cli.log == "warn";
    let level = if quiet_demo { "error" } else { cli.log.as_str() };
    let filter = tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.json;
    match runtime.block_on(onex_cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                eprintln!("{}", serde_json::json!({"error": e.report(), "kind": e.kind()}));
            } else {
                eprintln!("error: {}", e.report());
            }
            ExitCode::from(2)
        }
    }
}
