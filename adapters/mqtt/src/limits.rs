//! What values a writable field takes: a range (with a step) for numbers, a list for texts.
//! Discovered fields get them from their announcement (Home Assistant's `number` and `select`),
//! configured ones from `min`, `max`, `step` and `options`; writes outside them are refused
//! before anything is published.

use gateway_api::Value;

/// The values a writable field takes.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Limits {
    #[default]
    None,
    /// A number from `min` to `max` (either may be infinite) in steps of `step` (0: any),
    /// counted from `min`, or from 0 when there is no `min`.
    Range { min: f64, max: f64, step: f64 },
    /// One of these texts.
    Options(Vec<String>),
}

impl Limits {
    /// `value` (already of the field's type) if the limits allow it, else why not.
    pub fn check(&self, value: Value) -> Result<Value, String> {
        match self {
            Limits::None => Ok(value),
            Limits::Range { min, max, step } => {
                let Some(v) = value.as_f64() else {
                    return Ok(value);
                };
                match (min.is_finite(), max.is_finite()) {
                    (true, true) if v < *min || v > *max => {
                        return Err(format!("{v} is outside {min} to {max}"))
                    }
                    (true, false) if v < *min => return Err(format!("{v} is below {min}")),
                    (false, true) if v > *max => return Err(format!("{v} is above {max}")),
                    _ => {}
                }
                if *step > 0.0 {
                    let from = if min.is_finite() { *min } else { 0.0 };
                    let n = (v - from) / step;
                    if (n - n.round()).abs() > 1e-6 {
                        return Err(format!(
                            "{v} is not a multiple of the step {step} from {from}"
                        ));
                    }
                }
                Ok(value)
            }
            Limits::Options(options) => {
                let text = value.to_string();
                if options.contains(&text) {
                    Ok(value)
                } else {
                    Err(format!("{text:?} is not one of {}", options.join(", ")))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_steps_and_options() {
        let r = Limits::Range {
            min: 10.0,
            max: 30.0,
            step: 0.5,
        };
        assert_eq!(r.check(Value::Float(21.5)), Ok(Value::Float(21.5)));
        assert_eq!(
            r.check(Value::Float(31.0)),
            Err("31 is outside 10 to 30".into())
        );
        assert_eq!(
            r.check(Value::Float(21.2)),
            Err("21.2 is not a multiple of the step 0.5 from 10".into())
        );
        let below = Limits::Range {
            min: f64::NEG_INFINITY,
            max: 5.0,
            step: 0.0,
        };
        assert!(below.check(Value::Float(-1e9)).is_ok());
        assert_eq!(below.check(Value::Float(6.0)), Err("6 is above 5".into()));
        let above = Limits::Range {
            min: 0.0,
            max: f64::INFINITY,
            step: 1.0,
        };
        assert_eq!(above.check(Value::Float(-1.0)), Err("-1 is below 0".into()));
        assert!(above.check(Value::Float(7.0)).is_ok());
        let o = Limits::Options(vec!["eco".into(), "comfort".into()]);
        assert!(o.check(Value::Text("eco".into())).is_ok());
        assert_eq!(
            o.check(Value::Text("boost".into())),
            Err("\"boost\" is not one of eco, comfort".into())
        );
        assert!(Limits::None.check(Value::Float(1e300)).is_ok());
    }
}
