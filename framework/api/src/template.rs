//! Text templates from the config (handlebars: `{{displayname}}: {{body}}`), checked when the
//! config is loaded so that a typo is reported with its field, not at the first message.

use handlebars::Handlebars;

/// A template that renders plain text (nothing is HTML-escaped).
#[derive(Clone, Debug)]
pub struct Template {
    registry: Handlebars<'static>,
}

/// A template does not compile.
#[derive(Debug, thiserror::Error)]
#[error(
    "config field `{field}` is '{text}', but a handlebars template such as \"{{{{displayname}}}}: {{{{body}}}}\" is expected ({reason})"
)]
pub struct TemplateError {
    /// The config field.
    pub field: String,
    /// The template text.
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

const NAME: &str = "t";

impl Template {
    /// Compiles `text`, the value of config field `field`.
    pub fn new(field: &str, text: &str) -> Result<Self, TemplateError> {
        let mut registry = Handlebars::new();
        registry.register_escape_fn(handlebars::no_escape);
        registry
            .register_template_string(NAME, text)
            .map_err(|e| TemplateError {
                field: field.to_owned(),
                text: text.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self { registry })
    }

    /// Like [`Template::new`], but a value the template names and the data lacks is an error
    /// of [`Template::try_render`] instead of empty text.
    pub fn strict(field: &str, text: &str) -> Result<Self, TemplateError> {
        let mut template = Self::new(field, text)?;
        template.registry.set_strict_mode(true);
        Ok(template)
    }

    /// The text for `data` (a missing value renders empty).
    #[must_use]
    pub fn render(&self, data: &serde_json::Value) -> String {
        self.registry.render(NAME, data).unwrap_or_default()
    }

    /// The text for `data`, or why it cannot be rendered (a helper failing on the data).
    pub fn try_render(&self, data: &serde_json::Value) -> Result<String, String> {
        self.registry.render(NAME, data).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_plain_text_and_reports_a_broken_template_with_its_field() {
        let template =
            Template::new("relay.message_template", "{{displayname}}: {{body}}").expect("compiles");
        assert_eq!(
            template.render(&json!({ "displayname": "Bob <b>", "body": "1 < 2" })),
            "Bob <b>: 1 < 2"
        );
        assert_eq!(template.render(&json!({ "body": "x" })), ": x");
        let err = Template::new("relay.message_template", "{{#if}}").expect_err("broken");
        assert!(err.to_string().contains("relay.message_template"), "{err}");
        let strict = Template::strict("t", "{{a.b}} and {{c}}").expect("compiles");
        assert_eq!(
            strict
                .try_render(&json!({ "a": { "b": 1 }, "c": 2 }))
                .as_deref(),
            Ok("1 and 2")
        );
        assert!(
            strict.try_render(&json!({ "c": 2 })).is_err(),
            "a.b is missing"
        );
    }
}
