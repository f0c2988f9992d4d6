//! Fuzz target: `mqtt_payload`, the MQTT adapter's topics and payloads to readings (see
//! `gateway_mqtt::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gateway_mqtt::fuzzing::mqtt_payload(data));
