//! The `onex` command line as a library: every subcommand is callable from tests without
//! spawning the binary. `main.rs` only parses arguments, sets up logging and calls [`run`].

pub mod bench;
pub mod cli;
pub mod commands;
pub mod demo;

use onex_core::Result;

use crate::cli::{Cli, Command};

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let bus_url = cli.bus.as_deref();
    match cli.command {
        Command::Version => {
            if cli.json {
                println!("{}", serde_json::json!({"name": "onex", "version": env!("CARGO_PKG_VERSION")}));
            } else {
                println!("onex {}", env!("CARGO_PKG_VERSION"));
            }
            Ok(())
        }
        Command::Demo(args) => demo::run(bus_url, args, cli.json).await,
        Command::Publish(args) => commands::publish::run(commands::open_bus(bus_url).await?, bus_url, args, cli.json).await,
        Command::Consume(args) => commands::consume::run(&*commands::open_bus(bus_url).await?, args, cli.json).await,
        Command::Topics { action } => commands::topics::run(&*commands::open_bus(bus_url).await?, action, cli.json).await,
        Command::Bench(args) => bench::run(args, cli.json).await,
        Command::Dlq { action } => commands::dlq::run(commands::open_bus(bus_url).await?, action, cli.json).await,
        Command::Exec(mut args) => {
            args.json |= cli.json;
            commands::exec::run(args).await
        }
        Command::Schema { registry, action } => {
            let registry = commands::schema::open_registry(registry.as_deref(), bus_url).await?;
            commands::schema::run(registry, action, cli.json).await
        }
    }
}
