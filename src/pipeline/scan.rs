//! Issue sessions: a read-only run whose agent explores the repository and answers with a list of
//! issues in one fixed JSON form (checked in `answer`). Here: the scan's input and prompts, and
//! filing chosen issues on GitHub; the issue types are in `model::scan`.

mod answer;

use std::fmt::Write as _;

pub(crate) use answer::json_in_text;
use answer::SHOWN_PROBLEMS;
pub use answer::{answer_schema, describe_problems, read_answer, IssueList};

use crate::catalog::{
    Catalog, FieldError, LaunchInput, LaunchMode, LaunchRequest, PrPolicy, RepoRef, ScanTask, Tool,
    ValidationErrors,
};
use crate::model::scan::{ScannedIssue, Severity};
use crate::store::IssueSession;

pub const DEFAULT_MAX_ISSUES: u32 = 20;
pub const MAX_MAX_ISSUES: u32 = 100;
pub const MAX_FOCUS_CHARS: usize = 500;
/// How much of an unusable answer the repair request quotes back to the agent.
const REPAIR_QUOTE_BYTES: usize = 32 * 1024;

/// What the terminal or the chat asked for, before checking.
#[derive(Debug, Clone, Default)]
pub struct ScanInput {
    pub repo: Option<String>,
    pub base_branch: Option<String>,
    pub focus: Option<String>,
    pub tool: Option<String>,
    pub model: Option<String>,
    pub max_issues: Option<i64>,
    pub timeout: Option<String>,
    pub env: Vec<String>,
}

impl ScanInput {
    /// Checks every field (the launch's own checks, plus focus and max_issues) and reports all
    /// problems at once; the result is a launch request with the scanning prompt, no pull request.
    pub fn validate(
        &self,
        catalog: &Catalog,
        allow_local_repos: bool,
    ) -> Result<LaunchRequest, ValidationErrors> {
        let launch = LaunchInput {
            // Replaced below, once the tool is known.
            prompt: Some("scan".into()),
            repo: self.repo.clone(),
            base_branch: self.base_branch.clone(),
            tool: self.tool.clone(),
            model: self.model.clone(),
            timeout: self.timeout.clone(),
            env: self.env.clone(),
            pr: Some("none".into()),
            ..Default::default()
        };
        let mut errors = Vec::new();
        let focus = self
            .focus
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty());
        if let Some(f) = focus {
            let chars = f.chars().count();
            if chars > MAX_FOCUS_CHARS {
                errors.push(FieldError {
                    field: "focus",
                    message: format!(
                        "is {chars} characters; the limit is {MAX_FOCUS_CHARS} (say it in a few words, such as \"security\" or \"tests\")"
                    ),
                });
            }
        }
        let max_issues = match self.max_issues {
            None => DEFAULT_MAX_ISSUES,
            Some(n) if (1..=i64::from(MAX_MAX_ISSUES)).contains(&n) => n as u32,
            Some(n) => {
                errors.push(FieldError {
                    field: "max_issues",
                    message: format!("is {n}; it must be between 1 and {MAX_MAX_ISSUES}"),
                });
                DEFAULT_MAX_ISSUES
            }
        };
        let request = match launch.validate(catalog, allow_local_repos) {
            Ok(request) if errors.is_empty() => request,
            Ok(_) => return Err(ValidationErrors(errors)),
            Err(ValidationErrors(mut more)) => {
                more.append(&mut errors);
                return Err(ValidationErrors(more));
            }
        };
        let tool = catalog.tool(&request.tool).expect("validated");
        let task = ScanTask {
            max_issues,
            focus: focus.map(str::to_string),
        };
        Ok(LaunchRequest {
            prompt: scan_prompt(&task, tool),
            pr: PrPolicy::None,
            mode: LaunchMode::Scan(task),
            ..request
        })
    }
}

/// How the agent is told to give its answer: through the enforced schema, or a fenced block.
fn answer_instructions(tool: &Tool) -> String {
    if tool.capabilities.structured_output {
        "When you are done, return the list with the StructuredOutput tool (an empty list when you \
found nothing worth reporting)."
            .into()
    } else {
        format!(
            "End your final answer with exactly one fenced ```json block holding an object \
{{\"issues\": [...]}} that follows this JSON schema (an empty list when you found nothing worth \
reporting):\n{}",
            answer_schema()
        )
    }
}

/// The prompt of a scanning run.
pub fn scan_prompt(task: &ScanTask, tool: &Tool) -> String {
    let focus = task
        .focus
        .as_deref()
        .map(|f| format!(", focusing on: {f}"))
        .unwrap_or_default();
    format!(
        "Scan this repository for problems and improvements{focus}.

This is a read-only review: explore the code, read files, run read-only commands (the tests, a \
linter), but change nothing; no change you make is kept.

Report at most {max} issues, most severe first, only ones you have evidence for. For each issue give:
- title: one line;
- description: what is wrong and why it matters;
- severity: critical, high, medium or low;
- category: one word or two, such as security, bug, performance, tests, docs, maintainability;
- files: the paths involved, with start_line and end_line where they apply;
- evidence: what you saw (a quoted line, a command and its output);
- suggested_fix: how to fix it;
- effort: trivial, small, medium or large.

{instructions}",
        max = task.max_issues,
        instructions = answer_instructions(tool),
    )
}

/// The prompt of the one repair request after an unusable answer.
pub fn repair_prompt(task: &ScanTask, tool: &Tool, problems: &[String], raw: &str) -> String {
    let mut text = String::from(
        "Your previous answer to the repository scan could not be used, for these reasons:\n",
    );
    for p in problems.iter().take(SHOWN_PROBLEMS) {
        let _ = writeln!(text, "- {p}");
    }
    let _ = write!(
        text,
        "\nGive the complete list of at most {} issues again, in the required form, without \
exploring further unless you must. {}\n\nYour previous answer was:\n{}",
        task.max_issues,
        answer_instructions(tool),
        crate::agent::clip(raw, REPAIR_QUOTE_BYTES)
    );
    text
}

/// Counts by severity, most severe first, leaving out zeros: "2 critical · 1 low".
pub fn severity_counts<'a>(severities: impl IntoIterator<Item = &'a Severity>) -> String {
    let mut counts = [0usize; 4];
    for s in severities {
        counts[*s as usize] += 1;
    }
    Severity::ALL
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The prompt of a launch that fixes one issue from a scan.
pub fn fix_prompt(issue: &ScannedIssue) -> String {
    // The first line names the branch and the pull request.
    let mut text = format!(
        "Fix: {}\n\nA scan of the repository found this issue.\nSeverity: {} · category: {} · effort: {}\n",
        issue.title, issue.severity, issue.category, issue.effort
    );
    if !issue.files.is_empty() {
        let files: Vec<String> = issue.files.iter().map(|f| f.to_string()).collect();
        let _ = writeln!(text, "Files: {}", files.join(", "));
    }
    let _ = writeln!(text, "\n{}", issue.description);
    if !issue.evidence.is_empty() {
        let _ = writeln!(text, "\nEvidence:\n{}", issue.evidence);
    }
    if !issue.suggested_fix.is_empty() {
        let _ = writeln!(text, "\nSuggested fix:\n{}", issue.suggested_fix);
    }
    text.push_str(
        "\nCheck first that the issue is real. Keep the change focused on it, and add or update tests where that makes sense.",
    );
    text
}

/// What became of one issue sent to GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FiledOutcome {
    Created,
    /// An open issue with the same title was there already: linked, not duplicated.
    Linked,
    /// Filed before, from this session.
    AlreadyFiled,
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Filed {
    pub position: u32,
    pub title: String,
    pub number: Option<u64>,
    pub url: Option<String>,
    pub outcome: FiledOutcome,
}

/// The label every issue filed from a scan carries.
pub const GITHUB_LABEL: &str = "codecourier-scan";

impl super::Launcher {
    /// Files the session's issues at `positions` on GitHub (an open issue with the same title is
    /// linked instead) and records their numbers. Err: nothing could be filed, and why.
    pub async fn file_issues(
        &self,
        session: &IssueSession,
        positions: &[u32],
    ) -> Result<Vec<Filed>, String> {
        let store = self.store();
        let repo = match session.sandbox_id {
            Some(id) => store.get_sandbox(id).await.map_err(|e| e.to_string())?,
            None => None,
        }
        .map(|r| r.request.repo)
        .ok_or_else(|| "the scan's sandbox record is gone".to_string())?;
        let RepoRef::Github { owner, name } = &repo else {
            return Err(format!(
                "{repo} is a local repository: only GitHub repositories get issues"
            ));
        };
        let github = crate::github::connect(&self.github, owner, name)
            .await
            .map_err(|e| e.to_string())?;
        let issues = store.issues(session.id).await.map_err(|e| e.to_string())?;
        let mut filed = Vec::new();
        for position in positions {
            let Some(record) = issues.iter().find(|i| i.position == *position) else {
                continue;
            };
            let mut entry = Filed {
                position: *position,
                title: record.issue.title.clone(),
                number: record.github_issue_number,
                url: record.github_issue_url.clone(),
                outcome: FiledOutcome::AlreadyFiled,
            };
            if record.github_issue_url.is_none() {
                let body = github_issue_body(&record.issue, &session.id.to_string());
                match github
                    .create_issue(&record.issue.title, &body, &[GITHUB_LABEL.to_string()])
                    .await
                {
                    Ok(link) => {
                        entry.outcome = match store
                            .set_issue_filed(record.id, link.number, &link.html_url)
                            .await
                        {
                            // On GitHub, but not in our records: say so, keep going.
                            Err(e) => FiledOutcome::Failed(format!(
                                "#{} is on GitHub, but recording it failed: {e}",
                                link.number
                            )),
                            Ok(()) if link.existed => FiledOutcome::Linked,
                            Ok(()) => FiledOutcome::Created,
                        };
                        entry.number = Some(link.number);
                        entry.url = Some(link.html_url);
                    }
                    Err(e) => entry.outcome = FiledOutcome::Failed(self.redact(&e.to_string())),
                }
            }
            filed.push(entry);
        }
        Ok(filed)
    }
}

/// The body of a GitHub issue filed from a scan.
pub fn github_issue_body(issue: &ScannedIssue, session: &str) -> String {
    let mut text = format!("{}\n\n", issue.description);
    let _ = writeln!(
        text,
        "**Severity:** {} · **Category:** {} · **Effort:** {}",
        issue.severity, issue.category, issue.effort
    );
    if !issue.files.is_empty() {
        let _ = writeln!(text, "\n**Files**");
        for f in &issue.files {
            let _ = writeln!(text, "- `{f}`");
        }
    }
    if !issue.evidence.is_empty() {
        let _ = writeln!(text, "\n**Evidence**\n\n{}", issue.evidence);
    }
    if !issue.suggested_fix.is_empty() {
        let _ = writeln!(text, "\n**Suggested fix**\n\n{}", issue.suggested_fix);
    }
    let _ = write!(
        text,
        "\n---\nFound by a CodeCourier issue scan (session {session})."
    );
    text
}
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issue(title: &str, severity: &str) -> serde_json::Value {
        json!({
            "title": title, "description": "d", "severity": severity, "category": "Bug",
            "files": [{"path": "src/a.rs", "start_line": 3, "end_line": 9}],
            "evidence": "e", "suggested_fix": "f", "effort": "small"
        })
    }

    #[test]
    fn scan_input_is_checked_with_the_launch_fields() {
        let catalog = Catalog::built_in();
        let input = ScanInput {
            repo: Some("acme/widgets".into()),
            focus: Some("security".into()),
            ..Default::default()
        };
        let request = input.validate(&catalog, false).unwrap();
        let task = request.scan_task().cloned().unwrap();
        assert_eq!(task.max_issues, DEFAULT_MAX_ISSUES);
        assert_eq!(request.pr, PrPolicy::None);
        assert!(request.prompt.contains("focusing on: security"));
        assert!(request.prompt.contains("StructuredOutput"));

        let input = ScanInput {
            repo: Some("acme/widgets".into()),
            tool: Some("opencode".into()),
            max_issues: Some(100),
            ..Default::default()
        };
        let request = input.validate(&catalog, false).unwrap();
        assert!(request.prompt.contains("```json"), "{}", request.prompt);

        for (max, ok) in [(0, false), (1, true), (100, true), (101, false)] {
            let input = ScanInput {
                repo: Some("acme/widgets".into()),
                max_issues: Some(max),
                ..Default::default()
            };
            assert_eq!(
                input.validate(&catalog, false).is_ok(),
                ok,
                "max_issues {max}"
            );
        }
        let errors = ScanInput {
            focus: Some("x".repeat(MAX_FOCUS_CHARS + 1)),
            max_issues: Some(0),
            ..Default::default()
        }
        .validate(&catalog, false)
        .unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["repo", "focus", "max_issues"]);
    }

    #[test]
    fn counts_and_prompts_read_well() {
        assert_eq!(
            severity_counts(&[Severity::Low, Severity::Critical, Severity::Critical]),
            "2 critical · 1 low"
        );
        let read = read_answer(
            Some(&json!({"issues": [issue("Null deref", "high")]})),
            "",
            5,
        )
        .unwrap();
        let prompt = fix_prompt(&read.issues[0]);
        assert!(prompt.starts_with("Fix: Null deref\n") && prompt.contains("Files: src/a.rs:3-9"));
        let body = github_issue_body(&read.issues[0], "abc");
        assert!(body.contains("- `src/a.rs:3-9`") && body.contains("session abc"));
    }
}
