//! What an adapter crate needs to plug into the gateway.
//!
//! An adapter crate owns its configuration: its keys in `[[adapter]]`, `[[device]]` and
//! `[[device.field]]`, their validation, what `check` prints about it, its counters, and the
//! settings compared on a reload. It implements [`AdapterType`] and is registered with one line
//! in the gateway's `src/adapter_registry.rs` (docs/adding-an-adapter.md walks through it).
//! This crate gives it the tools the gateway's own sections use:
//! - [`diagnostic`]: positions and the [`Report`] of errors and warnings (`PATH:LINE:COL:
//!   message`), and [`did_you_mean`];
//! - [`entry`]: a table's keys with their spans, and typed readers (strings, numbers, integers
//!   in a range, durations, choices, lists);
//! - [`host_port`]: domains and `host:port` addresses;
//! - [`files`]: secrets and CA files named by `*_file` keys, looked up as everywhere else;
//! - [`rs485`]: the RS-485 direction keys of adapters on a serial port, and their `check` line;
//! - `serial_port` (feature `serial-port`): opening a serial port with the configured line
//!   settings;
//! - [`settings`]: [`AnySettings`], parsed settings compared by value on a reload;
//! - [`adapter_type`]: the registration trait and what its methods are given;
//! - [`counters`]: an adapter's counters as metrics.

pub mod adapter_type;
pub mod counters;
pub mod diagnostic;
pub mod duration;
pub mod entry;
pub mod files;
pub mod host_port;
pub mod rs485;
pub mod secret;
#[cfg(feature = "serial-port")]
pub mod serial_port;
pub mod settings;

pub use adapter_type::{
    AdapterCx, AdapterSlice, AdapterTask, AdapterType, ConfigParser, DeviceCx, DeviceDraft,
    DeviceSlice, DiscoverEnv, DiscoverTask, Expansion, FieldCx, FieldDraft, FieldSlice, FinishCx,
    Keys, ParsedField, SerialPorts, StartEnv,
};
pub use counters::Counters;
pub use diagnostic::{
    did_you_mean, list_names, suggestion, ConfigErrors, Diagnostic, Report, Span,
};
pub use entry::{unknown_key, Entry, Section, Spanned, StringList};
pub use files::{check_text, Files, LoadMode, Pair, ServiceAccess};
pub use settings::{AnySettings, Settings};
/// The TOML parser whose items [`Entry`] holds, for adapters that read a table value.
pub use toml_edit;

use std::sync::Arc;

/// A secret read from a file (or, with a warning, inline). Its `Debug` never shows the value;
/// its equality compares it, so that a changed password restarts what uses it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}
