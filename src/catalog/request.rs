//! `LaunchRequest`: a validated launch with every default filled in, as the pipeline runs it and the
//! store records it (JSON in the sandbox's record; rows written by earlier versions must still read).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::TemplateRef;
use crate::secret::Secret;

/// A validated launch, with every default filled in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchRequest {
    pub prompt: String,
    pub repo: RepoRef,
    /// `None`: the repository's default branch.
    pub base_branch: Option<String>,
    pub tool: String,
    pub model: String,
    pub effort: Effort,
    pub resources: Resources,
    pub template: TemplateRef,
    /// Kept out of the serialised form: values may be secrets, and the store encrypts them.
    #[serde(skip)]
    pub env: Vec<(String, Secret)>,
    pub checker_template_id: Option<TemplateRef>,
    pub designer_cli_id: Option<String>,
    pub optimizer_cli_id: Option<String>,
    pub checker_cli_id: Option<String>,
    /// What to open on GitHub when the run pushed commits.
    #[serde(default)]
    pub pr: PrPolicy,
    /// Set when this launch continues an earlier one on its branch.
    #[serde(default)]
    pub follow_up: Option<FollowUp>,
    /// The most the launch may spend on model calls, as the gateway meters them.
    #[serde(default)]
    pub budget: Budget,
    /// What the launch is for: work on a branch, a scan, or a check.
    #[serde(flatten)]
    pub mode: LaunchMode,
}

/// What a launch is for. A scan and a check are read-only and answer in a fixed form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ModeFields", into = "ModeFields")]
pub enum LaunchMode {
    /// Works on a feature branch and pushes what it changed.
    #[default]
    Work,
    /// An issue scan: read-only, answering with a list of issues.
    Scan(ScanTask),
    /// A workflow's checker: read-only, answering with a verdict on the branch it reads.
    Check,
}

impl LaunchMode {
    /// A scan or a check: nothing the agent changes is kept or pushed.
    pub fn is_read_only(&self) -> bool {
        !matches!(self, LaunchMode::Work)
    }
}

/// How a mode is written in a request's JSON: the two fields records have carried from the start,
/// so rows written before the mode existed read the same, and rows written now read in them.
#[derive(Default, Serialize, Deserialize)]
struct ModeFields {
    #[serde(default)]
    scan: Option<ScanTask>,
    #[serde(default)]
    checker: bool,
}

impl From<ModeFields> for LaunchMode {
    fn from(fields: ModeFields) -> Self {
        match fields {
            ModeFields {
                scan: Some(task), ..
            } => LaunchMode::Scan(task),
            ModeFields { checker: true, .. } => LaunchMode::Check,
            ModeFields { .. } => LaunchMode::Work,
        }
    }
}

impl From<LaunchMode> for ModeFields {
    fn from(mode: LaunchMode) -> Self {
        match mode {
            LaunchMode::Work => ModeFields::default(),
            LaunchMode::Scan(task) => ModeFields {
                scan: Some(task),
                checker: false,
            },
            LaunchMode::Check => ModeFields {
                scan: None,
                checker: true,
            },
        }
    }
}

/// An issue scan's own settings (the prompt already says them to the agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanTask {
    pub max_issues: u32,
    pub focus: Option<String>,
}

/// A launch that continues an earlier one: the same branch, and the agent's session where the CLI
/// can resume it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    /// The launch it continues; none for a workflow's first step on its prepared branch.
    pub of: Option<crate::ids::SandboxId>,
    pub branch: String,
    pub base_branch: String,
    pub session_id: Option<String>,
}

/// What a launch against GitHub opens when it pushed commits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrPolicy {
    /// A draft pull request: reviewers see it, nobody merges it by accident.
    #[default]
    Draft,
    /// A pull request ready for review.
    Ready,
    /// No pull request: the compare link only.
    None,
}

impl PrPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PrPolicy::Draft => "draft",
            PrPolicy::Ready => "ready",
            PrPolicy::None => "none",
        }
    }
}

impl LaunchRequest {
    /// The checker step's template: its own when set, else the main one.
    pub fn checker_template(&self) -> &TemplateRef {
        self.checker_template_id.as_ref().unwrap_or(&self.template)
    }

    /// The scan's settings when this launch is an issue scan.
    pub fn scan_task(&self) -> Option<&ScanTask> {
        match &self.mode {
            LaunchMode::Scan(task) => Some(task),
            _ => None,
        }
    }
}

/// A launch's spending cap: dollars (priced from the catalog), tokens (every kind the provider
/// counts: input, output, cache reads and writes), or both; the first reached ends the launch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
}

impl Budget {
    pub fn is_set(&self) -> bool {
        self.max_cost_usd.is_some() || self.max_tokens.is_some()
    }

    /// A budget in dollars as given (`--max-cost-usd`, a project's or the deployment's default):
    /// a positive, finite amount. `what` names the setting in the error.
    pub fn parse_usd(text: &str, what: &str) -> Result<f64, String> {
        let amount: f64 = text.trim().trim_start_matches('$').parse().map_err(|_| {
            format!("{what} must be an amount in US dollars such as 2.50, not {text:?}")
        })?;
        if !amount.is_finite() || amount <= 0.0 {
            return Err(format!("{what} must be more than $0 (got {text})"));
        }
        Ok(amount)
    }

    /// Why `what` (a budget) is refused on a provider whose egress carries the model calls:
    /// "{what} cannot be enforced on {provider} sandboxes: …".
    pub fn unenforceable(what: &str, provider: &str) -> String {
        format!(
            "{what} cannot be enforced on {provider} sandboxes: their model calls leave through the provider's egress, which CodeCourier's gateway (where spend is metered) does not see"
        )
    }

    /// "$2.00", "25000 tokens", "$2.00 or 25000 tokens".
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .max_cost_usd
            .map(usd)
            .into_iter()
            .chain(self.max_tokens.map(|t| format!("{t} tokens")))
            .collect();
        parts.join(" or ")
    }
}

/// A dollar amount for people: cents from a dime up ("$0.42", "$12.00"), else four decimals
/// ("$0.0036"), so a small spend does not read as nothing.
pub fn usd(amount: f64) -> String {
    if amount >= 0.1 {
        format!("${amount:.2}")
    } else {
        format!("${amount:.4}")
    }
}

/// Metered spend for people: "$0.42 of $2.00 · 12345 tokens", and the models it could not price
/// ("tokens only: no price for gpt-5.4").
pub fn describe_spend(cost_usd: f64, tokens: u64, unpriced: &[String], budget: &Budget) -> String {
    let mut parts = Vec::new();
    let priced_any = cost_usd > 0.0 || unpriced.is_empty();
    if priced_any || budget.max_cost_usd.is_some() {
        parts.push(match budget.max_cost_usd {
            Some(max) => format!("{} of {}", usd(cost_usd), usd(max)),
            None => usd(cost_usd),
        });
    }
    parts.push(match budget.max_tokens {
        Some(max) => format!("{tokens} of {max} tokens"),
        None => format!("{tokens} tokens"),
    });
    let mut text = parts.join(" · ");
    if !unpriced.is_empty() {
        text.push_str(&format!(
            " (tokens only: no price for {})",
            unpriced.join(", ")
        ));
    }
    text
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub memory_mb: u32,
    pub cpus: u32,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effort {
    High,
    Medium,
    Low,
    /// No effort flag: the CLI's own default.
    None,
}

impl Effort {
    pub const ALL: [Effort; 4] = [Effort::High, Effort::Medium, Effort::Low, Effort::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Effort::High => "high",
            Effort::Medium => "medium",
            Effort::Low => "low",
            Effort::None => "none",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

impl fmt::Display for Effort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RepoRef {
    Github {
        owner: String,
        name: String,
    },
    /// An absolute path to a git repository on this machine.
    Local {
        path: PathBuf,
    },
}

impl RepoRef {
    /// A repository as recorded (its `Display` form): `owner/name` or an absolute local path.
    pub fn parse(text: &str) -> Option<Self> {
        super::repo::parse_repo(text, true).ok()
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoRef::Github { owner, name } => write!(f, "{owner}/{name}"),
            RepoRef::Local { path } => write!(f, "{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, LaunchInput};

    fn request() -> LaunchRequest {
        LaunchInput {
            prompt: Some("Add a README".into()),
            repo: Some("acme/widgets".into()),
            env: vec!["TOKEN=sk-xyz".into()],
            ..Default::default()
        }
        .validate(&Catalog::built_in(), true)
        .unwrap()
    }

    #[test]
    fn spend_reads_against_its_budget_and_names_what_has_no_price() {
        let dollars = Budget {
            max_cost_usd: Some(2.0),
            max_tokens: None,
        };
        assert_eq!(
            describe_spend(0.42, 1200, &[], &dollars),
            "$0.42 of $2.00 · 1200 tokens"
        );
        assert_eq!(
            describe_spend(0.0036, 80, &[], &Budget::default()),
            "$0.0036 · 80 tokens"
        );
        let tokens = Budget {
            max_cost_usd: None,
            max_tokens: Some(5000),
        };
        assert_eq!(
            describe_spend(0.0, 1050, &["gpt-5.4".into()], &tokens),
            "1050 of 5000 tokens (tokens only: no price for gpt-5.4)"
        );
        assert_eq!(Budget::parse_usd("$2.5", "the budget"), Ok(2.5));
        for bad in ["0", "-1", "NaN", "inf", "two"] {
            let err = Budget::parse_usd(bad, "the budget").unwrap_err();
            assert!(err.starts_with("the budget must be"), "{err}");
        }
    }

    #[test]
    fn request_serialises_without_env_values() {
        let r = request();
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("sk-xyz"));
        let back: LaunchRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(back.repo, r.repo);
        assert_eq!(back.template, r.template);
        assert_eq!(back.mode, LaunchMode::Work);
    }

    /// Requests as the store holds them: the fields `scan` and `checker` name the mode, and rows
    /// written before either existed have neither.
    #[test]
    fn stored_requests_read_their_mode() {
        let stored = |mode: &str| {
            format!(
                r#"{{"prompt":"Add a README","repo":{{"kind":"github","owner":"acme","name":"widgets"}},"base_branch":"main","tool":"claude-code","model":"claude-sonnet-4-6","effort":"none","resources":{{"memory_mb":1024,"cpus":2,"timeout_ms":900000}},"template":"codecourier-claude-code","checker_template_id":null,"designer_cli_id":null,"optimizer_cli_id":null,"checker_cli_id":null,"pr":"draft","follow_up":null{mode}}}"#
            )
        };
        let read = |json: String| serde_json::from_str::<LaunchRequest>(&json).unwrap().mode;
        assert_eq!(read(stored("")), LaunchMode::Work);
        assert_eq!(
            read(stored(r#","scan":null,"checker":false"#)),
            LaunchMode::Work
        );
        assert_eq!(
            read(stored(
                r#","scan":{"max_issues":20,"focus":"security"},"checker":false"#
            )),
            LaunchMode::Scan(ScanTask {
                max_issues: 20,
                focus: Some("security".into())
            })
        );
        assert_eq!(
            read(stored(r#","scan":null,"checker":true"#)),
            LaunchMode::Check
        );
    }

    #[test]
    fn modes_are_written_as_they_always_were() {
        for (mode, fields) in [
            (LaunchMode::Work, serde_json::json!([null, false])),
            (
                LaunchMode::Scan(ScanTask {
                    max_issues: 5,
                    focus: None,
                }),
                serde_json::json!([{"max_issues": 5, "focus": null}, false]),
            ),
            (LaunchMode::Check, serde_json::json!([null, true])),
        ] {
            let value = serde_json::to_value(LaunchRequest {
                mode: mode.clone(),
                ..request()
            })
            .unwrap();
            assert_eq!(
                serde_json::json!([value["scan"], value["checker"]]),
                fields,
                "{mode:?}"
            );
            assert!(value.get("mode").is_none());
            let back: LaunchRequest = serde_json::from_value(value).unwrap();
            assert_eq!(back.mode, mode);
        }
    }
}
