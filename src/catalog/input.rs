//! `LaunchInput` (what a person typed, in the terminal or in Discord) and its validation into a
//! `LaunchRequest`. One set of rules, so both front ends give the same answer.

use std::fmt;

use super::repo::parse_repo;
use super::request::{Budget, Effort, LaunchMode, LaunchRequest, PrPolicy, Resources};
use super::{build_custom_tag, Catalog, Range, Tool};
use crate::secret::Secret;

/// Prompts beyond this are almost certainly a mistake (a pasted binary, a log file).
pub const MAX_PROMPT_BYTES: usize = 1024 * 1024;

/// A launch as typed: every field optional and unchecked.
#[derive(Debug, Clone, Default)]
pub struct LaunchInput {
    pub prompt: Option<String>,
    pub repo: Option<String>,
    pub base_branch: Option<String>,
    pub tool: Option<String>,
    pub model: Option<String>,
    pub effort: Option<String>,
    pub memory_mb: Option<i64>,
    pub cpus: Option<i64>,
    /// `90s`, `15m`, `2h`, or plain milliseconds.
    pub timeout: Option<String>,
    pub template: Option<String>,
    /// `KEY=VALUE` pairs.
    pub env: Vec<String>,
    pub checker_template_id: Option<String>,
    pub designer_cli_id: Option<String>,
    pub optimizer_cli_id: Option<String>,
    pub checker_cli_id: Option<String>,
    /// `draft` (default), `ready` or `none`.
    pub pr: Option<String>,
    /// The launch's budget in US dollars (`2.50`); none: the project's or the deployment's.
    pub max_cost_usd: Option<String>,
    /// The launch's budget in tokens; none: no token budget.
    pub max_tokens: Option<String>,
}

/// One invalid field: the field's name and a sentence that quotes the value and says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    pub fn field(&self, field: &str) -> Option<&FieldError> {
        self.0.iter().find(|e| e.field == field)
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl LaunchInput {
    /// Checks every field and reports all problems at once. `allow_local_repos` is false for chat
    /// users unless the operator allowed it: a local path lets the sender read this machine's disk.
    pub fn validate(
        &self,
        catalog: &Catalog,
        allow_local_repos: bool,
    ) -> Result<LaunchRequest, ValidationErrors> {
        let mut errors = Vec::new();
        let mut err =
            |field: &'static str, message: String| errors.push(FieldError { field, message });

        let prompt = match &self.prompt {
            Some(p) if p.len() > MAX_PROMPT_BYTES => {
                err(
                    "prompt",
                    format!(
                        "is {} bytes; the limit is {MAX_PROMPT_BYTES} bytes (1 MiB)",
                        p.len()
                    ),
                );
                None
            }
            Some(p) if !p.trim().is_empty() => Some(p.clone()),
            _ => {
                err("prompt", "is empty; say what the agent should do".into());
                None
            }
        };

        let repo = match self.repo.as_deref().map(str::trim) {
            None | Some("") => {
                err(
                    "repo",
                    "is missing; give owner/name, a GitHub URL, or a local repository path".into(),
                );
                None
            }
            Some(text) => parse_repo(text, allow_local_repos)
                .map_err(|why| err("repo", format!("\"{text}\" {why}")))
                .ok(),
        };

        let base_branch = match self.base_branch.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(b) if is_valid_branch_name(b) => Some(b.to_string()),
            Some(b) => {
                err("base_branch", format!(
                    "\"{b}\" is not a valid branch name (no spaces, control characters, ~ ^ : ? * [ \\, \"..\" or \"@{{\"; not starting with - or ending with / . or .lock)"
                ));
                None
            }
        };

        let tool: Option<&Tool> = match self.tool.as_deref().map(str::trim) {
            None | Some("") => Some(catalog.default_tool()),
            Some(id) => catalog.tool(id).or_else(|| {
                err(
                    "tool",
                    format!("\"{id}\" is not a tool; choose {}", tool_choices(catalog)),
                );
                None
            }),
        };

        let model = tool.and_then(|tool| match self.model.as_deref().map(str::trim) {
            None | Some("") => Some(tool.default_model().to_string()),
            Some(m) if tool.models.iter().any(|known| known == m) => Some(m.to_string()),
            Some(m) if tool.open_models && is_open_model_id(m) => Some(m.to_string()),
            Some(m) => {
                let mut choices = format!("{} (default)", tool.models.join(", "));
                if tool.open_models {
                    choices.push_str(", or any OpenRouter id such as provider/model");
                }
                err(
                    "model",
                    format!("\"{m}\" is not a {} model; choose {choices}", tool.name),
                );
                None
            }
        });

        let effort = match self.effort.as_deref().map(str::trim) {
            // The model's default effort from the catalog.
            None | Some("") => Some(match (tool, &model) {
                (Some(tool), Some(model)) => tool.default_effort(model),
                _ => Effort::None,
            }),
            Some(text) => {
                match Effort::parse(text) {
                    None => {
                        err("effort", format!("\"{text}\" is not an effort level; choose high, medium, low or none"));
                        None
                    }
                    Some(e) => match tool {
                        Some(tool) if e != Effort::None && !tool.capabilities.effort => {
                            err("effort", format!(
                            "\"{e}\" is not available for {}: it has no effort setting CodeCourier can rely on; choose none or leave it out",
                            tool.name
                        ));
                            None
                        }
                        _ => Some(e),
                    },
                }
            }
        };

        let limits = catalog.limits;
        let memory_mb = check_range(self.memory_mb, limits.memory_mb)
            .map_err(|v| {
                err(
                    "memory_mb",
                    format!(
                        "{v} is outside the allowed range {}–{} MB (default {})",
                        limits.memory_mb.min, limits.memory_mb.max, limits.memory_mb.default
                    ),
                )
            })
            .ok();
        let cpus = check_range(self.cpus, limits.cpus)
            .map_err(|v| {
                err(
                    "cpus",
                    format!(
                        "{v} is outside the allowed range {}–{} (default {})",
                        limits.cpus.min, limits.cpus.max, limits.cpus.default
                    ),
                )
            })
            .ok();
        let timeout_ms = match self.timeout.as_deref().map(str::trim) {
            None | Some("") => Some(limits.timeout_ms.default),
            Some(text) => match parse_timeout_ms(text) {
                Some(ms) if limits.timeout_ms.contains(ms) => Some(ms),
                Some(_) => {
                    err(
                        "timeout",
                        format!(
                            "\"{text}\" is outside the allowed range {} to {} (default {})",
                            human_ms(limits.timeout_ms.min),
                            human_ms(limits.timeout_ms.max),
                            human_ms(limits.timeout_ms.default)
                        ),
                    );
                    None
                }
                None => {
                    err("timeout", format!("\"{text}\" is not a duration; use for example 90s, 15m, 2h, or plain milliseconds"));
                    None
                }
            },
        };

        let template = match (self.template.as_deref().map(str::trim), tool) {
            (None | Some(""), Some(tool)) => build_custom_tag(&tool.default_template).ok(),
            (None | Some(""), None) => None,
            (Some(t), _) => build_custom_tag(t)
                .map_err(|why| err("template", format!("\"{t}\" {why}")))
                .ok(),
        };
        let checker_template_id = match self.checker_template_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(t) => build_custom_tag(t)
                .map_err(|why| err("checker_template_id", format!("\"{t}\" {why}")))
                .ok(),
        };
        let pr = match self.pr.as_deref().map(str::trim) {
            None | Some("") => Some(PrPolicy::Draft),
            Some(text) => match [PrPolicy::Draft, PrPolicy::Ready, PrPolicy::None]
                .into_iter()
                .find(|p| p.as_str().eq_ignore_ascii_case(text))
            {
                Some(p) => Some(p),
                None => {
                    err("pr", format!("\"{text}\" is not a pull request policy; choose draft (default), ready or none"));
                    None
                }
            },
        };
        let mut step_tool =
            |field: &'static str, value: &Option<String>| match value.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(id) if catalog.tool(id).is_some() => Some(id.to_string()),
                Some(id) => {
                    err(
                        field,
                        format!("\"{id}\" is not a tool; choose {}", tool_choices(catalog)),
                    );
                    None
                }
            };
        let designer_cli_id = step_tool("designer_cli_id", &self.designer_cli_id);
        let optimizer_cli_id = step_tool("optimizer_cli_id", &self.optimizer_cli_id);
        let checker_cli_id = step_tool("checker_cli_id", &self.checker_cli_id);

        let max_cost_usd = match self.max_cost_usd.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Budget::parse_usd(text, "the budget")
                .map_err(|e| err("max_cost_usd", e))
                .ok(),
        };
        let max_tokens = match self.max_tokens.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => match text.replace('_', "").parse::<u64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    err(
                        "max_tokens",
                        format!("\"{text}\" is not a number of tokens above 0, such as 200000"),
                    );
                    None
                }
            },
        };

        let mut env: Vec<(String, Secret)> = Vec::new();
        for pair in &self.env {
            // Never quote the value: it may be a key.
            match pair.split_once('=') {
                Some((name, value)) if is_env_name(name) => {
                    if env.iter().any(|(n, _)| n == name) {
                        err("env", format!("{name} is given twice; give each variable once"));
                    } else {
                        env.push((name.to_string(), Secret::new(value)));
                    }
                }
                Some((name, _)) => err("env", format!(
                    "\"{name}\" is not a variable name (letters, digits and _, not starting with a digit)"
                )),
                None => err("env", format!(
                    "\"{}\" is not KEY=VALUE",
                    if is_env_name(pair) { pair.as_str() } else { "(value hidden)" }
                )),
            }
        }

        if !errors.is_empty() {
            return Err(ValidationErrors(errors));
        }
        let tool = tool.expect("no errors, so the tool resolved");
        Ok(LaunchRequest {
            prompt: prompt.expect("checked"),
            repo: repo.expect("checked"),
            base_branch,
            tool: tool.id.clone(),
            model: model.expect("checked"),
            effort: effort.expect("checked"),
            resources: Resources {
                memory_mb: memory_mb.expect("checked") as u32,
                cpus: cpus.expect("checked") as u32,
                timeout_ms: timeout_ms.expect("checked"),
            },
            template: template.expect("checked"),
            env,
            checker_template_id,
            designer_cli_id,
            optimizer_cli_id,
            checker_cli_id,
            pr: pr.expect("checked"),
            follow_up: None,
            budget: Budget {
                max_cost_usd,
                max_tokens,
            },
            mode: LaunchMode::Work,
        })
    }
}

fn tool_choices(catalog: &Catalog) -> String {
    let ids: Vec<String> = catalog
        .tools
        .iter()
        .map(|t| {
            if t.id == catalog.default_tool {
                format!("{} (default)", t.id)
            } else {
                t.id.clone()
            }
        })
        .collect();
    ids.join(", ")
}

/// The value itself when absent (default) or inside the range; else the offending value.
fn check_range(value: Option<i64>, range: Range) -> Result<u64, i64> {
    match value {
        None => Ok(range.default),
        Some(v) if v >= 0 && range.contains(v as u64) => Ok(v as u64),
        Some(v) => Err(v),
    }
}

/// `90s`, `15m`, `2h`, `1h30m` (humantime), or plain milliseconds.
pub fn parse_timeout_ms(text: &str) -> Option<u64> {
    if text.chars().all(|c| c.is_ascii_digit()) {
        return text.parse().ok();
    }
    humantime::parse_duration(text)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
}

/// A limit in words: whole hours as hours, whole minutes as minutes ("1 minute", "21 minutes",
/// "90 minutes", "2 hours"), anything else as humantime writes it.
fn human_ms(ms: u64) -> String {
    let count = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match ms {
        ms if ms % 3_600_000 == 0 => count(ms / 3_600_000, "hour"),
        ms if ms % 60_000 == 0 => count(ms / 60_000, "minute"),
        ms => humantime::format_duration(std::time::Duration::from_millis(ms)).to_string(),
    }
}

/// OpenRouter-style ids: `provider/model` (more segments allowed, for `openrouter/google/gemini-…`,
/// and a `:variant` suffix such as `:free`).
fn is_open_model_id(id: &str) -> bool {
    let segments: Vec<&str> = id.split('/').collect();
    segments.len() >= 2
        && segments.iter().all(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        })
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The rules of `git check-ref-format` that a person can break by typing.
fn is_valid_branch_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.ends_with('.')
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && name != "@"
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
}

#[cfg(test)]
mod tests;
