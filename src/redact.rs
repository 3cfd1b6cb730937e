//! Redaction of secrets from anything that leaves the process: agent output, error text, logs,
//! Discord posts. Known secret values are replaced exactly; well-known token shapes are replaced even
//! when we never saw the value (an agent may print a key it found in the repository).

use std::sync::OnceLock;

use regex::Regex;

pub const REDACTED: &str = "[redacted]";

/// Values shorter than this are not replaced: they would shred ordinary text ("1", "true").
const MIN_SECRET_LEN: usize = 6;

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    values: Vec<String>,
}

fn token_shapes() -> &'static Regex {
    static SHAPES: OnceLock<Regex> = OnceLock::new();
    SHAPES.get_or_init(|| {
        Regex::new(concat!(
            r"sk-ant-[A-Za-z0-9_\-]{8,}",  // Anthropic keys and OAuth tokens
            r"|sk-or-v1-[A-Za-z0-9]{16,}", // OpenRouter
            r"|sk-(?:proj-|svcacct-)?[A-Za-z0-9_\-]{20,}", // OpenAI
            r"|gh[pousr]_[A-Za-z0-9]{30,}", // GitHub tokens
            r"|github_pat_[A-Za-z0-9_]{30,}",
            r"|e2b_[A-Za-z0-9]{20,}",           // E2B
            r"|xox[abposr]-[A-Za-z0-9\-]{10,}", // Slack, often found in repositories
            r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
        ))
        .expect("valid pattern")
    })
}

impl Redactor {
    pub fn new<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut r = Self::default();
        for v in values {
            r.add(v.as_ref());
        }
        r
    }

    pub fn add(&mut self, value: &str) {
        let value = value.trim();
        if value.len() >= MIN_SECRET_LEN && !self.values.iter().any(|v| v == value) {
            self.values.push(value.to_string());
            // Longest first, so a secret that contains another is replaced whole.
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), REDACTED);
            }
        }
        match token_shapes().replace_all(&out, REDACTED) {
            std::borrow::Cow::Borrowed(_) => out,
            std::borrow::Cow::Owned(replaced) => replaced,
        }
    }

    /// Redacts every string inside a JSON value, keys included.
    pub fn redact_json(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.redact(s)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.redact_json(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (self.redact(k), self.redact_json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// Whether a variable's value should be hidden from output: its name says it is a credential, or
/// the value looks like a token. Plain settings ("fast", a URL) stay readable.
pub fn looks_secret(name: &str, value: &str) -> bool {
    let name = name.to_ascii_uppercase();
    let secret_name = [
        "KEY",
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "AUTH",
        "CREDENTIAL",
        "PRIVATE",
        "COOKIE",
        "SESSION",
    ]
    .iter()
    .any(|word| name.contains(word));
    let plain_url =
        (value.starts_with("http://") || value.starts_with("https://")) && !value.contains('@');
    let token_like = value.len() >= 12
        && !value.chars().any(char::is_whitespace)
        && value.chars().any(|c| c.is_ascii_alphabetic())
        && value.chars().any(|c| c.is_ascii_digit())
        && !plain_url;
    secret_name || token_like
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_token_shapes_are_replaced() {
        let r = Redactor::new(["my-custom-secret-value", "1"]);
        let text = "key my-custom-secret-value and sk-ant-api03-abcdefghijkl and ghp_0123456789abcdef0123456789abcdef0123 and 1 apple";
        let out = r.redact(text);
        assert_eq!(
            out,
            "key [redacted] and [redacted] and [redacted] and 1 apple"
        );
    }

    #[test]
    fn private_keys_are_replaced_whole() {
        let out = Redactor::default().redact(
            "x\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\nabc\n-----END RSA PRIVATE KEY-----\ny",
        );
        assert_eq!(out, "x\n[redacted]\ny");
    }

    #[test]
    fn json_strings_are_redacted_deeply() {
        let r = Redactor::new(["planted-secret"]);
        let v = serde_json::json!({"a": ["x planted-secret"], "planted-secret": 1});
        let out = r.redact_json(&v).to_string();
        assert!(!out.contains("planted"), "{out}");
    }

    #[test]
    fn variables_are_hidden_when_they_look_secret() {
        assert!(looks_secret("GITHUB_TOKEN", "abc"));
        assert!(looks_secret("PLANTED", "plantedvalue-9f8e7d"));
        assert!(looks_secret("DB", "postgres://user:pw@db/x1"));
        assert!(!looks_secret("MODE", "garbage"));
        assert!(!looks_secret("ANTHROPIC_BASE_URL", "http://127.0.0.1:8080"));
    }
}
