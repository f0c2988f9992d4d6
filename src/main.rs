//! The `xmpp-iot-gateway` binary: parses the command line and hands over to the library.

mod cli;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use xmpp_iot_gateway::config::{self, LoadMode};

use cli::{Cli, Command};

/// Exit status for usage and configuration errors (SPEC §1); clap uses it for usage errors too.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Version => {
            println!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
            println!(
                "adapters: {}",
                xmpp_iot_gateway::adapters::SUPPORTED.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => {
            let path = config::resolve_path(cli.config.as_deref());
            match config::load(&path, LoadMode::Check) {
                Ok(loaded) => {
                    for w in &loaded.warnings {
                        eprintln!("warning: {w}");
                    }
                    print!("{}", config::device_table(&loaded.config));
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    Ok(ExitCode::from(EXIT_CONFIG))
                }
            }
        }
        Command::Run => {
            let path = config::resolve_path(cli.config.as_deref());
            let loaded = match config::load(&path, LoadMode::Run) {
                Ok(l) => l,
                Err(errors) => {
                    eprintln!("{errors}");
                    return Ok(ExitCode::from(EXIT_CONFIG));
                }
            };
            init_logging(cli.log.as_deref(), loaded.config.log.level.as_deref());
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            tracing::info!(config = %path.display(), "configuration loaded");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async {
                let shutdown = CancellationToken::new();
                tokio::spawn(watch_signals(shutdown.clone()));
                xmpp_iot_gateway::run(loaded.config, shutdown).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// SIGTERM and SIGINT stop the gateway gracefully.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the gateway with SIGKILL");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                tracing::warn!("SIGHUP: this version does not reload its configuration; restart the service to apply changes");
            }
        }
    }
    tracing::info!("signal received");
    shutdown.cancel();
}

/// Logs go to stderr (journald picks them up). Level: --log, else RUST_LOG, else [log] level, else info.
fn init_logging(cli_level: Option<&str>, config_level: Option<&str>) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = cli_level
        .map(EnvFilter::new)
        .or_else(|| std::env::var("RUST_LOG").ok().map(EnvFilter::new))
        .or_else(|| config_level.map(EnvFilter::new))
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // journald stamps every line itself.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
