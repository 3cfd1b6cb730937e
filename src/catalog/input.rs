//! `LaunchInput` (what a person typed, in the terminal or in Discord) and its validation into a
//! `LaunchRequest`. One set of rules, so both front ends give the same answer.

use std::fmt;
use std::path::{Path, PathBuf};

use super::request::{Effort, LaunchMode, LaunchRequest, PrPolicy, RepoRef, Resources};
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

pub(super) fn parse_repo(text: &str, allow_local: bool) -> Result<RepoRef, String> {
    const FORMS: &str = "give owner/name, https://github.com/owner/name, git@github.com:owner/name, or a local repository path";
    if let Some(path) = text.strip_prefix("file://") {
        return local_repo(Path::new(path), allow_local);
    }
    if text.starts_with('/') || text.starts_with('.') || text.starts_with('~') {
        let path = match text.strip_prefix('~') {
            Some(rest) => match std::env::var_os("HOME") {
                Some(home) => PathBuf::from(home).join(rest.trim_start_matches('/')),
                None => return Err("starts with ~ but HOME is not set; give the full path".into()),
            },
            None => PathBuf::from(text),
        };
        return local_repo(&path, allow_local);
    }
    let github_path = if let Some(rest) = text
        .strip_prefix("https://github.com/")
        .or_else(|| text.strip_prefix("https://www.github.com/"))
        .or_else(|| text.strip_prefix("ssh://git@github.com/"))
        .or_else(|| text.strip_prefix("git@github.com:"))
    {
        rest.trim_end_matches('/')
    } else if text.contains("://") || text.contains('@') {
        return Err(format!("is not a GitHub repository; only GitHub is supported (for another host, clone it and give the local path); {FORMS}"));
    } else {
        text
    };
    let github_path = github_path.strip_suffix(".git").unwrap_or(github_path);
    match github_path.split_once('/') {
        Some((owner, name)) if is_github_owner(owner) && is_github_repo_name(name) => {
            Ok(RepoRef::Github {
                owner: owner.to_string(),
                name: name.to_string(),
            })
        }
        _ => Err(format!("is not a repository reference; {FORMS}")),
    }
}

fn local_repo(path: &Path, allow_local: bool) -> Result<RepoRef, String> {
    if !allow_local {
        return Err("is a local path, which is not allowed here; name a GitHub repository (an operator can allow local paths with CODECOURIER_ALLOW_LOCAL_REPOS=true)".into());
    }
    let path = path
        .canonicalize()
        .map_err(|_| "does not exist on this machine".to_string())?;
    let is_worktree = path.join(".git").exists();
    let is_bare = path.join("HEAD").is_file() && path.join("objects").is_dir();
    if !path.is_dir() || !(is_worktree || is_bare) {
        return Err(
            "is not a git repository (no .git inside); run git init there or give another path"
                .into(),
        );
    }
    Ok(RepoRef::Local { path })
}

fn is_github_owner(owner: &str) -> bool {
    (1..=39).contains(&owner.len())
        && !owner.starts_with('-')
        && owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn is_github_repo_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> LaunchInput {
        LaunchInput {
            prompt: Some("Add a README".into()),
            repo: Some("acme/widgets".into()),
            ..Default::default()
        }
    }

    fn check(input: LaunchInput) -> Result<LaunchRequest, ValidationErrors> {
        input.validate(&Catalog::built_in(), true)
    }

    fn error_for(input: LaunchInput, field: &str) -> String {
        let errors = check(input).unwrap_err();
        errors
            .field(field)
            .unwrap_or_else(|| panic!("no error for {field}: {errors}"))
            .to_string()
    }

    #[test]
    fn each_model_has_its_default_effort_and_an_explicit_one_wins() {
        let with = |model: &str, effort: Option<&str>| {
            check(LaunchInput {
                model: Some(model.into()),
                effort: effort.map(str::to_string),
                ..input()
            })
            .unwrap()
            .effort
        };
        assert_eq!(with("claude-opus-4-6", None), Effort::High);
        assert_eq!(with("claude-sonnet-4-6", Some("")), Effort::Medium);
        assert_eq!(with("claude-haiku-4-5", None), Effort::None);
        assert_eq!(with("claude-opus-4-6", Some("low")), Effort::Low);
        assert_eq!(with("claude-opus-4-6", Some("none")), Effort::None);
        let codex = check(LaunchInput {
            tool: Some("codex".into()),
            model: Some("gpt-5.4-codex".into()),
            ..input()
        })
        .unwrap();
        assert_eq!(codex.effort, Effort::High);
        let opencode = check(LaunchInput {
            tool: Some("opencode".into()),
            ..input()
        })
        .unwrap();
        assert_eq!(opencode.effort, Effort::None);
    }

    #[test]
    fn defaults_come_from_the_catalog() {
        let r = check(input()).unwrap();
        assert_eq!(r.tool, "claude-code");
        assert_eq!(r.model, "claude-sonnet-4-6");
        assert_eq!(r.effort, Effort::Medium);
        assert_eq!(
            r.resources,
            Resources {
                memory_mb: 1024,
                cpus: 2,
                timeout_ms: 900_000
            }
        );
        assert_eq!(r.template.to_string(), "codecourier-claude-code");
        assert_eq!(r.checker_template(), &r.template);
        assert_eq!(r.base_branch, None);
    }

    #[test]
    fn memory_boundaries() {
        for (mb, ok) in [
            (255, false),
            (256, true),
            (8192, true),
            (8193, false),
            (-1, false),
        ] {
            let result = check(LaunchInput {
                memory_mb: Some(mb),
                ..input()
            });
            assert_eq!(result.is_ok(), ok, "{mb} MB");
        }
        let msg = error_for(
            LaunchInput {
                memory_mb: Some(100),
                ..input()
            },
            "memory_mb",
        );
        assert_eq!(
            msg,
            "memory_mb: 100 is outside the allowed range 256–8192 MB (default 1024)"
        );
    }

    #[test]
    fn cpu_boundaries() {
        for (cpus, ok) in [(0, false), (1, true), (8, true), (9, false)] {
            let result = check(LaunchInput {
                cpus: Some(cpus),
                ..input()
            });
            assert_eq!(result.is_ok(), ok, "{cpus} CPUs");
        }
        assert!(error_for(
            LaunchInput {
                cpus: Some(9),
                ..input()
            },
            "cpus"
        )
        .contains("1–8"));
    }

    #[test]
    fn timeout_boundaries_and_forms() {
        for (text, expected) in [
            ("59s", None),
            ("1m", Some(60_000)),
            ("60000", Some(60_000)),
            ("90s", Some(90_000)),
            ("15m", Some(900_000)),
            ("2h", Some(7_200_000)),
            ("4h", Some(14_400_000)),
            ("4h 1s", None),
            ("4h1s", None),
            ("59999", None),
        ] {
            let result = check(LaunchInput {
                timeout: Some(text.into()),
                ..input()
            });
            assert_eq!(
                result.ok().map(|r| r.resources.timeout_ms),
                expected,
                "{text}"
            );
        }
        let msg = error_for(
            LaunchInput {
                timeout: Some("59s".into()),
                ..input()
            },
            "timeout",
        );
        assert!(
            msg.contains("1 minute to 4 hours (default 15 minutes)"),
            "{msg}"
        );
        let msg = error_for(
            LaunchInput {
                timeout: Some("soon".into()),
                ..input()
            },
            "timeout",
        );
        assert!(msg.contains("\"soon\" is not a duration"), "{msg}");
    }

    #[test]
    fn limits_are_written_in_words() {
        let minutes = |n: u64| human_ms(n * 60_000);
        assert_eq!(minutes(1), "1 minute");
        assert_eq!(minutes(21), "21 minutes");
        assert_eq!(minutes(60), "1 hour");
        assert_eq!(minutes(90), "90 minutes");
        assert_eq!(minutes(120), "2 hours");
        assert_eq!(minutes(21 * 60), "21 hours");
        assert_eq!(human_ms(90_500), "1m 30s 500ms");
    }

    #[test]
    fn effort_per_tool() {
        let catalog = Catalog::built_in();
        for tool in &catalog.tools {
            for effort in Effort::ALL {
                let result = check(LaunchInput {
                    tool: Some(tool.id.clone()),
                    effort: Some(effort.as_str().to_uppercase()),
                    ..input()
                });
                let allowed = effort == Effort::None || tool.capabilities.effort;
                assert_eq!(result.is_ok(), allowed, "{} {effort}", tool.id);
                if allowed {
                    assert_eq!(result.unwrap().effort, effort);
                } else {
                    let msg = result.unwrap_err().to_string();
                    assert!(msg.contains("not available for OpenCode"), "{msg}");
                }
            }
        }
        let msg = error_for(
            LaunchInput {
                effort: Some("extreme".into()),
                ..input()
            },
            "effort",
        );
        assert!(msg.contains("high, medium, low or none"), "{msg}");
    }

    #[test]
    fn model_must_belong_to_the_tool() {
        assert_eq!(
            check(LaunchInput {
                model: Some("claude-opus-4-6".into()),
                ..input()
            })
            .unwrap()
            .model,
            "claude-opus-4-6"
        );
        let msg = error_for(
            LaunchInput {
                model: Some("gpt-5.4".into()),
                ..input()
            },
            "model",
        );
        assert!(
            msg.contains("not a Claude Code model") && msg.contains("claude-sonnet-4-6"),
            "{msg}"
        );
        let msg = error_for(
            LaunchInput {
                tool: Some("codex".into()),
                model: Some("openai/gpt-5.4".into()),
                ..input()
            },
            "model",
        );
        assert!(msg.contains("not a Codex model"), "{msg}");
        let r = check(LaunchInput {
            tool: Some("codex".into()),
            ..input()
        })
        .unwrap();
        assert_eq!(
            (r.model.as_str(), r.template.to_string().as_str()),
            ("gpt-5.4", "codecourier-codex")
        );
    }

    #[test]
    fn open_model_tools_take_any_openrouter_id() {
        for tool in ["opencode", "pi"] {
            for model in ["deepseek/deepseek-r1:free", "openrouter/qwen/qwen3-coder"] {
                let r = check(LaunchInput {
                    tool: Some(tool.into()),
                    model: Some(model.into()),
                    ..input()
                });
                assert_eq!(r.unwrap().model, model);
            }
            for model in ["gemini", "/x", "a//b", "a/b c"] {
                let msg = error_for(
                    LaunchInput {
                        tool: Some(tool.into()),
                        model: Some(model.into()),
                        ..input()
                    },
                    "model",
                );
                assert!(msg.contains("any OpenRouter id"), "{msg}");
            }
        }
    }

    #[test]
    fn unknown_tool_lists_the_choices() {
        let msg = error_for(
            LaunchInput {
                tool: Some("aider".into()),
                ..input()
            },
            "tool",
        );
        assert_eq!(
            msg,
            "tool: \"aider\" is not a tool; choose claude-code (default), opencode, codex, pi"
        );
        let msg = error_for(
            LaunchInput {
                checker_cli_id: Some("aider".into()),
                ..input()
            },
            "checker_cli_id",
        );
        assert!(msg.contains("\"aider\" is not a tool"));
    }

    #[test]
    fn templates_are_normalised_and_checked() {
        let r = check(LaunchInput {
            template: Some("Acme/Node-20:Default".into()),
            checker_template_id: Some("checker:v2".into()),
            designer_cli_id: Some("pi".into()),
            ..input()
        })
        .unwrap();
        assert_eq!(r.template.to_string(), "acme/node-20");
        assert_eq!(r.checker_template().to_string(), "checker:v2");
        assert_eq!(r.designer_cli_id.as_deref(), Some("pi"));
        let msg = error_for(
            LaunchInput {
                template: Some("my template".into()),
                ..input()
            },
            "template",
        );
        assert!(
            msg.contains("\"my template\"") && msg.contains("[namespace/]alias[:tag]"),
            "{msg}"
        );
    }

    #[test]
    fn pull_request_policy_defaults_to_draft() {
        assert_eq!(check(input()).unwrap().pr, PrPolicy::Draft);
        assert_eq!(
            check(LaunchInput {
                pr: Some("READY".into()),
                ..input()
            })
            .unwrap()
            .pr,
            PrPolicy::Ready
        );
        assert_eq!(
            check(LaunchInput {
                pr: Some("none".into()),
                ..input()
            })
            .unwrap()
            .pr,
            PrPolicy::None
        );
        let msg = error_for(
            LaunchInput {
                pr: Some("auto".into()),
                ..input()
            },
            "pr",
        );
        assert!(
            msg.contains("choose draft (default), ready or none"),
            "{msg}"
        );
    }

    #[test]
    fn prompt_must_have_content() {
        assert!(error_for(
            LaunchInput {
                prompt: Some("  \n".into()),
                ..input()
            },
            "prompt"
        )
        .contains("empty"));
        assert!(error_for(
            LaunchInput {
                prompt: None,
                ..input()
            },
            "prompt"
        )
        .contains("empty"));
        let r = check(LaunchInput {
            prompt: Some("--force everything".into()),
            ..input()
        })
        .unwrap();
        assert_eq!(r.prompt, "--force everything");
        let big = "x".repeat(MAX_PROMPT_BYTES + 1);
        assert!(error_for(
            LaunchInput {
                prompt: Some(big),
                ..input()
            },
            "prompt"
        )
        .contains("limit"));
    }

    #[test]
    fn repo_forms() {
        let gh = |o: &str, n: &str| RepoRef::Github {
            owner: o.into(),
            name: n.into(),
        };
        for (text, expected) in [
            ("acme/widgets", gh("acme", "widgets")),
            ("https://github.com/acme/widgets", gh("acme", "widgets")),
            ("https://github.com/acme/widgets.git", gh("acme", "widgets")),
            ("https://github.com/acme/widgets/", gh("acme", "widgets")),
            ("git@github.com:acme/my.repo.git", gh("acme", "my.repo")),
            (
                "ssh://git@github.com/acme/widgets.git",
                gh("acme", "widgets"),
            ),
        ] {
            assert_eq!(parse_repo(text, false).unwrap(), expected, "{text}");
        }
        for bad in [
            "acme",
            "acme/",
            "/acme",
            "https://gitlab.com/acme/widgets",
            "a/b/c",
            "-x/y",
            "acme/..",
        ] {
            assert!(parse_repo(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn local_repos_need_permission_and_a_git_repository() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().to_str().unwrap().to_string();
        assert!(parse_repo(&plain, true)
            .unwrap_err()
            .contains("not a git repository"));
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        let expected = RepoRef::Local {
            path: dir.path().canonicalize().unwrap(),
        };
        assert_eq!(parse_repo(&plain, true).unwrap(), expected);
        assert_eq!(
            parse_repo(&format!("file://{plain}"), true).unwrap(),
            expected
        );
        assert!(parse_repo(&plain, false)
            .unwrap_err()
            .contains("CODECOURIER_ALLOW_LOCAL_REPOS"));
        assert!(parse_repo("./no/such/repo", true)
            .unwrap_err()
            .contains("does not exist"));
    }

    #[test]
    fn branch_names() {
        for good in ["main", "release/1.2", "feature_x-y"] {
            assert!(is_valid_branch_name(good), "{good}");
        }
        for bad in [
            "", "a b", "-x", "a..b", "x.lock", "x/", "a~1", "a:b", "@", "a@{b",
        ] {
            assert!(!is_valid_branch_name(bad), "{bad}");
        }
    }

    #[test]
    fn env_pairs_never_echo_values() {
        let r = check(LaunchInput {
            env: vec![
                "ANTHROPIC_BASE_URL=http://127.0.0.1:9/x=y".into(),
                "EMPTY=".into(),
            ],
            ..input()
        })
        .unwrap();
        assert_eq!(r.env[0].0, "ANTHROPIC_BASE_URL");
        assert_eq!(r.env[0].1.expose(), "http://127.0.0.1:9/x=y");
        let errors = check(LaunchInput {
            env: vec![
                "sk-secret-value".into(),
                "1BAD=sk-other".into(),
                "A=1".into(),
                "A=2".into(),
            ],
            ..input()
        })
        .unwrap_err()
        .to_string();
        assert!(!errors.contains("sk-"), "{errors}");
        assert!(
            errors.contains("(value hidden)")
                && errors.contains("\"1BAD\"")
                && errors.contains("A is given twice")
        );
    }

    #[test]
    fn all_errors_are_reported_together() {
        let errors = check(LaunchInput {
            prompt: None,
            repo: None,
            memory_mb: Some(1),
            cpus: Some(100),
            ..Default::default()
        })
        .unwrap_err();
        let fields: Vec<_> = errors.0.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["prompt", "repo", "memory_mb", "cpus"]);
    }
}
