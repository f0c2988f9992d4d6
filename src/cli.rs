//! The command line (SPEC §1).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "xmpp-iot-gateway",
    version,
    about = "Gives every sensor and actuator on serial, Modbus and MQTT buses its own XMPP address"
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
