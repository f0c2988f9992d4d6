//! The command line: the subcommands and their arguments, and the checks that turn the
//! arguments of `read` and `set` into a request before anything touches the network, so that a
//! typo is one line and exit status 2 rather than a failed login (or a panic in the XMPP
//! library, which assumes an account JID has a local part).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use xmpp_iot_gateway::device_client;
use xmpp_parsers::jid::{BareJid, Jid};

#[derive(Debug, Parser)]
#[command(
    name = "xmpp-iot-gateway",
    version,
    about = "Gives every sensor and actuator on the local buses its own XMPP address"
)]
pub struct Cli {
    /// Configuration file. Default: $XMPP_IOT_GATEWAY_CONFIG, else ./gateway.toml, else /etc/xmpp-iot-gateway/gateway.toml.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. `info` or `xmpp_iot_gateway=debug` (overrides RUST_LOG and [log] level).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the gateway (the default).
    Run,
    /// Validate the configuration and the files it names; print the servers and the device table.
    Check,
    /// Print name, version and the adapters this build supports.
    Version,
    /// Listen for devices that announce themselves (adapters with `discovery` on) and print
    /// them as `[[device]]` blocks to paste into the configuration.
    Discover {
        /// How long to listen on each broker.
        #[arg(long, value_name = "DURATION", default_value = "5s")]
        wait: String,
    },
    /// Read a device over XMPP (XEP-0323) and print its fields.
    Read {
        /// The device's JID, e.g. boiler@sensors.example.org or gateway@example.org/boiler.
        #[arg(value_name = "JID")]
        target: String,
        /// Only this field (repeatable).
        #[arg(long = "field", value_name = "NAME")]
        fields: Vec<String>,
        /// Historical values from this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Historical values up to this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// Print one JSON document instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        login: LoginArgs,
    },
    /// Set writable fields of a device over XMPP (XEP-0325) and print the outcome.
    Set {
        /// The device's JID.
        #[arg(value_name = "JID")]
        target: String,
        /// NAME=VALUE pairs, applied in order.
        #[arg(value_name = "NAME=VALUE", required = true)]
        values: Vec<String>,
        #[command(flatten)]
        login: LoginArgs,
    },
}

/// How `read` and `set` log in: the same client as the gateway's own client mode.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The account to log in with, e.g. alice@example.org.
    #[arg(long = "jid", value_name = "JID")]
    pub jid: String,
    /// A file holding the password (else $XMPP_PASSWORD).
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// Trust this CA in addition to the system roots.
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// HOST:PORT of the server (default: the JID's domain, through SRV).
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// Plaintext instead of STARTTLS; only with a loopback --server.
    #[arg(long)]
    pub no_tls: bool,
    /// How long to wait for the login and for the answer.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub timeout: String,
}

impl LoginArgs {
    /// The login of `read`/`set`, or every problem with it (one line each). The password comes
    /// from --password-file, else $XMPP_PASSWORD.
    pub fn login(&self) -> Result<device_client::Login, Vec<String>> {
        let mut errors = Vec::new();
        let jid = account_jid(&self.jid).map_err(|e| errors.push(e)).ok();
        let password = match &self.password_file {
            Some(path) => std::fs::read_to_string(path)
                .map(|p| p.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| format!("cannot read --password-file {}: {e}", path.display())),
            None => std::env::var("XMPP_PASSWORD")
                .map_err(|_| "no password: give --password-file or set $XMPP_PASSWORD".to_owned()),
        }
        .map_err(|e| errors.push(e))
        .ok();
        if let Some(path) = &self.ca_file {
            if let Err(e) = std::fs::File::open(path) {
                errors.push(format!("cannot read --ca-file {}: {e}", path.display()));
            }
        }
        if let Some(server) = &self.server {
            if let Err(e) = server_address(server) {
                errors.push(e);
            }
        }
        let timeout = positive_duration("--timeout", &self.timeout)
            .map_err(|e| errors.push(e))
            .ok();
        if self.no_tls && !self.server.as_deref().is_some_and(is_loopback) {
            errors.push("--no-tls is only allowed with a loopback --server".into());
        }
        match (jid, password, timeout) {
            (Some(jid), Some(password), Some(timeout)) if errors.is_empty() => {
                Ok(device_client::Login {
                    jid,
                    password,
                    server: self.server.clone(),
                    ca_file: self.ca_file.clone(),
                    plaintext: self.no_tls,
                    timeout,
                })
            }
            _ => Err(errors),
        }
    }
}

/// The account to log in with: a bare JID with a local part (`alice@example.org`).
fn account_jid(s: &str) -> Result<BareJid, String> {
    let jid = BareJid::new(s).map_err(|e| format!("--jid {s:?} is not a bare JID: {e}"))?;
    if jid.node().is_none() {
        return Err(format!(
            "--jid {s:?} has no account name: write the account as NAME@DOMAIN, e.g. alice@{s}"
        ));
    }
    Ok(jid)
}

/// `--server`: `HOST:PORT` (`[::1]:5222` for an IPv6 address); the port is not guessed, since a
/// server given by hand is often a test server on another port.
fn server_address(s: &str) -> Result<(), String> {
    let usage = |why: &str| {
        format!(
            "--server {s:?} {why}: write HOST:PORT, e.g. {}:5222",
            s.trim_end_matches(':')
        )
    };
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(usage("has no port"));
    };
    if host.is_empty() || host.ends_with(':') && !host.starts_with('[') {
        return Err(usage("is not HOST:PORT"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(usage(&format!("has no valid port ({port:?})"))),
    }
}

fn is_loopback(server: &str) -> bool {
    server
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip().is_loopback())
        .unwrap_or(false)
        || server.starts_with("localhost:")
}

pub fn positive_duration(option: &str, s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("{option} {s:?} must be longer than zero")),
        Err(e) => Err(format!("{option} {s:?}: {e} (e.g. 10s, 1m)")),
    }
}

/// The device to read or set.
pub fn target_jid(s: &str) -> Result<Jid, String> {
    Jid::new(s).map_err(|e| format!("{s:?} is not a JID: {e}"))
}

/// The bounds of a historical readout; both `None`: a momentary one.
pub type HistoryRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// `--from`/`--to` of `read`: RFC 3339 times, the first not after the second.
pub fn history_range(from: Option<&str>, to: Option<&str>) -> Result<HistoryRange, Vec<String>> {
    let time = |option: &str, t: Option<&str>| {
        t.map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|e| {
                    format!(
                        "{option} {t:?} is not an RFC 3339 time (e.g. 2026-11-26T08:00:00Z): {e}"
                    )
                })
        })
        .transpose()
    };
    match (time("--from", from), time("--to", to)) {
        (Ok(Some(f)), Ok(Some(t))) if f > t => Err(vec![format!(
            "--from {} is later than --to {}: no value can lie between them",
            from.unwrap_or_default(),
            to.unwrap_or_default()
        )]),
        (Ok(f), Ok(t)) => Ok((f, t)),
        (f, t) => Err([f.err(), t.err()].into_iter().flatten().collect()),
    }
}

/// The `NAME=VALUE` arguments of `set`, in order.
pub fn set_values(values: &[String]) -> Result<Vec<(String, String)>, Vec<String>> {
    let mut pairs = Vec::new();
    let mut errors = Vec::new();
    for v in values {
        match v.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                pairs.push((name.trim().to_owned(), value.to_owned()))
            }
            Some(_) => errors.push(format!("{v:?} has no field name: write NAME=VALUE")),
            None => errors.push(format!("{v:?} is not NAME=VALUE")),
        }
    }
    if errors.is_empty() {
        Ok(pairs)
    } else {
        Err(errors)
    }
}

/// The log filter from `--log`: refused when it is a bare word that is no level (it would
/// silence every log line), as `[log] level` is.
pub fn log_filter(text: &str) -> Result<String, String> {
    xmpp_iot_gateway::config::check_log_filter(text)
        .map(|()| text.trim().to_owned())
        .map_err(|e| format!("--log: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login_args(jid: &str, server: Option<&str>) -> LoginArgs {
        LoginArgs {
            jid: jid.into(),
            password_file: None,
            ca_file: None,
            server: server.map(Into::into),
            no_tls: false,
            timeout: "10s".into(),
        }
    }

    #[test]
    fn an_account_without_a_local_part_is_a_usage_error() {
        let e = account_jid("localhost").unwrap_err();
        assert!(
            e.contains("no account name") && e.contains("alice@localhost"),
            "{e}"
        );
        assert!(account_jid("alice@localhost").is_ok());
        assert!(account_jid("alice@localhost/res").is_err());
    }

    #[test]
    fn a_server_needs_its_port() {
        assert!(server_address("localhost:5222").is_ok());
        assert!(server_address("[::1]:5222").is_ok());
        assert!(server_address("127.0.0.1:15222").is_ok());
        let e = server_address("localhost").unwrap_err();
        assert!(
            e.contains("has no port") && e.contains("localhost:5222"),
            "{e}"
        );
        assert!(server_address("localhost:").is_err());
        assert!(server_address("localhost:99999").is_err());
        assert!(server_address(":5222").is_err());
        assert!(server_address("::1").is_err());
    }

    #[test]
    fn every_login_problem_is_reported_at_once() {
        let mut args = login_args("localhost", Some("localhost"));
        args.ca_file = Some("/nonexistent/ca.pem".into());
        args.password_file = Some("/nonexistent/pw".into());
        args.timeout = "0s".into();
        let errors = args.login().unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(
            errors.iter().any(|e| e.contains("--ca-file")),
            "{errors:#?}"
        );
    }

    #[test]
    fn a_history_range_runs_forwards() {
        let (f, t) = history_range(Some("2026-01-01T00:00:00Z"), Some("2026-01-02T00:00:00Z"))
            .expect("valid range");
        assert!(f < t);
        let e =
            history_range(Some("2026-01-02T00:00:00Z"), Some("2026-01-01T00:00:00Z")).unwrap_err();
        assert!(e[0].contains("later than"), "{e:?}");
        assert_eq!(
            history_range(Some("yesterday"), Some("x"))
                .unwrap_err()
                .len(),
            2
        );
    }

    #[test]
    fn a_value_needs_a_field_name() {
        let ok = set_values(&["level=7".into(), "mode=a=b".into()]).expect("valid");
        assert_eq!(ok[1], ("mode".to_owned(), "a=b".to_owned()));
        let e = set_values(&["=5".into(), "level".into()]).unwrap_err();
        assert!(e[0].contains("no field name"), "{e:?}");
        assert!(e[1].contains("not NAME=VALUE"), "{e:?}");
    }

    #[test]
    fn a_log_level_that_is_no_level_is_refused() {
        let e = log_filter("warning").unwrap_err();
        assert!(e.contains("did you mean `warn`"), "{e}");
        assert!(log_filter("verbose").is_err());
        assert_eq!(log_filter("debug").as_deref(), Ok("debug"));
        assert!(log_filter("xmpp_iot_gateway=debug,info").is_ok());
    }
}
