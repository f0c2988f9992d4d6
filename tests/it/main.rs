//! The integration tests: one test binary, one module per topic (`cargo test --test it mqtt::`
//! runs the MQTT tests), on the shared rig in [`support`].
//!
//! One binary links once instead of once per file, and every test runs in one process: a test
//! must not change what the others see (environment variables, the working directory, fixed
//! ports); everything a test starts gets its own free port and temporary directory.

mod support;

mod alerts;
mod check;
mod client;
mod cluster;
mod component;
mod deploy;
mod discover;
mod discovery;
mod discovery_client;
mod faults;
mod history;
mod hostile;
mod linux_sensors;
mod modbus;
mod mqtt;
mod publish;
mod reload;
mod rig;
mod room;
mod serial;
