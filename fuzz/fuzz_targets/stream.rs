//! Fuzz target: `stream`, arbitrary bytes split at arbitrary points through both upstream stream
//! readers (see `xmpp_iot_gateway::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| xmpp_iot_gateway::fuzzing::stream(data));
