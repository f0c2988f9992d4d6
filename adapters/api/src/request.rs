//! Reads and writes that reach an adapter from XMPP.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::{DeviceId, Reading, Value};

/// What is asked of the device.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestKind {
    /// Read these fields now (empty: all of them).
    Read { fields: Vec<Arc<str>> },
    /// Write these values, in this order. The adapter answers with the values as the device
    /// confirms them (read back where the bus allows it).
    Write { values: Vec<(Arc<str>, Value)> },
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("the device is not reachable: {0}")]
    Unreachable(String),
    #[error("the device refused the request: {0}")]
    Refused(String),
    #[error("the device did not answer in time")]
    Timeout,
    #[error("field {0:?} is not writable")]
    NotWritable(String),
    #[error("no field {0:?}")]
    UnknownField(String),
    #[error("value for {field:?} is out of range: {reason}")]
    OutOfRange { field: String, reason: String },
    #[error("the adapter is stopping")]
    Closed,
}

/// One request with the channel its answer goes back on.
#[derive(Debug)]
pub struct Request {
    pub device: DeviceId,
    pub kind: RequestKind,
    /// Answered exactly once by the adapter; the core waits on it under a timeout.
    pub reply: oneshot::Sender<Result<Vec<Reading>, RequestError>>,
}
