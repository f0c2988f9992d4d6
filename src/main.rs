//! The `xmpp-iot-gateway` binary: parses the command line and hands over to the library.

mod cli;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use xmpp_iot_gateway::config::{self, LoadMode};
use xmpp_iot_gateway::remote;

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
        Command::Read {
            target,
            fields,
            from,
            to,
            json,
            login,
        } => {
            let time = |t: Option<String>| -> Result<_, String> {
                t.map(|t| {
                    chrono::DateTime::parse_from_rfc3339(&t)
                        .map(|d| d.with_timezone(&chrono::Utc))
                        .map_err(|e| format!("{t:?} is not an RFC 3339 time: {e}"))
                })
                .transpose()
            };
            let (login, target, from, to) = match (
                remote_login(&login),
                parse_jid(&target),
                time(from),
                time(to),
            ) {
                (Ok(l), Ok(t), Ok(f), Ok(to)) => (l, t, f, to),
                (l, t, f, to) => {
                    for e in [l.err(), t.err(), f.err(), to.err()].into_iter().flatten() {
                        eprintln!("error: {e}");
                    }
                    return Ok(ExitCode::from(EXIT_CONFIG));
                }
            };
            init_logging(cli.log.as_deref(), Some("warn"));
            let historical = from.is_some() || to.is_some();
            let what = remote::ReadRequest { fields, from, to };
            let result = client_runtime()?.block_on(remote::read(&login, &target, &what));
            match result {
                Ok(fields) if json => println!("{}", remote::json(&target, &fields)),
                Ok(fields) => print!("{}", remote::table(&fields, historical)),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Set {
            target,
            values,
            login,
        } => {
            let pairs: Result<Vec<(String, String)>, String> = values
                .iter()
                .map(|v| {
                    v.split_once('=')
                        .map(|(n, v)| (n.to_owned(), v.to_owned()))
                        .ok_or_else(|| format!("{v:?} is not NAME=VALUE"))
                })
                .collect();
            let (login, target, pairs) = match (remote_login(&login), parse_jid(&target), pairs) {
                (Ok(l), Ok(t), Ok(p)) => (l, t, p),
                (l, t, p) => {
                    for e in [l.err(), t.err(), p.err()].into_iter().flatten() {
                        eprintln!("error: {e}");
                    }
                    return Ok(ExitCode::from(EXIT_CONFIG));
                }
            };
            init_logging(cli.log.as_deref(), Some("warn"));
            match client_runtime()?.block_on(remote::set(&login, &target, &pairs)) {
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
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Check => {
            let path = config::resolve_path(cli.config.as_deref());
            match config::load(&path, LoadMode::Check) {
                Ok(loaded) => {
                    for w in &loaded.warnings {
                        eprintln!("warning: {w}");
                    }
                    print!("{}", config::upstream_line(&loaded.config));
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

fn parse_jid(s: &str) -> Result<xmpp_parsers::jid::Jid, String> {
    xmpp_parsers::jid::Jid::new(s).map_err(|e| format!("{s:?} is not a JID: {e}"))
}

/// The login of `read`/`set`: password from --password-file, else $XMPP_PASSWORD.
fn remote_login(args: &cli::LoginArgs) -> Result<remote::Login, String> {
    let jid = xmpp_parsers::jid::BareJid::new(&args.jid)
        .map_err(|e| format!("--jid {:?} is not a bare JID: {e}", args.jid))?;
    let password = match &args.password_file {
        Some(path) => std::fs::read_to_string(path)
            .map(|p| p.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|e| format!("cannot read --password-file {}: {e}", path.display()))?,
        None => std::env::var("XMPP_PASSWORD")
            .map_err(|_| "no password: give --password-file or set $XMPP_PASSWORD".to_owned())?,
    };
    let timeout = humantime::parse_duration(&args.timeout)
        .map_err(|e| format!("--timeout {:?}: {e}", args.timeout))?;
    if args.no_tls {
        let loopback = args.server.as_deref().is_some_and(|s| {
            s.parse::<std::net::SocketAddr>()
                .map(|a| a.ip().is_loopback())
                .unwrap_or(false)
                || s.starts_with("localhost:")
        });
        if !loopback {
            return Err("--no-tls is only allowed with a loopback --server".into());
        }
    }
    Ok(remote::Login {
        jid,
        password,
        server: args.server.clone(),
        ca_file: args.ca_file.clone(),
        plaintext: args.no_tls,
        timeout,
    })
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
    let directives = cli_level
        .map(str::to_owned)
        .or_else(|| std::env::var("RUST_LOG").ok())
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
