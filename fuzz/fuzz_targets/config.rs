//! Fuzz target: `config`, arbitrary bytes as `gateway.toml` (see `xmpp_iot_gateway::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| xmpp_iot_gateway::fuzzing::config(data));
