//! The tool catalog: which agent CLIs exist, their models, keys, templates and capabilities, and the
//! resource limits. It is data (`catalog.toml`, compiled in, or a file named in `CODECOURIER_CATALOG`).

mod input;
mod prices;
mod repo;
mod request;
mod template;

pub use input::{FieldError, LaunchInput, ValidationErrors};
pub use prices::{Price, Prices};
pub use request::{
    describe_spend, usd, Budget, Effort, FollowUp, LaunchMode, LaunchRequest, PrPolicy, RepoRef,
    Resources, ScanTask,
};
pub use template::{build_custom_tag, TemplateRef};

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

const BUILT_IN: &str = include_str!("catalog.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub default_tool: String,
    pub limits: Limits,
    /// How the clone phase gets the repository into the sandbox.
    #[serde(default)]
    pub clone: CloneSettings,
    pub tools: Vec<Tool>,
    /// What the models cost, for pricing metered usage; a model not listed is counted in tokens.
    #[serde(default)]
    pub prices: Prices,
}

/// How a repository reached over the network is cloned into a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CloneSettings {
    /// Keep a mirror of each repository on the host, fetched into at each launch and mounted
    /// read-only into sandboxes, where the provider can show host paths (local sandboxes).
    pub mirror: bool,
    /// Without a mirror, repositories of at least this size (in KB, as GitHub reports `size`) are
    /// cloned without their files' contents (`--filter=blob:none`), fetched on demand instead.
    pub partial_from_kb: u64,
}

impl Default for CloneSettings {
    fn default() -> Self {
        Self {
            mirror: true,
            partial_from_kb: 50_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub memory_mb: Range,
    pub cpus: Range,
    pub timeout_ms: Range,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub min: u64,
    pub max: u64,
    pub default: u64,
}

impl Range {
    pub fn contains(&self, value: u64) -> bool {
        (self.min..=self.max).contains(&value)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    pub id: String,
    pub name: String,
    /// The executable the sandbox runs.
    pub command: String,
    /// Alternatives: the tool can run when all keys of any one set are present.
    pub required_keys: Vec<Vec<String>>,
    /// Known models, the default first.
    pub models: Vec<String>,
    /// Whether any OpenRouter-style id (`provider/model`) is accepted besides `models`.
    pub open_models: bool,
    pub default_template: String,
    pub capabilities: Capabilities,
    /// The effort a launch of a model gets when it does not choose one; a model not listed gets
    /// none (the CLI's own default).
    #[serde(default)]
    pub default_effort: BTreeMap<String, Effort>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    pub stream_output: bool,
    pub claude_md: bool,
    pub skills: bool,
    pub learnings: bool,
    pub effort: bool,
    /// The CLI can be made to answer in a given JSON schema (Claude Code's `--json-schema`); other
    /// tools are asked for a fenced JSON block.
    #[serde(default)]
    pub structured_output: bool,
    /// A follow-up can resume the agent's earlier session from its kept files (Claude Code's
    /// `~/.claude`); other tools start a fresh session on the same branch.
    #[serde(default)]
    pub resume_session: bool,
}

impl Tool {
    pub fn default_model(&self) -> &str {
        &self.models[0]
    }

    /// The effort a launch of `model` gets when it does not choose one.
    pub fn default_effort(&self, model: &str) -> Effort {
        self.default_effort
            .get(model)
            .copied()
            .unwrap_or(Effort::None)
    }

    /// Whether the keys present satisfy one of the tool's alternatives.
    pub fn keys_satisfied(&self, present: &dyn Fn(&str) -> bool) -> bool {
        self.required_keys
            .iter()
            .any(|set| set.iter().all(|key| present(key)))
    }

    /// "ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN", for messages.
    pub fn keys_description(&self) -> String {
        self.required_keys
            .iter()
            .map(|set| set.join(" + "))
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

impl Catalog {
    pub fn built_in() -> Self {
        Self::parse(BUILT_IN).expect("the built-in catalog is valid (tested)")
    }

    /// The catalog file when given, else the built-in one.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            None => Ok(Self::built_in()),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the catalog file {}", path.display()))?;
                Self::parse(&text).with_context(|| {
                    format!(
                        "the catalog file {} (CODECOURIER_CATALOG) is invalid",
                        path.display()
                    )
                })
            }
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let catalog: Catalog = toml::from_str(text)?;
        catalog.check()?;
        Ok(catalog)
    }

    fn check(&self) -> anyhow::Result<()> {
        let mut seen = BTreeMap::new();
        for tool in &self.tools {
            if seen.insert(tool.id.as_str(), ()).is_some() {
                bail!("tool id {} appears twice", tool.id);
            }
            if tool.models.is_empty() {
                bail!(
                    "tool {} lists no models; the first model is its default",
                    tool.id
                );
            }
            if tool.required_keys.iter().any(|set| set.is_empty()) {
                bail!("tool {} has an empty key set in required_keys", tool.id);
            }
            for (model, effort) in &tool.default_effort {
                if !tool.models.contains(model) {
                    bail!(
                        "tool {}: default_effort names {model}, which is not one of its models",
                        tool.id
                    );
                }
                if *effort != Effort::None && !tool.capabilities.effort {
                    bail!(
                        "tool {}: default_effort gives {model} effort {effort}, but the tool has no effort setting (capabilities.effort)",
                        tool.id
                    );
                }
            }
            build_custom_tag(&tool.default_template)
                .map_err(|e| anyhow::anyhow!("tool {}: default_template {e}", tool.id))?;
        }
        if self.tool(&self.default_tool).is_none() {
            bail!("default_tool {} is not one of the tools", self.default_tool);
        }
        for (name, range) in [
            ("memory_mb", self.limits.memory_mb),
            ("cpus", self.limits.cpus),
            ("timeout_ms", self.limits.timeout_ms),
        ] {
            if !(range.min <= range.default && range.default <= range.max) {
                bail!("limits.{name} needs min <= default <= max");
            }
        }
        self.prices.check()
    }

    pub fn tool(&self, id: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.id == id)
    }

    pub fn default_tool(&self) -> &Tool {
        self.tool(&self.default_tool)
            .expect("checked when the catalog was loaded")
    }

    pub fn tool_ids(&self) -> Vec<&str> {
        self.tools.iter().map(|t| t.id.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_effort_must_name_a_model_of_a_tool_that_takes_effort() {
        let built_in = include_str!("catalog.toml");
        let unknown = built_in.replace(
            "\"claude-opus-4-6\" = \"high\"",
            "\"claude-opus-9\" = \"high\"",
        );
        let err = format!("{:#}", Catalog::parse(&unknown).unwrap_err());
        assert!(err.contains("default_effort names claude-opus-9"), "{err}");
        let opencode = built_in.replace(
            "effort = false }",
            "effort = false }\ndefault_effort = { \"openrouter/openai/gpt-5.4\" = \"high\" }",
        );
        let err = format!("{:#}", Catalog::parse(&opencode).unwrap_err());
        assert!(err.contains("has no effort setting"), "{err}");
        let wrong = built_in.replace(
            "\"claude-opus-4-6\" = \"high\"",
            "\"claude-opus-4-6\" = \"max\"",
        );
        assert!(Catalog::parse(&wrong).is_err());
    }

    #[test]
    fn built_in_catalog_has_four_tools_with_claude_code_default() {
        let c = Catalog::built_in();
        assert_eq!(c.tool_ids(), ["claude-code", "opencode", "codex", "pi"]);
        assert_eq!(c.default_tool().name, "Claude Code");
        assert_eq!(c.default_tool().default_model(), "claude-sonnet-4-6");
        assert!(c
            .tool("opencode")
            .unwrap()
            .default_model()
            .contains("gemini"));
        assert_eq!(
            c.limits.memory_mb,
            Range {
                min: 256,
                max: 8192,
                default: 1024
            }
        );
        assert_eq!(c.limits.timeout_ms.default, 900_000);
        let resumers: Vec<&str> = c
            .tools
            .iter()
            .filter(|t| t.capabilities.resume_session)
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(resumers, ["claude-code"]);
    }

    #[test]
    fn keys_are_any_of_sets() {
        let claude = Catalog::built_in().tool("claude-code").unwrap().clone();
        assert!(claude.keys_satisfied(&|k| k == "CLAUDE_CODE_OAUTH_TOKEN"));
        assert!(claude.keys_satisfied(&|k| k == "ANTHROPIC_API_KEY"));
        assert!(!claude.keys_satisfied(&|k| k == "OPENAI_API_KEY"));
        assert_eq!(
            claude.keys_description(),
            "ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN"
        );
    }

    #[test]
    fn a_catalog_file_replaces_the_built_in_one_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.toml");
        let custom = BUILT_IN.replace("default_tool = \"claude-code\"", "default_tool = \"pi\"");
        std::fs::write(&path, custom).unwrap();
        assert_eq!(Catalog::load(Some(&path)).unwrap().default_tool, "pi");

        let broken = BUILT_IN.replace("default_tool = \"claude-code\"", "default_tool = \"aider\"");
        std::fs::write(&path, broken).unwrap();
        let err = format!("{:#}", Catalog::load(Some(&path)).unwrap_err());
        assert!(
            err.contains("CODECOURIER_CATALOG") && err.contains("aider"),
            "{err}"
        );

        let typo = BUILT_IN.replace("open_models = false", "open_model = false");
        std::fs::write(&path, typo).unwrap();
        let err = format!("{:#}", Catalog::load(Some(&path)).unwrap_err());
        assert!(err.contains("open_model"), "{err}");
    }
}
