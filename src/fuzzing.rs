//! Entry points of the gateway's fuzz targets in `fuzz/` (what an adapter crate parses has its
//! targets' entry points in that crate's own `fuzzing` module), kept in the crate so that the
//! normal test suite runs them too: on the seed corpus and on mutations of it.
//!
//! - [`config`]: arbitrary bytes as `gateway.toml` through the loader and validator.
//! - [`stanza`]: arbitrary XML read off a component stream and handed to the core, which answers
//!   it with everything it would send upstream.
//! - [`stream`]: arbitrary bytes, split at arbitrary points, through both upstream stream
//!   readers (component and client mode).
//!
//! Each asserts what must hold for any input; a panic anywhere is a bug.

use std::path::Path;

use crate::config::{self, Env, LoadMode};
use crate::devices::Devices;

pub use crate::core::fuzzing::stanza;
pub use crate::xmpp::fuzzing::stream;

/// The file the fuzzed configuration claims to be; its folder does not exist, so relative paths
/// in the input name nothing.
const CONFIG_PATH: &str = "/nonexistent/xmpp-iot-gateway-fuzz/gateway.toml";

/// Target `config`: the bytes (as UTF-8, lossily) as a configuration file, loaded for `check`
/// and for a run. Either a configuration comes out that the gateway can start its devices from,
/// or errors that each point at a place in the text.
pub fn config(data: &[u8]) {
    let source = String::from_utf8_lossy(data);
    let path = Path::new(CONFIG_PATH);
    let env = Env {
        credentials_dir: None,
        hostname: Some("fuzz-host".into()),
        state_directory: None,
        probe_state_dir: false,
        service: None,
    };
    let lines = source.lines().count().max(1);
    for mode in [LoadMode::Check, LoadMode::Run] {
        match config::load_with(path, &source, mode, &env) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    check_diagnostic(w, path, lines);
                }
                // What `check` prints, and what the core builds at start.
                let _ = config::device_table(&loaded.config);
                if let Err(e) = Devices::from_config(&loaded.config) {
                    panic!("a configuration the validator accepted has unusable devices: {e}");
                }
            }
            Err(errors) => {
                assert!(!errors.0.is_empty(), "a refusal without a reason");
                for e in &errors.0 {
                    check_diagnostic(e, path, lines);
                }
            }
        }
    }
}

fn check_diagnostic(d: &config::Diagnostic, path: &Path, lines: usize) {
    assert_eq!(d.file, path);
    assert!(
        !d.message.is_empty(),
        "empty message at {}:{}",
        d.line,
        d.col
    );
    assert!(
        d.line >= 1 && d.col >= 1,
        "{}:{}: {}",
        d.line,
        d.col,
        d.message
    );
    // One past the last line: an error at the very end of a file with a final newline.
    assert!(
        d.line <= lines + 1,
        "line {} of {lines}: {}",
        d.line,
        d.message
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use gateway_api::fuzzing::Mutator;

    #[test]
    fn config_seeds_and_mutations_pass() {
        Mutator::new(0x9e37_79b9_7f4a_7c15).run(
            Path::new(env!("CARGO_MANIFEST_DIR")),
            "config",
            b"[]=\"'{}#.,\n",
            300,
            super::config,
        );
    }

    #[test]
    fn config_edge_inputs() {
        for input in [
            &b""[..],
            b"\xff\xfe",
            b"[",
            b"[[device]]\n[[device.field]]\n",
            b"[xmpp]\nmode = \"client\"\n",
        ] {
            super::config(input);
        }
    }
}
