//! Whole configurations loaded as `check` loads them, in a fixed environment: for tests of
//! configuration keys, the gateway's own and each adapter crate's (`adapters/*/tests/`, which
//! enable this crate's `testing` feature). Nothing here is part of the release build.

use std::path::Path;

use super::{load_with, ConfigErrors, Env, LoadMode, Loaded};

/// The path every test configuration is loaded as (it names the file in messages).
pub const PATH: &str = "/etc/gw/gateway.toml";

/// The environment of a test load: the host name `testhost`, no credentials or state
/// directory, and no look at the file system for `state_dir` (test paths are made up).
pub(crate) fn env() -> Env {
    Env {
        credentials_dir: None,
        hostname: Some("testhost".into()),
        state_directory: None,
        probe_state_dir: false,
        service: None,
    }
}

/// Loads `src` as `check` does.
pub fn check(src: &str) -> Result<Loaded, ConfigErrors> {
    load_with(Path::new(PATH), src, LoadMode::Check, &env())
}

/// Loads `src`, which must be valid.
pub fn ok(src: &str) -> Loaded {
    match check(src) {
        Ok(loaded) => loaded,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

/// The error lines of `src`, which must be invalid, as `LINE:COL: message`.
pub fn errors(src: &str) -> Vec<String> {
    match check(src) {
        Ok(_) => panic!("expected errors"),
        Err(e) => {
            e.0.iter()
                .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
                .collect()
        }
    }
}

/// The warnings of a valid load, as `LINE:COL: message`.
pub fn warnings(loaded: &Loaded) -> Vec<String> {
    loaded
        .warnings
        .iter()
        .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
        .collect()
}
