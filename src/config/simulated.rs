//! The simulated adapter's keys: how a `[[device]]` and its fields are simulated.
//!
//! Device keys: `poll` (default 1 s), `offline_every` (optional) and `offline_for` (default
//! 10 s). Field keys: `generator` (`sine` | `step` | `random` | `constant`; default `sine` for
//! numeric and integer fields, `constant` otherwise), `min` (0), `max` (100), `period` (60 s)
//! and `value` (the constant, or the start of `step` and `random`). Keys a generator does not
//! use are warned about, not refused.

use std::time::Duration;

use gateway_api::{FieldType, Value};

use super::diagnostic::{list_names, suggestion, Report, Span};
use super::duration;
use super::model::{Generator, SimulatedDevice};
use super::raw::{Entry, Spanned};

pub(crate) const DEFAULT_POLL: Duration = Duration::from_secs(1);
pub(crate) const DEFAULT_OFFLINE_FOR: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_PERIOD: Duration = Duration::from_secs(60);
const DEFAULT_MIN: f64 = 0.0;
const DEFAULT_MAX: f64 = 100.0;
const GENERATORS: &[&str] = &["sine", "step", "random", "constant"];

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
pub(super) fn device(own: &[Entry<'_>], rep: &mut Report<'_>) -> Option<SimulatedDevice> {
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
    ok.then(|| SimulatedDevice {
        poll: poll.map_or(DEFAULT_POLL, |p| p.value),
        offline_every: every.map(|e| e.value),
        offline_for: offline_for.map_or(DEFAULT_OFFLINE_FOR, |f| f.value),
    })
}

/// Builds a simulated field's [`Generator`] from its `generator`, `min`, `max`, `period` and
/// `value` (`own`: the field's simulated keys). `field` is the field's header, for a missing
/// `value`; `label` names the field in messages.
pub(super) fn field(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::tests::{device, errors, ok, simulated, warnings};

    #[test]
    fn generator_validation() {
        let gen = |field: &str| {
            let loaded = ok(&device(&format!("[[device.field]]\nname = \"f\"\n{field}")));
            simulated(&loaded, 0, 0)
        };
        assert_eq!(
            gen("generator = \"step\"\nmin = -5\nmax = 5\nperiod = \"2s\"\n"),
            Generator::Step {
                min: -5.0,
                max: 5.0,
                period: Duration::from_secs(2),
                start: -5.0
            }
        );
        assert_eq!(
            gen("generator = \"random\"\nvalue = 20\n"),
            Generator::Random {
                min: 0.0,
                max: 100.0,
                start: 20.0
            }
        );
        assert_eq!(
            gen("generator = \"constant\"\nvalue = 21.5\n"),
            Generator::Constant {
                value: Value::Float(21.5)
            }
        );
        assert_eq!(
            gen("type = \"integer\"\ngenerator = \"constant\"\nvalue = 4.0\n"),
            Generator::Constant {
                value: Value::Int(4)
            }
        );
        assert_eq!(
            gen("type = \"string\"\nvalue = 5\n"),
            Generator::Constant {
                value: Value::Text("5".into())
            }
        );

        let errs =
            |field: &str| errors(&device(&format!("[[device.field]]\nname = \"f\"\n{field}")));
        // Lines: 10 [[device.field]], 11 name, 12.. the keys given.
        assert_eq!(
            errs("min = 10\nmax = 10\n"),
            ["13:7: `min` (10) must be less than `max` (10)"]
        );
        assert_eq!(
            errs("min = 200\n"),
            ["12:7: `min` (200) must be less than `max` (100)"]
        );
        assert_eq!(
            errs("type = \"boolean\"\n"),
            ["10:1: field `f` of device `d` uses generator `constant` (a simulated boolean field is constant) and needs a `value`"]
        );
        assert_eq!(
            errs("generator = \"constant\"\n"),
            ["12:1: field `f` of device `d` uses generator `constant` and needs a `value`"]
        );
        assert_eq!(
            errs("type = \"integer\"\ngenerator = \"constant\"\nvalue = 4.5\n"),
            ["14:9: `value` does not fit the field's type `integer`: \"4.5\" is not an integer"]
        );
        assert_eq!(
            errs("type = \"boolean\"\nvalue = \"maybe\"\n"),
            ["13:9: `value` does not fit the field's type `boolean`: \"maybe\" is not a boolean (use true/false, on/off or 1/0)"]
        );
        assert_eq!(
            errs("type = \"boolean\"\ngenerator = \"sine\"\n"),
            ["13:13: generator `sine` makes numbers, but field `f` of device `d` is boolean: use `generator = \"constant\"` with a `value`"]
        );
        assert_eq!(
            errs("generator = \"step\"\nvalue = 150\n"),
            ["13:9: `value` (150) must lie between `min` (0) and `max` (100)"]
        );
        assert_eq!(
            errs("generator = \"step\"\nvalue = \"x\"\n"),
            ["13:9: `value` is the start of generator `step`: it must be a number"]
        );
        assert_eq!(
            errs("generator = \"sawtooth\"\n"),
            ["12:13: unknown generator `sawtooth` (generators: `sine`, `step`, `random` and `constant`)"]
        );
        assert_eq!(errs("generator = \"sin\"\n")[0], "12:13: unknown generator `sin`; did you mean `sine`? (generators: `sine`, `step`, `random` and `constant`)");
        assert_eq!(
            errs("value = [1]\n"),
            ["12:9: `value` must be a number, a boolean or a string, not an array"]
        );

        let loaded = ok(&device("[[device.field]]\nname = \"f\"\ngenerator = \"constant\"\nvalue = 1\nmin = 0\nperiod = \"1s\"\n"));
        let w = warnings(&loaded);
        assert!(
            w.contains(&"14:1: `min` has no effect with generator `constant`".to_owned()),
            "{w:?}"
        );
        assert!(
            w.contains(&"15:1: `period` has no effect with generator `constant`".to_owned()),
            "{w:?}"
        );
        let loaded = ok(&device("[[device.field]]\nname = \"f\"\nvalue = 1\n"));
        assert!(warnings(&loaded)
            .contains(&"12:1: `value` has no effect with generator `sine`".to_owned()));
    }

    #[test]
    fn device_durations() {
        let e = errors(&device("poll = \"0\"\noffline_every = \"10s\"\noffline_for = \"10s\"\n[[device.field]]\nname = \"t\"\nperiod = \"0s\"\n"));
        assert_eq!(
            e,
            [
                "10:8: `poll` must be longer than zero",
                "12:15: `offline_for` (10s) must be shorter than `offline_every` (10s)",
                "15:10: `period` must be longer than zero",
            ]
        );
        let loaded = ok(&device(
            "offline_for = \"5s\"\n[[device.field]]\nname = \"t\"\n",
        ));
        assert!(warnings(&loaded)
            .contains(&"10:1: `offline_for` has no effect without `offline_every`".to_owned()));
    }
}
