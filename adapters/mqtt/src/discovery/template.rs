//! Jinja templates as Home Assistant evaluates them in MQTT discovery payloads (`value_template`,
//! `command_template`, availability templates), with minijinja.
//!
//! The variables are Home Assistant's: `value` (the payload as text; on a write, the value
//! written) and `value_json` (the payload parsed as JSON, when it is JSON). minijinja's
//! built-in `float(default)`, `int(default)`, `round(precision, method)`, `default`, `lower`
//! and `upper` already behave as Home Assistant's; `is_defined` and `iif` are added here as Home
//! Assistant defines them. Each template is compiled once, when its entity is announced; a
//! template that does not compile is refused with the entity. Rendering is limited in fuel, so
//! a hostile template (`{% for i in range(10**9) %}`) fails instead of stalling the adapter.

use minijinja::value::Value as JValue;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};

/// Instructions one rendering may execute: far more than any real discovery template needs.
const FUEL: u64 = 50_000;
/// Longest template source accepted.
pub const MAX_SOURCE: usize = 4096;

/// Why a template was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

impl From<Error> for TemplateError {
    fn from(e: Error) -> Self {
        // The kind and detail, without minijinja's multi-line debug rendering.
        TemplateError(match e.detail() {
            Some(d) => format!("{}: {d}", e.kind()),
            None => e.kind().to_string(),
        })
    }
}

/// The environment all of one adapter's discovery templates live in.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

/// `value | is_defined`: the value, or an error when it is undefined (Home Assistant's way of
/// making a template fail loudly on a missing key).
fn is_defined(value: JValue) -> Result<JValue, Error> {
    if value.is_undefined() {
        Err(Error::new(
            ErrorKind::UndefinedError,
            "is_defined: the value is not defined",
        ))
    } else {
        Ok(value)
    }
}

/// `iif(value, if_true=True, if_false=False, if_none=False)` as a function or a filter:
/// Home Assistant's inline if. `if_none` is used for `none`; an undefined value counts as false.
fn iif(
    value: JValue,
    if_true: Option<JValue>,
    if_false: Option<JValue>,
    if_none: Option<JValue>,
) -> JValue {
    if value.is_none() {
        return if_none.unwrap_or(JValue::from(false));
    }
    if value.is_true() {
        if_true.unwrap_or(JValue::from(true))
    } else {
        if_false.unwrap_or(JValue::from(false))
    }
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        // Like Home Assistant: a missing key renders as nothing; an operation on it fails.
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_fuel(Some(FUEL));
        env.add_filter("is_defined", is_defined);
        env.add_filter("iif", iif);
        env.add_function("iif", iif);
        env.add_function("float", |v: JValue, default: Option<JValue>| {
            float_of(&v).map(JValue::from).or(default).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("float got invalid input {v}"),
                )
            })
        });
        env.add_function("int", |v: JValue, default: Option<JValue>| {
            float_of(&v)
                .map(|f| JValue::from(f.trunc() as i64))
                .or(default)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        format!("int got invalid input {v}"),
                    )
                })
        });
        Templates { env }
    }

    /// Compiles `source` under `name` (unique per entity and use); replaces what was there.
    pub fn add(&mut self, name: &str, source: &str) -> Result<(), TemplateError> {
        if source.len() > MAX_SOURCE {
            return Err(TemplateError(format!(
                "the template is {} bytes long (at most {MAX_SOURCE})",
                source.len()
            )));
        }
        self.env
            .add_template_owned(name.to_owned(), source.to_owned())
            .map_err(TemplateError::from)
    }

    pub fn remove(&mut self, name: &str) {
        self.env.remove_template(name);
    }

    /// Renders template `name` for a received payload: `value` is the payload's text,
    /// `value_json` the payload parsed as JSON (undefined when it is not JSON).
    pub fn render_payload(&self, name: &str, payload: &str) -> Result<String, TemplateError> {
        let json: Option<serde_json::Value> = serde_json::from_str(payload).ok();
        let ctx = match json {
            Some(j) => {
                minijinja::context! { value => payload, value_json => JValue::from(minijinja::value::Serde(j)) }
            }
            None => minijinja::context! { value => payload },
        };
        self.render(name, ctx)
    }

    /// Renders a command template: `value` is what is written.
    pub fn render_command(&self, name: &str, value: JValue) -> Result<String, TemplateError> {
        self.render(name, minijinja::context! { value => value })
    }

    fn render(&self, name: &str, ctx: JValue) -> Result<String, TemplateError> {
        let t = self.env.get_template(name)?;
        Ok(t.render(ctx)?.trim().to_owned())
    }
}

/// A template compiled on its own, to check it.
pub fn check(source: &str) -> Result<(), TemplateError> {
    Jinja::new(source).map(|_| ())
}

/// Whether a configured template is Jinja (`{{ ... }}` or `{% ... %}`) rather than the
/// `{value}` placeholders of a command template.
pub fn is_jinja(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// One template compiled once (a configured field's `value_template` or Jinja
/// `command_template`), shared by the clones of its configuration.
#[derive(Clone)]
pub struct Jinja {
    source: std::sync::Arc<str>,
    env: std::sync::Arc<Templates>,
}

impl Jinja {
    pub fn new(source: &str) -> Result<Jinja, TemplateError> {
        let mut env = Templates::new();
        env.add("t", source)?;
        Ok(Jinja {
            source: source.into(),
            env: std::sync::Arc::new(env),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders it for a received payload (`value`, `value_json`).
    pub fn render_payload(&self, payload: &str) -> Result<String, TemplateError> {
        self.env.render_payload("t", payload)
    }

    /// Renders it for a write (`value`).
    pub fn render_command(&self, value: JValue) -> Result<String, TemplateError> {
        self.env.render_command("t", value)
    }
}

impl PartialEq for Jinja {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Jinja {}

impl std::fmt::Debug for Jinja {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Jinja({:?})", self.source)
    }
}

/// A number from a number or a numeric string.
fn float_of(v: &JValue) -> Option<f64> {
    if let Some(s) = v.as_str() {
        return s.trim().parse::<f64>().ok().filter(|f| f.is_finite());
    }
    f64::try_from(v.clone()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, payload: &str) -> Result<String, TemplateError> {
        let mut t = Templates::new();
        t.add("t", source)?;
        t.render_payload("t", payload)
    }

    #[test]
    fn value_and_value_json() {
        let tasmota = r#"{"AM2301":{"Temperature":21.6,"Humidity":48.7}}"#;
        assert_eq!(
            render("{{value_json['AM2301'].Temperature}}", tasmota).unwrap(),
            "21.6"
        );
        assert_eq!(
            render(
                "{{value_json['AM2301'].Humidity | round(0) | int}}",
                tasmota
            )
            .unwrap(),
            "49"
        );
        assert_eq!(render("{{ value | upper }}", "on").unwrap(), "ON");
        assert_eq!(render("{{ value | lower }}", "OFF").unwrap(), "off");
        assert_eq!(
            render(
                "{%if value_json.output%}ON{%else%}OFF{%endif%}",
                r#"{"output":false}"#
            )
            .unwrap(),
            "OFF"
        );
    }

    #[test]
    fn home_assistant_filters() {
        assert_eq!(
            render(
                "{{ value_json.apower | float(0) | round(1) }}",
                r#"{"apower":23.456}"#
            )
            .unwrap(),
            "23.5"
        );
        assert_eq!(render("{{ value | float(0) }}", "n/a").unwrap(), "0");
        assert_eq!(render("{{ value | int(7) }}", "n/a").unwrap(), "7");
        assert_eq!(render("{{ float(value, 1.5) }}", "x").unwrap(), "1.5");
        assert_eq!(render("{{ int(value) }}", "41.9").unwrap(), "41");
        assert_eq!(
            render("{{ value_json.missing | default('none') }}", "{}").unwrap(),
            "none"
        );
        assert_eq!(
            render("{{ iif(value == 'ON', 'true', 'false') }}", "ON").unwrap(),
            "true"
        );
        assert_eq!(
            render("{{ (value == 'ON') | iif('yes', 'no') }}", "OFF").unwrap(),
            "no"
        );
        assert_eq!(
            render("{{ value_json.t | is_defined }}", r#"{"t":1}"#).unwrap(),
            "1"
        );
        assert!(render("{{ value_json.t | is_defined }}", "{}").is_err());
    }

    #[test]
    fn bad_templates_fail_without_harm() {
        assert!(render("{{ value_json.temp | round(1 }}", "{}").is_err());
        assert!(render("{{ value | nosuchfilter }}", "1").is_err());
        assert!(render("{{ value | float }}", "warm").is_err());
        // Runs out of fuel instead of running for ever.
        let e = render("{% for i in range(100000) %}{{ i }}{% endfor %}", "1").unwrap_err();
        assert!(e.0.contains("fuel"), "{e}");
        // An attribute of something missing is an error, not a panic.
        assert!(render("{{ value_json.a.b }}", "{}").is_err());
        assert!(check(&"x".repeat(MAX_SOURCE + 1)).is_err());
    }

    #[test]
    fn command_templates() {
        let mut t = Templates::new();
        let src = r#"{"id":1,"method":"Switch.Set","params":{"id":0,"on":{{iif(value == "ON", "true", "false")}}}}"#;
        t.add("c", src).unwrap();
        assert_eq!(
            t.render_command("c", JValue::from("OFF")).unwrap(),
            r#"{"id":1,"method":"Switch.Set","params":{"id":0,"on":false}}"#
        );
        t.add("b", "{{ (value | float / 100 * 255) | round | int }}")
            .unwrap();
        assert_eq!(t.render_command("b", JValue::from(50.0)).unwrap(), "128");
    }
}
