//! Fuzz target: `stanza`, arbitrary XML to the core's stanza handlers (see `xmpp_iot_gateway::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| xmpp_iot_gateway::fuzzing::stanza(data));
