//! The `xmpp-iot-gateway` binary: parses the command line and hands over to the library.

mod cli;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use xmpp_iot_gateway::config::{self, LoadMode};
use xmpp_iot_gateway::device_client;

use cli::{Cli, Command};

/// Exit status for usage and configuration errors; clap uses it for usage errors too.
const EXIT_CONFIG: u8 = 2;

/// The default log filter of `read` and `set`: they report a failure themselves, in one line;
/// library lines would repeat it in another format (`--log debug` shows them).
const COMMAND_LOG: &str = "xmpp_iot_gateway=error";

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
    let log = match cli.log.as_deref().map(cli::log_filter).transpose() {
        Ok(log) => log,
        Err(e) => return Ok(usage_errors([Some(vec![e])])),
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Version => {
            println!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
            println!(
                "adapters: {}",
                xmpp_iot_gateway::adapter_start::supported().join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Read {
            target,
            fields,
            from,
            to,
            json,
            login,
        } => {
            let (login, target, range) = match (
                login.login(),
                cli::target_jid(&target).map_err(|e| vec![e]),
                cli::history_range(from.as_deref(), to.as_deref()),
            ) {
                (Ok(l), Ok(t), Ok(r)) => (l, t, r),
                (l, t, r) => return Ok(usage_errors([l.err(), t.err(), r.err()])),
            };
            init_logging(log.as_deref(), Some(COMMAND_LOG));
            let (from, to) = range;
            let historical = from.is_some() || to.is_some();
            let what = device_client::ReadRequest { fields, from, to };
            let result = client_runtime()?.block_on(device_client::read(&login, &target, &what));
            match result {
                Ok(fields) => {
                    if json {
                        println!("{}", device_client::json(&target, &fields));
                    } else {
                        print!("{}", device_client::table(&fields, historical));
                    }
                    // History may hold no value of a field in the range; a momentary readout
                    // lacks a field only when the device has no such field.
                    let missing = device_client::missing_fields(&what.fields, &fields);
                    if !historical && !missing.is_empty() {
                        eprintln!(
                            "error: {target} has no field {}",
                            missing
                                .iter()
                                .map(|f| format!("{f:?}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                        return Ok(ExitCode::FAILURE);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(remote_error(&e)),
            }
        }
        Command::Set {
            target,
            values,
            login,
        } => {
            let (login, target, pairs) = match (
                login.login(),
                cli::target_jid(&target).map_err(|e| vec![e]),
                cli::set_values(&values),
            ) {
                (Ok(l), Ok(t), Ok(p)) => (l, t, p),
                (l, t, p) => return Ok(usage_errors([l.err(), t.err(), p.err()])),
            };
            init_logging(log.as_deref(), Some(COMMAND_LOG));
            match client_runtime()?.block_on(device_client::set(&login, &target, &pairs)) {
                Ok(()) => {
                    println!(
                        "OK: {} set on {target}",
                        pairs
                            .iter()
                            .map(|(n, v)| format!("{n}={v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(remote_error(&e)),
            }
        }
        Command::Discover { wait } => {
            let wait = match cli::positive_duration("--wait", &wait) {
                Ok(w) => w,
                Err(e) => return Ok(usage_errors([Some(vec![e])])),
            };
            let path = config::resolve_path(cli.config.as_deref());
            let loaded = match config::load(&path, LoadMode::Check) {
                Ok(l) => l,
                Err(errors) => {
                    eprintln!("{errors}");
                    return Ok(ExitCode::from(EXIT_CONFIG));
                }
            };
            // Announcements that are refused are worth seeing next to what was found.
            init_logging(log.as_deref(), Some("warn"));
            let found = client_runtime()?.block_on(xmpp_iot_gateway::discover::discover_all(
                &loaded.config,
                wait,
            ));
            if found.is_empty() {
                eprintln!(
                    "error: no adapter has discovery on (an adapter type that discovers devices says how in its README, e.g. a `discovery` key)"
                );
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            let mut failed = false;
            for f in found {
                match f.result {
                    Ok(text) => print!("{text}"),
                    Err(e) => {
                        eprintln!("error: adapter `{}`: {e}", f.adapter);
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Check => {
            let path = config::resolve_path(cli.config.as_deref());
            match config::load(&path, LoadMode::Check) {
                Ok(loaded) => {
                    for w in &loaded.warnings {
                        eprintln!("warning: {w}");
                    }
                    print!("{}", config::upstream_line(&loaded.config));
                    print!("{}", config::port_lines(&loaded.config));
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
            init_logging(log.as_deref(), loaded.config.log.level.as_deref());
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            tracing::info!(config = %path.display(), "configuration loaded");
            // Parsing a large file peaks far above what the parsed configuration keeps.
            xmpp_iot_gateway::memory::trim();
            // One thread: the gateway waits on sockets far more than it computes, and one thread
            // saves the cross-thread wake-ups (measured: bench/results/) and per-thread memory.
            // SQLite has its own thread, so a slow disk never holds up the event loop.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async {
                let shutdown = CancellationToken::new();
                let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
                tokio::spawn(watch_signals(shutdown.clone(), reload_tx));
                xmpp_iot_gateway::serve(loaded.config, shutdown, reload_rx).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Prints every usage error (one line each) and gives the exit status for them.
fn usage_errors<const N: usize>(errors: [Option<Vec<String>>; N]) -> ExitCode {
    for e in errors.into_iter().flatten().flatten() {
        eprintln!("error: {e}");
    }
    ExitCode::from(EXIT_CONFIG)
}

/// Prints a failed `read`/`set` in one line: 2 when the command line is at fault, else 1.
fn remote_error(e: &device_client::RemoteError) -> ExitCode {
    eprintln!("error: {e}");
    if e.is_usage() {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::FAILURE
    }
}

/// SIGTERM and SIGINT stop the gateway gracefully; SIGHUP reloads its configuration.
async fn watch_signals(shutdown: CancellationToken, reload: tokio::sync::mpsc::Sender<()>) {
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
                // A reload already waiting covers this one too.
                let _ = reload.try_send(());
            }
        }
    }
    tracing::info!("signal received");
    shutdown.cancel();
}

/// Logs go to stderr (journald picks them up). Level: --log, else RUST_LOG, else [log] level, else info.
///
/// One line per event, `key=value` fields. No ANSI colours unless stderr is a terminal. When
/// stderr is the journal, no timestamps (journald stamps every line itself), a `<N>` syslog
/// priority prefix per line (so `journalctl -p warning` works) and line breaks inside a message
/// escaped, so that one event stays one journal entry.
fn init_logging(cli_level: Option<&str>, config_level: Option<&str>) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    // A RUST_LOG that is no filter (`warning`) would silence every line: say so and skip it.
    let env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .filter(|v| match config::check_log_filter(v) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("warning: RUST_LOG ignored: {e}");
                false
            }
        });
    let directives = cli_level
        .map(str::to_owned)
        .or(env)
        .or_else(|| config_level.map(str::to_owned))
        .unwrap_or_else(|| "info".to_owned());
    let filter = EnvFilter::new(quiet_reconnects(&directives));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if stderr_is_journal() {
        let format = tracing_subscriber::fmt::format()
            .without_time()
            .with_ansi(false);
        builder
            .with_ansi(false)
            .event_format(journal::JournalFormat(format))
            .init();
    } else {
        builder.init();
    }
}

/// tokio-xmpp logs an ERROR for every failed reconnect attempt of every session (every second,
/// then every 30 s, for as long as the server is away). The gateway reports those failures
/// itself, once per outage and with what to check (`xmpp/connector.rs`), so the library's
/// reconnect loop is silenced unless the filter names tokio-xmpp explicitly.
fn quiet_reconnects(directives: &str) -> String {
    if directives.contains("tokio_xmpp") {
        directives.to_owned()
    } else {
        format!("{directives},tokio_xmpp::stanzastream=off")
    }
}

/// Whether stderr is connected to the journal: systemd sets `$JOURNAL_STREAM` to the
/// `DEVICE:INODE` of the stream it connected, and it only counts while stderr still is that
/// stream (a shell in a terminal that systemd started inherits the variable, not the stream).
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(meta) => meta.dev() == dev && meta.ino() == ino,
        Err(_) => false,
    }
}

mod journal {
    //! The journal's line format: the usual text with a syslog priority prefix.

    use std::fmt;

    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
    use tracing_subscriber::fmt::FmtContext;
    use tracing_subscriber::registry::LookupSpan;

    /// Wraps a formatter: `<3>` for errors, `<4>` warnings, `<6>` info, `<7>` debug and trace
    /// (sd-daemon(3) prefixes, which journald turns into the entry's PRIORITY), and any line
    /// break inside the event written as `\n`.
    pub struct JournalFormat<F>(pub F);

    impl<S, N, F> FormatEvent<S, N> for JournalFormat<F>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
        F: FormatEvent<S, N>,
    {
        fn format_event(
            &self,
            ctx: &FmtContext<'_, S, N>,
            mut writer: Writer<'_>,
            event: &Event<'_>,
        ) -> fmt::Result {
            let priority = match *event.metadata().level() {
                Level::ERROR => 3,
                Level::WARN => 4,
                Level::INFO => 6,
                _ => 7,
            };
            let mut line = String::new();
            self.0.format_event(ctx, Writer::new(&mut line), event)?;
            let line = line.trim_end_matches(['\n', '\r']).replace('\n', "\\n");
            writeln!(writer, "<{priority}>{line}")
        }
    }
}
