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
    /// Validate the configuration and the files it names; print the device table.
    Check,
    /// Print name, version and the adapters this build supports.
    Version,
}
