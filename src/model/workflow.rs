//! Workflow definitions: the steps (designer, optimizer, checker), their personas and per-step
//! overrides, how a definition is checked against the catalog, a run's task and a checker's
//! verdict. Plain data the store keeps and the pipeline runs.

use serde::{Deserialize, Serialize};

use crate::catalog::{Budget, Catalog, FieldError, LaunchInput, ValidationErrors};

pub const DEFAULT_WORKFLOW: &str = "default";
pub const DEFAULT_MAX_ROUNDS: u32 = 3;
pub const MAX_ROUNDS_LIMIT: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    Designer,
    Optimizer,
    Checker,
}

impl StepKind {
    pub const ALL: [StepKind; 3] = [StepKind::Designer, StepKind::Optimizer, StepKind::Checker];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Designer => "designer",
            StepKind::Optimizer => "optimizer",
            StepKind::Checker => "checker",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every step starts from, unless the step overrides it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    #[serde(default)]
    pub tool: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub effort: Option<String>,
    #[serde(default)]
    pub memory_mb: Option<i64>,
    #[serde(default)]
    pub cpus: Option<i64>,
    /// `15m`, `2h`, … as for a launch.
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub template: Option<String>,
}

/// A workflow as stored (JSON) and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDef {
    pub name: String,
    #[serde(default)]
    pub default_config: StepConfig,
    #[serde(default = "default_designer")]
    pub designer_persona: String,
    #[serde(default = "default_optimizer")]
    pub optimizer_persona: String,
    #[serde(default = "default_checker")]
    pub checker_persona: String,
    #[serde(default)]
    pub designer_cli_id: Option<String>,
    #[serde(default)]
    pub optimizer_cli_id: Option<String>,
    #[serde(default)]
    pub checker_cli_id: Option<String>,
    #[serde(default)]
    pub designer_model: Option<String>,
    #[serde(default)]
    pub optimizer_model: Option<String>,
    #[serde(default)]
    pub checker_model: Option<String>,
    /// The checker's template; the main template when unset.
    #[serde(default)]
    pub checker_template_id: Option<String>,
    #[serde(default = "default_rounds")]
    pub max_rounds: u32,
    /// The most a whole run (or a whole chain) may spend, as metered: its steps stop there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// The most tokens a whole run (or chain) may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
}

fn default_designer() -> String {
    "You are the designer. Build a complete first version of what the task asks for, with tests \
where the project has them, and commit it."
        .into()
}

fn default_optimizer() -> String {
    "You are the optimizer. Improve the work already on this branch: fix what the checker found, \
if anything, then simplify, handle edge cases and keep the tests passing. Commit your changes."
        .into()
}

fn default_checker() -> String {
    "You are the checker. Verify the work on this branch against the task: read the changes \
against the base branch and run the tests. Change nothing; judge."
        .into()
}

fn default_rounds() -> u32 {
    DEFAULT_MAX_ROUNDS
}

impl WorkflowDef {
    /// The built-in workflow: every step with the catalog's default tool.
    pub fn built_in() -> Self {
        Self {
            name: DEFAULT_WORKFLOW.into(),
            default_config: StepConfig::default(),
            designer_persona: default_designer(),
            optimizer_persona: default_optimizer(),
            checker_persona: default_checker(),
            designer_cli_id: None,
            optimizer_cli_id: None,
            checker_cli_id: None,
            designer_model: None,
            optimizer_model: None,
            checker_model: None,
            checker_template_id: None,
            max_rounds: DEFAULT_MAX_ROUNDS,
            max_cost_usd: None,
            max_tokens: None,
        }
    }

    /// What a whole run (or chain) of this workflow may spend.
    pub fn budget(&self) -> Budget {
        Budget {
            max_cost_usd: self.max_cost_usd,
            max_tokens: self.max_tokens,
        }
    }

    pub fn persona(&self, kind: StepKind) -> &str {
        match kind {
            StepKind::Designer => &self.designer_persona,
            StepKind::Optimizer => &self.optimizer_persona,
            StepKind::Checker => &self.checker_persona,
        }
    }

    fn overrides(&self, kind: StepKind) -> (Option<&String>, Option<&String>) {
        match kind {
            StepKind::Designer => (self.designer_cli_id.as_ref(), self.designer_model.as_ref()),
            StepKind::Optimizer => (
                self.optimizer_cli_id.as_ref(),
                self.optimizer_model.as_ref(),
            ),
            StepKind::Checker => (self.checker_cli_id.as_ref(), self.checker_model.as_ref()),
        }
    }

    /// The launch input of a step: the default configuration with the step's overrides. A step on
    /// another tool than the default takes that tool's default model unless it names its own, and
    /// the default effort only when its tool has one.
    pub fn step_input(&self, catalog: &Catalog, kind: StepKind, prompt: String) -> LaunchInput {
        let base = &self.default_config;
        let (tool_override, model_override) = self.overrides(kind);
        let tool = tool_override.or(base.tool.as_ref()).cloned();
        let same_tool = tool_override.is_none() || tool_override == base.tool.as_ref();
        let model = model_override
            .cloned()
            .or_else(|| base.model.clone().filter(|_| same_tool));
        let tool_supports_effort = tool
            .as_deref()
            .and_then(|t| catalog.tool(t))
            .unwrap_or_else(|| catalog.default_tool())
            .capabilities
            .effort;
        let template = match kind {
            StepKind::Checker => self.checker_template_id.clone().or(base.template.clone()),
            _ => base.template.clone(),
        }
        // A template belongs to a tool: a step on another tool takes that tool's own.
        .filter(|_| same_tool || (kind == StepKind::Checker && self.checker_template_id.is_some()));
        LaunchInput {
            prompt: Some(prompt),
            tool,
            model,
            effort: base.effort.clone().filter(|_| tool_supports_effort),
            memory_mb: base.memory_mb,
            cpus: base.cpus,
            timeout: base.timeout.clone(),
            template,
            pr: Some("none".into()),
            ..Default::default()
        }
    }

    /// The tool (by its name), model and template a step runs with, for people to read.
    pub fn step_tool(&self, catalog: &Catalog, kind: StepKind) -> (String, String, Option<String>) {
        let input = self.step_input(catalog, kind, String::new());
        let tool = input
            .tool
            .as_deref()
            .and_then(|t| catalog.tool(t))
            .unwrap_or_else(|| catalog.default_tool());
        let model = input
            .model
            .unwrap_or_else(|| tool.default_model().to_string());
        (tool.name.clone(), model, input.template)
    }

    /// Every problem with the definition, by field: unknown tools, a model of another tool, bad
    /// resources or templates, a round limit out of range.
    pub fn validate(&self, catalog: &Catalog) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        if self.name.trim().is_empty() || self.name.chars().count() > 50 {
            errors.push(FieldError {
                field: "name",
                message: "must be 1 to 50 characters".into(),
            });
        }
        if !(1..=MAX_ROUNDS_LIMIT).contains(&self.max_rounds) {
            errors.push(FieldError {
                field: "max_rounds",
                message: format!(
                    "is {}; it must be between 1 and {MAX_ROUNDS_LIMIT}",
                    self.max_rounds
                ),
            });
        }
        if self
            .max_cost_usd
            .is_some_and(|usd| !(usd.is_finite() && usd > 0.0))
        {
            errors.push(FieldError {
                field: "max_cost_usd",
                message: "must be a positive number of dollars, such as 2.50".into(),
            });
        }
        if self.max_tokens == Some(0) {
            errors.push(FieldError {
                field: "max_tokens",
                message: "must be a positive number of tokens".into(),
            });
        }
        let cli_field = |kind: StepKind| match kind {
            StepKind::Designer => "designer_cli_id",
            StepKind::Optimizer => "optimizer_cli_id",
            StepKind::Checker => "checker_cli_id",
        };
        let model_field = |kind: StepKind| match kind {
            StepKind::Designer => "designer_model",
            StepKind::Optimizer => "optimizer_model",
            StepKind::Checker => "checker_model",
        };
        for kind in StepKind::ALL {
            let mut input = self.step_input(catalog, kind, "check".into());
            // The repository comes with the run, not the definition.
            input.repo = Some("owner/name".into());
            let Err(found) = input.validate(catalog, true) else {
                continue;
            };
            let (tool_override, model_override) = self.overrides(kind);
            for e in found.0 {
                // Name the field of the definition that holds the bad value.
                let field = match e.field {
                    "tool" if tool_override.is_some() => cli_field(kind),
                    "tool" => "default_config.tool",
                    "model" if model_override.is_some() => model_field(kind),
                    "model" => "default_config.model",
                    "template"
                        if kind == StepKind::Checker && self.checker_template_id.is_some() =>
                    {
                        "checker_template_id"
                    }
                    "memory_mb" => "default_config.memory_mb",
                    "cpus" => "default_config.cpus",
                    "timeout" => "default_config.timeout",
                    "effort" => "default_config.effort",
                    "template" => "default_config.template",
                    other => other,
                };
                if !errors
                    .iter()
                    .any(|x: &FieldError| x.field == field && x.message == e.message)
                {
                    errors.push(FieldError {
                        field,
                        message: format!("{} (the {kind} step)", e.message),
                    });
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errors))
        }
    }
}

/// What a run works on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// One line for listings and the pull request.
    pub title: String,
    pub prompt: String,
    /// Where it came from: "prompt", "issue <session>#<n>", "github #<n>", "text".
    pub source: String,
}

impl Task {
    pub fn from_prompt(prompt: &str, source: &str) -> Self {
        let title = prompt
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("task")
            .trim()
            .chars()
            .take(100)
            .collect();
        Self {
            title,
            prompt: prompt.to_string(),
            source: source.into(),
        }
    }
}

/// A checker's judgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub pass: bool,
    pub findings: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steps_take_their_overrides_and_the_checker_its_template() {
        let catalog = Catalog::built_in();
        let mut wf = WorkflowDef::built_in();
        wf.default_config.model = Some("claude-opus-4-6".into());
        wf.default_config.effort = Some("high".into());
        wf.default_config.template = Some("acme/base:v1".into());
        wf.checker_cli_id = Some("opencode".into());
        wf.checker_template_id = Some("acme/checker:v2".into());
        let designer = wf.step_input(&catalog, StepKind::Designer, "p".into());
        assert_eq!(designer.model.as_deref(), Some("claude-opus-4-6"));
        assert_eq!(designer.template.as_deref(), Some("acme/base:v1"));
        let checker = wf.step_input(&catalog, StepKind::Checker, "p".into());
        assert_eq!(checker.tool.as_deref(), Some("opencode"));
        assert_eq!(
            checker.model, None,
            "another tool takes its own default model"
        );
        assert_eq!(checker.effort, None, "OpenCode has no effort");
        assert_eq!(checker.template.as_deref(), Some("acme/checker:v2"));
        wf.validate(&catalog).unwrap();
    }

    #[test]
    fn bad_definitions_are_refused_by_field() {
        let catalog = Catalog::built_in();
        let mut wf = WorkflowDef::built_in();
        wf.designer_cli_id = Some("cursor".into());
        wf.checker_cli_id = Some("opencode".into());
        wf.checker_model = Some("claude-sonnet-4-6".into());
        wf.max_rounds = 0;
        let errors = wf.validate(&catalog).unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field).collect();
        assert!(fields.contains(&"max_rounds"), "{errors}");
        assert!(fields.contains(&"designer_cli_id"), "{errors}");
        assert!(fields.contains(&"checker_model"), "{errors}");
        assert!(
            serde_json::from_value::<WorkflowDef>(json!({"name": "x", "surprise": 1})).is_err(),
            "unknown fields are refused"
        );
    }
}
