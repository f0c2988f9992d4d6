//! The configuration loader: `gateway.toml` in, a validated [`Config`] (or every problem, with
//! its position) out.
//!
//! Loading goes in three steps, one module each:
//! - [`raw`] parses the TOML with `toml_edit` (which keeps spans) and walks it into a typed
//!   mirror of the file, reporting unknown keys (with "did you mean") and wrong types;
//! - [`validate`] applies defaults and checks meaning: cross-references, JIDs, secrets;
//!   it hands each adapter type's own keys to that type's parser (the adapter crates,
//!   registered in [`crate::adapter_registry`]); [`alert`] checks `[[alert]]` against the devices;
//! - the adapter toolkit (`gateway_toolkit`) turns spans into `PATH:LINE:COL: message` lines.
//!
//! A large file is not parsed in one piece: [`split`] cuts it at its `[[device]]` headers so
//! that each device is parsed, validated and dropped before the next (its module comment says
//! why and when it falls back to the whole file).
//!
//! [`device_table`] renders what `check` prints. `reference` (tests only) keeps
//! `docs/configuration.md` listing exactly the keys [`raw`] accepts. `testing` (tests and the
//! `testing` feature) loads whole configurations for the tests of keys, the adapter crates' too.
//! [`resolve_path`] picks the file to load. The rest of the gateway only ever sees [`model`] types.

mod alert;
mod jid;
pub mod model;
mod raw;
#[cfg(test)]
mod reference;
mod service;
mod split;
mod table;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod validate;

use std::path::{Path, PathBuf};

pub use gateway_toolkit::duration::parse as parse_duration;
pub use gateway_toolkit::{did_you_mean, ConfigErrors, Diagnostic, LoadMode};
pub use model::*;
pub use table::{device_table, port_lines, upstream_line};
pub use validate::check_log_filter;

/// Every adapter `type` this build knows, in the order messages list them.
pub fn adapter_type_names() -> Vec<&'static str> {
    raw::all_types().iter().map(|t| t.name).collect()
}

/// The environment variable naming the configuration file when `--config` is not given.
pub const CONFIG_ENV: &str = "XMPP_IOT_GATEWAY_CONFIG";
/// The system-wide configuration file, the last resort.
pub const SYSTEM_CONFIG: &str = "/etc/xmpp-iot-gateway/gateway.toml";
/// The configuration file looked for in the working directory.
pub const LOCAL_CONFIG: &str = "gateway.toml";

/// A valid configuration and what is worth a warning in it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// In file order; print them with a `warning:` prefix.
    pub warnings: Vec<Diagnostic>,
}

/// What the loader takes from the process environment; a parameter so that tests need not
/// touch the real environment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Env {
    /// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`): relative `*_file` values are
    /// looked up there first.
    pub credentials_dir: Option<PathBuf>,
    /// The host name, the default `[gateway] name`.
    pub hostname: Option<String>,
    /// `$STATE_DIRECTORY` (systemd `StateDirectory=`; the first, when it lists several): the
    /// default `[gateway] state_dir`.
    pub state_directory: Option<PathBuf>,
    /// Whether to look at the file system for a written `state_dir` (off in unit tests, whose
    /// paths are made up).
    pub probe_state_dir: bool,
    /// When `check` runs as root: how the packaged service will meet the files the
    /// configuration names (its user, its unit's credentials), to warn about what it could not
    /// read.
    pub service: Option<service::ServiceView>,
}

impl Env {
    pub(crate) fn from_process() -> Self {
        Env {
            credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            hostname: std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty()),
            state_directory: std::env::var_os("STATE_DIRECTORY")
                .and_then(|v| std::env::split_paths(&v).next())
                .filter(|p| p.is_absolute()),
            probe_state_dir: true,
            service: service::ServiceView::for_root_check(),
        }
    }
}

/// Reads and validates the configuration file at `path`. An unreadable file is one diagnostic
/// at 1:1.
pub fn load(path: &Path, mode: LoadMode) -> Result<Loaded, ConfigErrors> {
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigErrors(vec![Diagnostic::at_start(path, unreadable(path, &e))]))?;
    let source = String::from_utf8(bytes).map_err(|e| {
        ConfigErrors(vec![not_utf8(
            path,
            e.as_bytes(),
            e.utf8_error().valid_up_to(),
        )])
    })?;
    load_str(path, &source, mode)
}

/// Why the configuration file could not be read; for the system file, the last place looked
/// in, also every place looked in before it.
fn unreadable(path: &Path, e: &std::io::Error) -> String {
    let mut message = format!("cannot read the configuration file: {e}");
    if e.kind() == std::io::ErrorKind::NotFound && path == Path::new(SYSTEM_CONFIG) {
        message.push_str(&format!(
            " (looked for --config, ${CONFIG_ENV}, ./{LOCAL_CONFIG} and {SYSTEM_CONFIG})"
        ));
    }
    message
}

/// Where a file stops being UTF-8: the line and column of the first byte that is not.
fn not_utf8(path: &Path, bytes: &[u8], valid_up_to: usize) -> Diagnostic {
    // The prefix is valid UTF-8 by definition of `valid_up_to`.
    let before = std::str::from_utf8(&bytes[..valid_up_to]).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Diagnostic {
        file: path.to_owned(),
        line: before.matches('\n').count() + 1,
        col: before[line_start..].chars().count() + 1,
        message: format!(
            "the configuration file is not UTF-8 text (byte 0x{:02x} here): save it as UTF-8",
            bytes[valid_up_to]
        ),
    }
}

/// Validates configuration text as if read from `path` (which names it in messages and is the
/// base of relative paths).
pub fn load_str(path: &Path, source: &str, mode: LoadMode) -> Result<Loaded, ConfigErrors> {
    load_with(path, source, mode, &Env::from_process())
}

pub(crate) fn load_with(
    path: &Path,
    source: &str,
    mode: LoadMode,
    env: &Env,
) -> Result<Loaded, ConfigErrors> {
    let ctx = validate::Context {
        mode,
        base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        env,
    };
    let mut report = gateway_toolkit::Report::new(path, source);
    let config = match load_by_device(path, source, &ctx, &mut report) {
        Some(config) => config,
        None => {
            report = gateway_toolkit::Report::new(path, source);
            load_whole(path, source, &ctx, &mut report)
        }
    };
    let (errors, warnings) = report.finish();
    match config {
        Some(config) if errors.is_empty() => Ok(Loaded { config, warnings }),
        _ => Err(ConfigErrors(errors)),
    }
}

/// Parses and validates the file in one piece. A syntax error is reported alone: past it,
/// positions and structure are guesses.
fn load_whole(
    path: &Path,
    source: &str,
    ctx: &validate::Context<'_>,
    report: &mut gateway_toolkit::Report<'_>,
) -> Option<Config> {
    let doc = match raw::parse_document(source) {
        Ok(doc) => doc,
        Err((span, message)) => {
            report.error(&span, message);
            return None;
        }
    };
    let walked = raw::walk(&doc, report);
    validate::validate(walked, path, ctx, report)
}

/// Parses and validates the file without its devices, then each `[[device]]` on its own,
/// dropping its tree before the next (see `split`): what a large file costs is then the
/// text and the validated configuration, not `toml_edit`'s tree of every device at once.
/// `None` (whatever was reported) when the file cannot be cut or a piece does not parse: then
/// [`load_whole`] does it, and reports a syntax error as it always has.
fn load_by_device(
    path: &Path,
    source: &str,
    ctx: &validate::Context<'_>,
    report: &mut gateway_toolkit::Report<'_>,
) -> Option<Option<Config>> {
    let pieces = split::device_pieces(source)?;
    if pieces.is_empty() {
        return None;
    }
    let mut validation = {
        let rest = split::blank_out(source, &pieces);
        let doc = raw::parse_document(&rest).ok()?;
        if doc.as_table().contains_key("device") {
            return None;
        }
        let walked = raw::walk(&doc, report);
        validate::Validation::start(walked, path, ctx, report)
    };
    for piece in pieces {
        let doc = raw::parse_document(&source[piece.clone()]).ok()?;
        let device = raw::walk_device(&doc, piece.start, report)?;
        validation.device(device, report);
    }
    Some(validation.finish(report))
}

/// The configuration file to use: `--config`, else `$XMPP_IOT_GATEWAY_CONFIG`, else
/// `./gateway.toml` if it exists, else `/etc/xmpp-iot-gateway/gateway.toml`.
pub fn resolve_path(cli: Option<&Path>) -> PathBuf {
    let from_env = std::env::var_os(CONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    resolve_path_with(cli, from_env, |p| p.is_file())
}

fn resolve_path_with(
    cli: Option<&Path>,
    from_env: Option<PathBuf>,
    exists: impl Fn(&Path) -> bool,
) -> PathBuf {
    if let Some(path) = cli {
        return path.to_owned();
    }
    if let Some(path) = from_env {
        return path;
    }
    let local = Path::new(LOCAL_CONFIG);
    if exists(local) {
        return local.to_owned();
    }
    PathBuf::from(SYSTEM_CONFIG)
}

#[cfg(test)]
mod load_tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_utf8_is_reported_where_it_stops_being_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, b"[gateway]\nname = \"caf\xe9\"\n").expect("write");
        let e = load(&path, LoadMode::Check).unwrap_err();
        assert_eq!((e.0[0].line, e.0[0].col), (2, 12), "{e}");
        assert!(
            e.0[0].message.contains("not UTF-8 text (byte 0xe9 here)"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_default_file_names_every_place_looked_in() {
        let gone = std::io::Error::from(std::io::ErrorKind::NotFound);
        let m = unreadable(Path::new(SYSTEM_CONFIG), &gone);
        assert!(m.contains("(looked for --config, $XMPP_IOT_GATEWAY_CONFIG, ./gateway.toml and /etc/xmpp-iot-gateway/gateway.toml)"), "{m}");
        // A file named on the command line was the only place.
        assert!(!unreadable(Path::new("my.toml"), &gone).contains("looked for"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_path_precedence() {
        let yes = |_: &Path| true;
        let no = |_: &Path| false;
        let cli = Path::new("/opt/gw.toml");
        let env = Some(PathBuf::from("/srv/gw.toml"));
        assert_eq!(resolve_path_with(Some(cli), env.clone(), yes), cli);
        assert_eq!(resolve_path_with(None, env, yes), Path::new("/srv/gw.toml"));
        assert_eq!(
            resolve_path_with(None, None, yes),
            Path::new("gateway.toml")
        );
        assert_eq!(resolve_path_with(None, None, no), Path::new(SYSTEM_CONFIG));
        // The public function with --config never looks further.
        assert_eq!(resolve_path(Some(cli)), cli);
    }

    #[test]
    fn unreadable_file_is_one_diagnostic_at_1_1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.toml");
        let e = load(&path, LoadMode::Check).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!((e.0[0].line, e.0[0].col), (1, 1));
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "{}:1:1: cannot read the configuration file: ",
                path.display()
            )),
            "{text}"
        );

        let binary = dir.path().join("binary.toml");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        let e = load(&binary, LoadMode::Check).unwrap_err();
        assert_eq!((e.0.len(), e.0[0].line, e.0[0].col), (1, 1, 1));
    }

    #[test]
    fn loads_a_file_with_secrets_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(dir.path().join("component.secret"), "s3cret\n").unwrap();
        std::fs::write(
            &path,
            "[xmpp]\ndomain = \"sensors.localhost\"\nsecret_file = \"component.secret\"\n\
             [[adapter]]\nid = \"sim\"\ntype = \"simulated\"\n\
             [[device]]\nid = \"d\"\nadapter = \"sim\"\n[[device.field]]\nname = \"t\"\n",
        )
        .unwrap();
        let env = Env {
            credentials_dir: None,
            hostname: None,
            state_directory: None,
            probe_state_dir: false,
            service: None,
        };
        let source = std::fs::read_to_string(&path).unwrap();
        let loaded = load_with(&path, &source, LoadMode::Run, &env).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(loaded.config.path, path);
        let XmppConfig::Component(c) = &loaded.config.xmpp else {
            panic!("component")
        };
        assert_eq!(c.ping_target, "localhost");
        assert_eq!(c.secret.as_ref().map(Secret::expose), Some("s3cret"));
        assert!(device_table(&loaded.config).contains("d@sensors.localhost"));
    }

    #[test]
    fn errors_display_one_per_line() {
        let e = load_str(
            Path::new("g.toml"),
            "[gateway]\nnmae = 1\n[log]\nlevle = \"x\"\n",
            LoadMode::Check,
        )
        .unwrap_err();
        let text = e.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "g.toml:1:1: missing [xmpp] section: give `mode = \"component\"` with `domain` and \
                 `secret_file`, or `mode = \"client\"` with `jid` and `password_file`",
                "g.toml:2:1: unknown key `nmae` in [gateway]; did you mean `name`?",
                "g.toml:4:1: unknown key `levle` in [log]; did you mean `level`?",
            ]
        );
    }

    #[test]
    fn the_example_gateway_toml_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
        let source = std::fs::read_to_string(&path).unwrap();
        let loaded = match load_with(&path, &source, LoadMode::Check, &Env::default()) {
            Ok(loaded) => loaded,
            Err(e) => panic!("gateway.toml does not load:\n{e}"),
        };
        assert!(!loaded.config.devices.is_empty());
        for w in &loaded.warnings {
            // Only files a fresh checkout does not have (the demo's secret) may be warned about.
            assert!(
                w.message.contains("does not exist"),
                "unexpected warning: {w}"
            );
        }
    }
}

#[cfg(test)]
mod by_device_tests {
    //! Loading device by device must answer exactly what loading the whole file answers.

    use super::*;
    use gateway_toolkit::Report;

    /// The configuration (as `Debug` text), the errors and the warnings of a load; `None` when
    /// loading device by device declined the file.
    fn outcome(
        path: &Path,
        source: &str,
        by_device: bool,
    ) -> Option<(String, Vec<Diagnostic>, Vec<Diagnostic>)> {
        let env = Env::default();
        let ctx = validate::Context {
            mode: LoadMode::Check,
            base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            env: &env,
        };
        let mut report = Report::new(path, source);
        let config = if by_device {
            load_by_device(path, source, &ctx, &mut report)?
        } else {
            load_whole(path, source, &ctx, &mut report)
        };
        let (errors, warnings) = report.finish();
        Some((format!("{config:?}"), errors, warnings))
    }

    /// Whether the file was loaded device by device; panics if that answered otherwise.
    fn same(path: &Path, source: &str) -> bool {
        let whole = outcome(path, source, false).expect("whole");
        match outcome(path, source, true) {
            Some(cut) => {
                assert_eq!(cut, whole, "{}:\n{source}", path.display());
                true
            }
            None => false,
        }
    }

    const HEAD: &str = "[xmpp]\ndomain = \"s.example.org\"\nsecret = \"x\"\n\
                        [[adapter]]\nid = \"sim\"\ntype = \"simulated\"\n";

    #[test]
    fn the_repository_files_and_every_check_case() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![
            root.join("gateway.toml"),
            root.join("deploy/gateway.toml"),
            root.join("deploy/gateway.example.toml"),
        ];
        let mut cases: Vec<_> = std::fs::read_dir(root.join("tests/check"))
            .expect("tests/check")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        cases.sort();
        assert!(cases.len() > 10);
        files.extend(cases);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cut = 0;
        for file in &files {
            let source = std::fs::read_to_string(file).expect("read");
            let source = source.replace("{dir}", &dir.path().display().to_string());
            cut += usize::from(same(file, &source));
        }
        // Most have devices, and all of those are cut.
        assert!(cut * 2 > files.len(), "{cut} of {}", files.len());
    }

    #[test]
    fn the_example_with_any_one_line_dropped_answers_the_same() {
        // Dropping a line makes every kind of mistake: a device without its header, a table
        // header gone, a multi-line value cut short.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/gateway.example.toml");
        let source = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = source.split_inclusive('\n').collect();
        for skip in 0..lines.len() {
            let text: String = (lines.iter().enumerate())
                .filter(|(i, _)| *i != skip)
                .map(|(_, l)| *l)
                .collect();
            same(&path, &text);
        }
    }

    #[test]
    fn tricky_layouts_answer_the_same() {
        let path = Path::new("g.toml");
        let cut = [
            // Devices between other sections, tables under a device, alerts on devices.
            "[[device]]\nid = \"a\"\nadapter = \"sim\"\n[device.access]\nread = [\"x@y\"]\n\
             [[device.field]]\nname = \"t\"\n[[alert]]\nid = \"hot\"\ndevice = \"b\"\nfield = \"u\"\nabove = 1\n\
             [[device]]\nid = \"b\"\nadapter = \"sim\"\n[[device.field]]\nname = \"t\"\nwhat = 1\n",
            // Errors in several devices, duplicate ids across pieces, a header in a string.
            "[[device]]\nid = \"a\"\nadapter = \"sm\"\n[[device]]\nid = \"A\"\nadapter = \"sim\"\n\
             name = \"\"\"\n[[device]]\n\"\"\"\n[[device.field]]\nname = 5\n[[device]]\nadapter = \"sim\"\n",
            // An alert naming a rejected device and a rejected field.
            "[[alert]]\nid = \"x\"\ndevice = \"bad id\"\noffline = true\n[[alert]]\nid = \"y\"\n\
             device = \"ok\"\nfield = \"f\"\nabove = 1\n[[device]]\nid = \"bad id\"\nadapter = \"sim\"\n\
             [[device]]\nid = \"ok\"\nadapter = \"sim\"\n[[device.field]]\nname = \"f\"\ntype = \"nope\"\n",
        ];
        for body in cut {
            assert!(same(path, &format!("{HEAD}{body}")), "{body}");
        }
        let whole = [
            // Syntax errors, in a device and outside, come alone, from the whole file.
            "[[device]]\nid = \"a\"\nadapter = \"sim\"\nname = \n[gateway]\nnmae = 1\n",
            "[gateway]\nnmae = \n[[device]]\nid = 1\n",
            "[[device]]\nid = \"a\"\n[[device]]\nid = \"b\"\nid = \"c\"\n",
            // A table of the last device after another section; devices in one array.
            "[[device]]\nid = \"a\"\nadapter = \"sim\"\n[log]\n[device.access]\nread = []\n",
            "device = [{ id = \"a\", adapter = \"sim\" }]\n[gateway]\n",
            // `device` both as a key of the top level and as devices.
            "device.x = 1\n[[device]]\nid = \"a\"\n",
        ];
        for body in whole {
            // First, so that top-level keys are top-level.
            assert!(!same(path, &format!("{body}{HEAD}")), "{body}");
        }
    }
}
