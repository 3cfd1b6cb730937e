//! Template references in E2B's `[namespace/]alias[:tag]` grammar.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A normalised template reference. `alias` and `alias:default` are the same template, so the
/// canonical form leaves the default tag out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct TemplateRef {
    pub namespace: Option<String>,
    pub alias: String,
    pub tag: Option<String>,
}

impl fmt::Display for TemplateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}/")?;
        }
        f.write_str(&self.alias)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        Ok(())
    }
}

impl From<TemplateRef> for String {
    fn from(t: TemplateRef) -> Self {
        t.to_string()
    }
}

impl TryFrom<String> for TemplateRef {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        build_custom_tag(&s)
    }
}

/// Validates and normalises a template reference the way E2B's `ParseName` does: trimmed and
/// lower-cased; namespace and alias of `a-z 0-9 - _`; a tag of `a-z 0-9 - _ .` that is not a UUID.
/// The error says what is wrong, for the caller to put next to the field and the value.
pub fn build_custom_tag(input: &str) -> Result<TemplateRef, String> {
    const FORM: &str = "use [namespace/]alias[:tag], for example acme/my-template:v1";
    let text = input.trim().to_lowercase();
    if text.is_empty() {
        return Err(format!("is empty; {FORM}"));
    }
    let (name, tag) = match text.split_once(':') {
        Some((name, tag)) => (name, Some(tag)),
        None => (text.as_str(), None),
    };
    let (namespace, alias) = match name.split_once('/') {
        Some((ns, alias)) => (Some(ns), alias),
        None => (None, name),
    };
    let is_name_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if let Some(ns) = namespace {
        if ns.is_empty() || !ns.chars().all(is_name_char) {
            return Err(format!(
                "has namespace \"{ns}\", which may only use a-z, 0-9, - and _; {FORM}"
            ));
        }
    }
    if alias.is_empty() || !alias.chars().all(is_name_char) {
        return Err(format!(
            "has alias \"{alias}\", which may only use a-z, 0-9, - and _; {FORM}"
        ));
    }
    let tag = match tag {
        None => None,
        Some(tag) => {
            if tag.is_empty() || !tag.chars().all(|c| is_name_char(c) || c == '.') {
                return Err(format!(
                    "has tag \"{tag}\", which may only use a-z, 0-9, -, _ and .; {FORM}"
                ));
            }
            if uuid::Uuid::parse_str(tag).is_ok() {
                return Err(format!(
                    "has tag \"{tag}\", which is a UUID; E2B reserves UUIDs for build ids, name the tag instead (for example v1)"
                ));
            }
            (tag != "default").then(|| tag.to_string())
        }
    };
    Ok(TemplateRef {
        namespace: namespace.map(str::to_string),
        alias: alias.to_string(),
        tag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> String {
        build_custom_tag(input).unwrap().to_string()
    }

    #[test]
    fn valid_references_normalise() {
        assert_eq!(ok("base"), "base");
        assert_eq!(ok("my-template:v1.0.0"), "my-template:v1.0.0");
        assert_eq!(
            ok("acme/my_template:production"),
            "acme/my_template:production"
        );
        assert_eq!(ok("name:default"), "name");
        assert_eq!(ok("  rki5dems9wqfm4r03t7g "), "rki5dems9wqfm4r03t7g");
    }

    #[test]
    fn uppercase_is_lowered() {
        assert_eq!(ok("Acme/My-Template:V2"), "acme/my-template:v2");
    }

    #[test]
    fn bad_characters_are_rejected_with_the_part_named() {
        let err = build_custom_tag("my template").unwrap_err();
        assert!(err.contains("alias \"my template\""), "{err}");
        assert!(build_custom_tag("acme/x/y")
            .unwrap_err()
            .contains("alias \"x/y\""));
        assert!(build_custom_tag("ac.me/x")
            .unwrap_err()
            .contains("namespace"));
        assert!(build_custom_tag("x:v1/2").unwrap_err().contains("tag"));
        assert!(build_custom_tag("x:").unwrap_err().contains("tag"));
        assert!(build_custom_tag(":v1").unwrap_err().contains("alias"));
        assert!(build_custom_tag("x:a:b").unwrap_err().contains("tag"));
        assert!(build_custom_tag("   ").unwrap_err().contains("empty"));
    }

    #[test]
    fn uuid_tags_are_rejected() {
        let err = build_custom_tag("base:0b4d6f3c-2a4e-4a57-9f7e-6a3b1c2d4e5f").unwrap_err();
        assert!(err.contains("UUID"), "{err}");
        assert!(build_custom_tag("base:0B4D6F3C-2A4E-4A57-9F7E-6A3B1C2D4E5F").is_err());
    }

    #[test]
    fn serde_round_trips_through_the_canonical_string() {
        let t: TemplateRef = serde_json::from_str("\"Acme/X:Default\"").unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"acme/x\"");
        assert!(serde_json::from_str::<TemplateRef>("\"a b\"").is_err());
    }
}
