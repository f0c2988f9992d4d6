//! Command templates: how a write becomes the bytes sent to the port.
//!
//! `command_template = "SET {field} {value}\n"` is written as it is, with `{field}` replaced by
//! the field name, `{value}` by the value's canonical text (`21.5`, `true`, `42`, the text of a
//! string field) and `{device}` by the device id; `{{` and `}}` stand for braces. The template
//! is checked when the configuration is loaded, so an unknown placeholder never reaches a
//! device. A value whose text holds a control character (a line break in a string value would
//! smuggle a second command onto the line) is refused before anything is written.

use std::fmt;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field,
    Value,
    Device,
}

/// A parsed `command_template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// What is wrong with a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder `{{{0}}}` (placeholders: `{{field}}`, `{{value}}`, `{{device}}`; write `{{{{` and `}}}}` for braces)")]
    Unknown(String),
    #[error("`{{` without a closing `}}` (write `{{{{` for a brace)")]
    Unclosed,
    #[error("`}}` without an opening `{{` (write `}}}}` for a brace)")]
    Stray,
    #[error("the template is empty")]
    Empty,
}

/// Why a value cannot be sent with a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the value contains a control character ({0:?}), which cannot be sent on a line")]
pub struct UnsafeValue(pub char);

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        if text.is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(TemplateError::Stray),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(TemplateError::Unclosed),
                        }
                    }
                    let part = match name.trim() {
                        "field" => Part::Field,
                        "value" => Part::Value,
                        "device" => Part::Device,
                        _ => return Err(TemplateError::Unknown(name)),
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// The bytes to send for `field` = `value` of `device`.
    pub fn render(&self, field: &str, value: &str, device: &str) -> Result<Vec<u8>, UnsafeValue> {
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            return Err(UnsafeValue(c));
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field => out.push_str(field),
                Part::Value => out.push_str(value),
                Part::Device => out.push_str(device),
            }
        }
        Ok(out.into_bytes())
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(t) => {
                    for c in t.chars() {
                        match c {
                            '{' => f.write_str("{{")?,
                            '}' => f.write_str("}}")?,
                            c => write!(f, "{}", c.escape_debug())?,
                        }
                    }
                }
                Part::Field => f.write_str("{field}")?,
                Part::Value => f.write_str("{value}")?,
                Part::Device => f.write_str("{device}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, value: &str) -> String {
        let bytes = Template::parse(t)
            .unwrap()
            .render("relay", value, "pump")
            .unwrap();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn placeholders_are_filled_in() {
        assert_eq!(render("SET {field} {value}\n", "true"), "SET relay true\n");
        assert_eq!(
            render("{device}:{ field }={value}\r\n", "21.5"),
            "pump:relay=21.5\r\n"
        );
        assert_eq!(
            render("{{\"{field}\": {value}}}\n", "1"),
            "{\"relay\": 1}\n"
        );
        assert_eq!(render("PING\n", "x"), "PING\n");
    }

    #[test]
    fn bad_templates_are_refused() {
        assert_eq!(
            Template::parse("SET {name} {value}"),
            Err(TemplateError::Unknown("name".into()))
        );
        assert_eq!(Template::parse("SET {value"), Err(TemplateError::Unclosed));
        assert_eq!(Template::parse("SET value}"), Err(TemplateError::Stray));
        assert_eq!(Template::parse(""), Err(TemplateError::Empty));
        assert!(TemplateError::Unknown("x".into())
            .to_string()
            .contains("`{field}`"));
    }

    #[test]
    fn control_characters_in_values_are_refused() {
        let t = Template::parse("SET {field} {value}\n").unwrap();
        assert_eq!(t.render("label", "a\nREBOOT", "d"), Err(UnsafeValue('\n')));
        assert_eq!(t.render("label", "a\rb", "d"), Err(UnsafeValue('\r')));
        assert_eq!(t.render("label", "\u{0}", "d"), Err(UnsafeValue('\u{0}')));
        assert!(t.render("label", "a b ü", "d").is_ok());
    }

    #[test]
    fn displays_as_written() {
        let t = Template::parse("SET {field} {{x}} {value}\n").unwrap();
        assert_eq!(t.to_string(), "SET {field} {{x}} {value}\\n");
    }
}
