//! The simulated adapter's keys: how a `[[device]]` and its fields are simulated, and its
//! registration ([`Simulated`]).
//!
//! An `[[adapter]]` of type `simulated` takes no keys of its own.
//! Device keys: `poll` (default 1 s), `offline_every` (optional) and `offline_for` (default
//! 10 s). Field keys: `generator` (`sine` | `step` | `random` | `constant`; default `sine` for
//! numeric and integer fields, `constant` otherwise), `min` (0), `max` (100), `period` (60 s)
//! and `value` (the constant, or the start of `step` and `random`). Keys a generator does not
//! use are warned about, not refused.

use std::time::Duration;

use gateway_api::{AdapterContext, FieldType, Value};
use gateway_toolkit::{
    duration, list_names, suggestion, AdapterCx, AdapterSlice, AdapterTask, AdapterType,
    AnySettings, ConfigParser, DeviceCx, Entry, FieldCx, Keys, ParsedField, Report, Span, Spanned,
    StartEnv,
};

use crate::{Generator, SimDevice, SimField, SimulatedAdapter};

pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
pub const DEFAULT_OFFLINE_FOR: Duration = Duration::from_secs(10);
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(60);
const DEFAULT_MIN: f64 = 0.0;
const DEFAULT_MAX: f64 = 100.0;
const GENERATORS: &[&str] = &["sine", "step", "random", "constant"];

/// The simulated adapter type, registered in the gateway as `simulated`.
pub struct Simulated;

/// A simulated device's settings (its fields' are their [`Generator`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSettings {
    /// Interval between readings (`poll`, default 1 s).
    pub poll: Duration,
    /// Optional flapping: every `offline_every` the device goes offline for `offline_for`.
    pub offline_every: Option<Duration>,
    pub offline_for: Duration,
}

impl AdapterType for Simulated {
    fn names(&self) -> &'static [&'static str] {
        &["simulated"]
    }

    fn keys(&self, _type_name: &str) -> Keys {
        Keys {
            adapter: &[],
            device: &["poll", "offline_every", "offline_for"],
            field: &["generator", "min", "max", "period", "value"],
        }
    }

    fn parser(&self) -> Box<dyn ConfigParser> {
        Box::new(Parser)
    }

    fn start(
        &self,
        adapter: AdapterSlice<'_>,
        _env: &StartEnv<'_>,
        ctx: AdapterContext,
    ) -> AdapterTask {
        use gateway_api::Adapter;
        Box::pin(SimulatedAdapter::new(devices(&adapter)).run(ctx))
    }
}

/// The simulated devices of an adapter's slice of the configuration.
pub fn devices(adapter: &AdapterSlice<'_>) -> Vec<SimDevice> {
    adapter
        .devices
        .iter()
        .filter_map(|d| {
            let settings = d.settings.get::<DeviceSettings>()?;
            let fields = d
                .fields
                .iter()
                .filter_map(|f| {
                    Some(SimField {
                        spec: f.spec.clone(),
                        generator: f.settings.get::<Generator>()?.clone(),
                    })
                })
                .collect();
            Some(SimDevice {
                id: d.id.clone(),
                poll: settings.poll,
                offline_every: settings.offline_every,
                offline_for: settings.offline_for,
                fields,
            })
        })
        .collect()
}

/// A simulated adapter's keys need no memory across devices.
struct Parser;

impl ConfigParser for Parser {
    fn adapter(&mut self, _cx: AdapterCx<'_>, _rep: &mut Report<'_>) -> Option<AnySettings> {
        Some(AnySettings::new(()))
    }

    fn device(&mut self, cx: DeviceCx<'_>, rep: &mut Report<'_>) -> Option<AnySettings> {
        device(cx.own, rep).map(AnySettings::new)
    }

    fn field(&mut self, cx: FieldCx<'_>, rep: &mut Report<'_>) -> Option<ParsedField> {
        field(cx.own, cx.kind, cx.header, cx.label, rep)
            .map(|g| ParsedField::new(AnySettings::new(g)))
    }
}

/// A duration that must not be zero.
fn positive(rep: &mut Report<'_>, key: &str, d: Spanned<Duration>) -> Option<Spanned<Duration>> {
    if d.value.is_zero() {
        rep.error(&d.span, format!("`{key}` must be longer than zero"));
        None
    } else {
        Some(d)
    }
}

/// Builds a simulated device's settings from its `poll`, `offline_every`, `offline_for`.
fn device(own: &[Entry<'_>], rep: &mut Report<'_>) -> Option<DeviceSettings> {
    let mut ok = true;
    let (mut poll, mut every, mut offline_for) = (None, None, None);
    for e in own {
        let slot = match e.key {
            "poll" => &mut poll,
            "offline_every" => &mut every,
            "offline_for" => &mut offline_for,
            _ => continue,
        };
        match e.duration(rep).and_then(|d| positive(rep, e.key, d)) {
            Some(d) => *slot = Some(d),
            None => ok = false,
        }
    }
    match (&every, &offline_for) {
        (Some(every), Some(down)) if down.value >= every.value => {
            rep.error(
                &down.span,
                format!(
                    "`offline_for` ({}) must be shorter than `offline_every` ({})",
                    duration::format(down.value),
                    duration::format(every.value)
                ),
            );
            ok = false;
        }
        (None, Some(down)) => rep.warn(
            &down.key,
            "`offline_for` has no effect without `offline_every`",
        ),
        _ => {}
    }
    ok.then(|| DeviceSettings {
        poll: poll.map_or(DEFAULT_POLL, |p| p.value),
        offline_every: every.map(|e| e.value),
        offline_for: offline_for.map_or(DEFAULT_OFFLINE_FOR, |f| f.value),
    })
}

/// Builds a simulated field's [`Generator`] from its `generator`, `min`, `max`, `period` and
/// `value` (`own`: the field's simulated keys). `field` is the field's header, for a missing
/// `value`; `label` names the field in messages.
fn field(
    own: &[Entry<'_>],
    kind: FieldType,
    field: &Span,
    label: &str,
    rep: &mut Report<'_>,
) -> Option<Generator> {
    let mut ok = true;
    let (mut gen, mut min, mut max, mut period, mut value) = (None, None, None, None, None);
    for e in own {
        let parsed_ok = match e.key {
            "generator" => e.string(rep).map(|g| gen = Some(g)).is_some(),
            "min" => e.number(rep).map(|v| min = Some(v)).is_some(),
            "max" => e.number(rep).map(|v| max = Some(v)).is_some(),
            "period" => e.duration(rep).map(|v| period = Some(v)).is_some(),
            "value" => e.scalar(rep).map(|v| value = Some(v)).is_some(),
            _ => true,
        };
        ok &= parsed_ok;
    }
    if !ok {
        return None;
    }
    let numeric = matches!(kind, FieldType::Numeric | FieldType::Integer);
    let name = match &gen {
        Some(g) => g.value.as_str(),
        None if numeric => "sine",
        None => "constant",
    };
    if !GENERATORS.contains(&name) {
        // Only reachable when `generator` was written.
        let span = gen.as_ref().map_or(field.clone(), |g| g.span.clone());
        let hint = suggestion(name, GENERATORS.iter().copied());
        rep.error(
            &span,
            format!(
                "unknown generator `{name}`{hint} (generators: {})",
                list_names(GENERATORS)
            ),
        );
        return None;
    }
    let no_effect = |rep: &mut Report<'_>, s: Option<&Span>, key: &str| {
        if let Some(span) = s {
            rep.warn(
                span,
                format!("`{key}` has no effect with generator `{name}`"),
            );
        }
    };
    if name == "constant" {
        no_effect(rep, min.as_ref().map(|s| &s.key), "min");
        no_effect(rep, max.as_ref().map(|s| &s.key), "max");
        no_effect(rep, period.as_ref().map(|s| &s.key), "period");
        let Some(v) = value else {
            let span = gen.as_ref().map_or(field.clone(), |g| g.key.clone());
            let why = if gen.is_some() {
                String::new()
            } else {
                format!(" (a simulated {kind} field is constant)")
            };
            rep.error(
                &span,
                format!("{label} uses generator `constant`{why} and needs a `value`"),
            );
            return None;
        };
        return match v.value.clone().coerce(kind) {
            Ok(value) => Some(Generator::Constant { value }),
            Err(e) => {
                rep.error(
                    &v.span,
                    format!("`value` does not fit the field's type `{kind}`: {e}"),
                );
                None
            }
        };
    }
    if !numeric {
        let span = gen.as_ref().map_or(field.clone(), |g| g.span.clone());
        rep.error(
            &span,
            format!("generator `{name}` makes numbers, but {label} is {kind}: use `generator = \"constant\"` with a `value`"),
        );
        return None;
    }
    let lo = min.as_ref().map_or(DEFAULT_MIN, |m| m.value);
    let hi = max.as_ref().map_or(DEFAULT_MAX, |m| m.value);
    if lo >= hi {
        let span = max
            .as_ref()
            .or(min.as_ref())
            .map_or(field.clone(), |s| s.span.clone());
        rep.error(
            &span,
            format!("`min` ({lo}) must be less than `max` ({hi})"),
        );
        return None;
    }
    let period_value = match &period {
        None => DEFAULT_PERIOD,
        Some(p) => positive(rep, "period", p.clone())?.value,
    };
    let start = match &value {
        None => None,
        Some(v) if name == "sine" => {
            no_effect(rep, Some(&v.key), "value");
            None
        }
        Some(v) => {
            let n = match &v.value {
                Value::Int(i) => *i as f64,
                Value::Float(f) => *f,
                _ => {
                    rep.error(
                        &v.span,
                        format!("`value` is the start of generator `{name}`: it must be a number"),
                    );
                    return None;
                }
            };
            if kind == FieldType::Integer && n.fract() != 0.0 {
                rep.error(
                    &v.span,
                    format!("`value` {n} is not an integer, but {label} is integer"),
                );
                return None;
            }
            if n < lo || n > hi {
                rep.error(
                    &v.span,
                    format!("`value` ({n}) must lie between `min` ({lo}) and `max` ({hi})"),
                );
                return None;
            }
            Some(n)
        }
    };
    match name {
        "sine" => Some(Generator::Sine {
            min: lo,
            max: hi,
            period: period_value,
        }),
        "step" => Some(Generator::Step {
            min: lo,
            max: hi,
            period: period_value,
            start: start.unwrap_or(lo),
        }),
        _ => {
            no_effect(rep, period.as_ref().map(|s| &s.key), "period");
            Some(Generator::Random {
                min: lo,
                max: hi,
                start: start.unwrap_or((lo + hi) / 2.0),
            })
        }
    }
}
