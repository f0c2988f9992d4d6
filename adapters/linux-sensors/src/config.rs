//! The adapter's keys and its registration ([`LinuxSensors`]).
//!
//! `[[adapter]]` of type `linux-sensors`: `sysfs_root` (default `/sys`). `[[device]]`: `poll`
//! (default 10 s). `[[device.field]]`: `source` (required: `w1:<id>`, `iio:<name>/<channel>`,
//! `hwmon:<name>/<attribute>`, `thermal:<type>`), `scale` (1) and `offset` (0), applied after the
//! conversion from the kernel's units. A source that does not exist now is a warning with what to
//! enable, never an error: sensors are plugged in and drivers loaded after the gateway starts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway_api::{Adapter, AdapterContext, FieldType};
use gateway_toolkit::{
    suggestion, AdapterCx, AdapterSlice, AdapterTask, AdapterType, AnySettings, ConfigParser,
    DeviceCx, FieldCx, Keys, ParsedField, Report, StartEnv,
};

use crate::source::{Source, KINDS};
use crate::{
    describe, LinuxSensorsAdapter, SensorDevice, SensorField, SensorSettings, DEFAULT_POLL,
    DEFAULT_SYSFS_ROOT, MIN_POLL,
};

/// The adapter type, registered in the gateway as `linux-sensors`.
pub struct LinuxSensors;

/// An adapter's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterSettings {
    pub sysfs_root: PathBuf,
}

/// A device's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSettings {
    pub poll: Duration,
}

/// A field's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSettings {
    pub source: Source,
    pub scale: f64,
    pub offset: f64,
}

impl AdapterType for LinuxSensors {
    fn names(&self) -> &'static [&'static str] {
        &["linux-sensors"]
    }

    fn keys(&self, _type_name: &str) -> Keys {
        Keys {
            adapter: &["sysfs_root"],
            device: &["poll"],
            field: &["source", "scale", "offset"],
        }
    }

    fn parser(&self) -> Box<dyn ConfigParser> {
        Box::new(Parser)
    }

    /// `device.field -> file` for every field, the file read now (missing sources were warned
    /// about with the rest of the configuration).
    fn check_lines(&self, adapters: &[AdapterSlice<'_>]) -> String {
        let mut out = String::new();
        for a in adapters {
            let Some(settings) = settings(a) else {
                continue;
            };
            let _ = write!(
                out,
                "\nadapter {} reads {}:",
                a.id,
                settings.sysfs_root.display()
            );
            let rows: Vec<(String, String)> = settings
                .devices
                .iter()
                .flat_map(|d| d.fields.iter().map(move |f| (d, f)))
                .map(|(d, f)| {
                    let file = match describe(&settings.sysfs_root, &f.source) {
                        Ok(path) => path.display().to_string(),
                        Err(_) => format!("{} (not present now)", f.source),
                    };
                    (format!("{}.{}", d.id, f.spec.name), file)
                })
                .collect();
            let width = rows
                .iter()
                .map(|(n, _)| n.chars().count())
                .max()
                .unwrap_or(0);
            for (name, file) in rows {
                let _ = write!(out, "\n  {name:<width$} -> {file}");
            }
            out.push('\n');
        }
        out
    }

    fn start(
        &self,
        adapter: AdapterSlice<'_>,
        env: &StartEnv<'_>,
        ctx: AdapterContext,
    ) -> AdapterTask {
        let settings = settings(&adapter).unwrap_or_else(|| SensorSettings {
            sysfs_root: DEFAULT_SYSFS_ROOT.into(),
            devices: Vec::new(),
        });
        let adapter = LinuxSensorsAdapter::new(adapter.id.clone(), settings);
        (env.metrics)(adapter.stats());
        Box::pin(adapter.run(ctx))
    }
}

/// The adapter's settings from its slice of the configuration.
pub fn settings(adapter: &AdapterSlice<'_>) -> Option<SensorSettings> {
    let own = adapter.settings.get::<AdapterSettings>()?;
    let devices = adapter
        .devices
        .iter()
        .filter_map(|d| {
            let settings = d.settings.get::<DeviceSettings>()?;
            let fields = d
                .fields
                .iter()
                .filter_map(|f| {
                    let s = f.settings.get::<FieldSettings>()?;
                    Some(SensorField {
                        spec: f.spec.clone(),
                        source: s.source.clone(),
                        scale: s.scale,
                        offset: s.offset,
                    })
                })
                .collect();
            Some(SensorDevice {
                id: d.id.clone(),
                poll: settings.poll,
                fields,
            })
        })
        .collect();
    Some(SensorSettings {
        sysfs_root: own.sysfs_root.clone(),
        devices,
    })
}

/// The keys need no memory across devices.
struct Parser;

impl ConfigParser for Parser {
    fn adapter(&mut self, cx: AdapterCx<'_>, rep: &mut Report<'_>) -> Option<AnySettings> {
        let mut root = PathBuf::from(DEFAULT_SYSFS_ROOT);
        if let Some(e) = cx.get("sysfs_root") {
            let s = e.string(rep)?;
            if s.value.trim().is_empty() {
                rep.error(&s.span, "`sysfs_root` must not be empty");
                return None;
            }
            root = PathBuf::from(s.value.trim());
            if !root.is_dir() {
                rep.warn(
                    &s.span,
                    format!("`sysfs_root` {} is not a directory now", root.display()),
                );
            }
        }
        Some(AnySettings::new(AdapterSettings { sysfs_root: root }))
    }

    fn device(&mut self, cx: DeviceCx<'_>, rep: &mut Report<'_>) -> Option<AnySettings> {
        let poll = match cx.get("poll") {
            Some(e) => {
                let d = e.duration(rep)?;
                if d.value.is_zero() {
                    rep.error(&d.span, "`poll` must be longer than zero");
                    return None;
                }
                if d.value < MIN_POLL {
                    rep.warn(
                        &d.span,
                        format!(
                            "`poll` is raised to the shortest honoured, {} ms",
                            MIN_POLL.as_millis()
                        ),
                    );
                }
                d.value
            }
            None => DEFAULT_POLL,
        };
        Some(AnySettings::new(DeviceSettings { poll }))
    }

    fn field(&mut self, cx: FieldCx<'_>, rep: &mut Report<'_>) -> Option<ParsedField> {
        let mut ok = true;
        if let Some(w) = cx.writable.filter(|w| w.value) {
            rep.error(
                &w.span,
                format!("{} reads a sensor: it cannot be writable", cx.label),
            );
            ok = false;
        }
        if matches!(cx.kind, FieldType::Boolean | FieldType::String) {
            let span = cx
                .written_type
                .map_or(cx.header.clone(), |t| t.span.clone());
            rep.error(
                &span,
                format!(
                    "{} reads a sensor, which gives numbers: its type is numeric or integer",
                    cx.label
                ),
            );
            ok = false;
        }
        let number = |key: &str, default: f64, rep: &mut Report<'_>| match cx.get(key) {
            Some(e) => e.number(rep).map(|n| (n.value, Some(n.span))),
            None => Some((default, None)),
        };
        let scale = number("scale", 1.0, rep);
        let offset = number("offset", 0.0, rep);
        if let Some((0.0, Some(span))) = &scale {
            rep.error(
                span,
                "`scale` must not be zero (every value would be the offset)",
            );
            ok = false;
        }
        let Some(entry) = cx.get("source") else {
            rep.error(
                cx.header,
                format!(
                    "{} needs a `source`: `w1:<id>`, `iio:<device>/<channel>`, \
                     `hwmon:<device>/<attribute>` or `thermal:<zone type>`",
                    cx.label
                ),
            );
            return None;
        };
        let text = entry.string(rep)?;
        let source = match text.value.parse::<Source>() {
            Ok(s) => s,
            Err(e) => {
                let kind = text.value.split_once(':').map_or("", |(k, _)| k.trim());
                let hint = if !kind.is_empty() && !KINDS.contains(&kind) {
                    suggestion(kind, KINDS.iter().copied())
                } else {
                    String::new()
                };
                rep.error(&text.span, format!("`source`: {e}{hint}"));
                return None;
            }
        };
        if let Some(root) = cx
            .adapter
            .and_then(|a| a.get::<AdapterSettings>())
            .map(|a| a.sysfs_root.as_path())
        {
            warn_if_missing(root, &source, &text.span, rep);
        }
        let ((scale, _), (offset, _)) = (scale?, offset?);
        ok.then(|| {
            ParsedField::new(AnySettings::new(FieldSettings {
                source,
                scale,
                offset,
            }))
        })
    }
}

/// A warning at the `source` when it cannot be found under `root` now.
fn warn_if_missing(
    root: &Path,
    source: &Source,
    span: &gateway_toolkit::Span,
    rep: &mut Report<'_>,
) {
    if let Err(why) = describe(root, source) {
        rep.warn(span, why);
    }
}
