//! Issue sessions: a read-only run whose agent explores the repository and answers with a list of
//! issues in one fixed JSON form. The answer is checked here, field by field, before anything is
//! stored or shown: a list is either whole and valid or it is not used.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{
    Catalog, FieldError, LaunchInput, LaunchMode, LaunchRequest, PrPolicy, RepoRef, ScanTask, Tool,
    ValidationErrors,
};
use crate::store::IssueSession;

pub const DEFAULT_MAX_ISSUES: u32 = 20;
pub const MAX_MAX_ISSUES: u32 = 100;
pub const MAX_FOCUS_CHARS: usize = 500;
/// How much of an unusable answer the repair request quotes back to the agent.
const REPAIR_QUOTE_BYTES: usize = 32 * 1024;
/// At most this many problems are listed in a repair request or an error.
const SHOWN_PROBLEMS: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn emoji(self) -> &'static str {
        match self {
            Severity::Critical => "🟥",
            Severity::High => "🟧",
            Severity::Medium => "🟨",
            Severity::Low => "🟦",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub const EFFORTS: [&str; 4] = ["trivial", "small", "medium", "large"];

/// A place in the repository an issue points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRange {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_line: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_line: Option<u32>,
}

impl std::fmt::Display for FileRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.start_line, self.end_line) {
            (Some(a), Some(b)) if a != b => write!(f, "{}:{a}-{b}", self.path),
            (Some(a), _) => write!(f, "{}:{a}", self.path),
            _ => f.write_str(&self.path),
        }
    }
}

/// One issue as the scanning agent reported it (and as it is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScannedIssue {
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub category: String,
    pub files: Vec<FileRange>,
    pub evidence: String,
    pub suggested_fix: String,
    pub effort: String,
}

/// Where an issue session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueSessionStatus {
    Running,
    Completed,
    Failed,
    Stopped,
}

impl IssueSessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueSessionStatus::Running => "running",
            IssueSessionStatus::Completed => "completed",
            IssueSessionStatus::Failed => "failed",
            IssueSessionStatus::Stopped => "stopped",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            IssueSessionStatus::Running,
            IssueSessionStatus::Completed,
            IssueSessionStatus::Failed,
            IssueSessionStatus::Stopped,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for IssueSessionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON schema of a scan's answer: given to CLIs that enforce one, and quoted to the others.
pub fn answer_schema() -> Value {
    let text = |min: u64| serde_json::json!({"type": "string", "minLength": min});
    serde_json::json!({
        "type": "object",
        "required": ["issues"],
        "properties": {
            "issues": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["title", "description", "severity", "category", "files", "evidence", "suggested_fix", "effort"],
                    "properties": {
                        "title": {"type": "string", "minLength": 1, "maxLength": 200},
                        "description": text(1),
                        "severity": {"type": "string", "enum": Severity::ALL.map(Severity::as_str)},
                        "category": {"type": "string", "minLength": 1, "maxLength": 50},
                        "files": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["path"],
                                "properties": {
                                    "path": text(1),
                                    "start_line": {"type": "integer", "minimum": 1},
                                    "end_line": {"type": "integer", "minimum": 1}
                                }
                            }
                        },
                        "evidence": text(0),
                        "suggested_fix": text(0),
                        "effort": {"type": "string", "enum": EFFORTS}
                    }
                }
            }
        }
    })
}

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

/// A scan's checked answer: the issues to keep, and how many beyond the limit were left out.
#[derive(Debug, Clone, PartialEq)]
pub struct IssueList {
    pub issues: Vec<ScannedIssue>,
    pub dropped: usize,
}

/// Reads the agent's answer: the structured output when the CLI gave one, else the last fenced
/// JSON block of its final text (or the whole text when it is JSON). Every problem is reported, so
/// the repair request can name them all.
pub fn read_answer(
    structured: Option<&Value>,
    text: &str,
    max_issues: u32,
) -> Result<IssueList, Vec<String>> {
    let value = match structured {
        Some(v) => v.clone(),
        None => json_in_text(text)?,
    };
    let items = match &value {
        Value::Object(map) => match map.get("issues") {
            Some(Value::Array(items)) => items.clone(),
            Some(_) => return Err(vec!["\"issues\" must be a list".into()]),
            None => return Err(vec!["the answer has no \"issues\" list".into()]),
        },
        // A bare list is the list.
        Value::Array(items) => items.clone(),
        _ => {
            return Err(vec![
                "the answer must be an object {\"issues\": [...]}".into()
            ])
        }
    };
    let mut problems = Vec::new();
    let mut issues = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match read_issue(item) {
            Ok(issue) => issues.push(issue),
            Err(mut found) => {
                for p in &mut found {
                    *p = format!("issues[{i}]{p}");
                }
                problems.append(&mut found);
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // Most severe first, the agent's order within a severity.
    issues.sort_by_key(|i| i.severity);
    let keep = issues.len().min(max_issues as usize);
    let dropped = issues.len() - keep;
    issues.truncate(keep);
    Ok(IssueList { issues, dropped })
}

/// The last fenced block that is JSON, else the whole text.
pub(crate) fn json_in_text(text: &str) -> Result<Value, Vec<String>> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let body_start = after.find('\n').map(|n| n + 1).unwrap_or(after.len());
        let body = &after[body_start..];
        let Some(close) = body.find("```") else { break };
        blocks.push(&body[..close]);
        rest = &body[close + 3..];
    }
    let mut last_error = None;
    for block in blocks.iter().rev() {
        match serde_json::from_str::<Value>(block.trim()) {
            Ok(v) => return Ok(v),
            Err(e) => last_error = Some(e),
        }
    }
    if let Ok(v) = serde_json::from_str::<Value>(text.trim()) {
        return Ok(v);
    }
    Err(vec![match (blocks.is_empty(), last_error) {
        (true, _) => "the answer holds no fenced ```json block with the issues".into(),
        (false, Some(e)) => format!("the fenced JSON block is not valid JSON: {e}"),
        (false, None) => "the fenced block holds no JSON".into(),
    }])
}

/// One issue, checked against the schema; problems are given as `.field: what is wrong`.
fn read_issue(item: &Value) -> Result<ScannedIssue, Vec<String>> {
    let mut problems = Vec::new();
    let Some(map) = item.as_object() else {
        return Err(vec![": must be an object".into()]);
    };
    let mut string = |field: &str, min: usize, max: Option<usize>| -> String {
        match map.get(field) {
            None | Some(Value::Null) => {
                problems.push(format!(".{field}: is missing"));
                String::new()
            }
            Some(Value::String(s)) => {
                let chars = s.trim().chars().count();
                if chars < min {
                    problems.push(format!(".{field}: is empty"));
                } else if let Some(max) = max.filter(|m| chars > *m) {
                    problems.push(format!(".{field}: is {chars} characters; at most {max}"));
                }
                s.trim().to_string()
            }
            Some(other) => {
                problems.push(format!(".{field}: must be text, not {}", kind(other)));
                String::new()
            }
        }
    };
    let title = string("title", 1, Some(200));
    let description = string("description", 1, None);
    let category = string("category", 1, Some(50));
    let evidence = string("evidence", 0, None);
    let suggested_fix = string("suggested_fix", 0, None);
    let severity_text = string("severity", 1, None);
    let effort = string("effort", 1, None);
    let severity = Severity::parse(&severity_text.to_lowercase());
    if severity.is_none() && !severity_text.is_empty() {
        problems.push(format!(
            ".severity: \"{severity_text}\" is not one of critical, high, medium, low"
        ));
    }
    if !effort.is_empty() && !EFFORTS.contains(&effort.to_lowercase().as_str()) {
        problems.push(format!(
            ".effort: \"{effort}\" is not one of {}",
            EFFORTS.join(", ")
        ));
    }
    let mut files = Vec::new();
    match map.get("files") {
        Some(Value::Array(list)) => {
            for (j, f) in list.iter().enumerate() {
                match read_file_range(f) {
                    Ok(range) => files.push(range),
                    Err(p) => problems.push(format!(".files[{j}]{p}")),
                }
            }
        }
        None | Some(Value::Null) => problems.push(".files: is missing".into()),
        Some(other) => problems.push(format!(".files: must be a list, not {}", kind(other))),
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(ScannedIssue {
        title,
        description,
        severity: severity.expect("checked"),
        category: category.to_lowercase(),
        files,
        evidence,
        suggested_fix,
        effort: effort.to_lowercase(),
    })
}

fn read_file_range(item: &Value) -> Result<FileRange, String> {
    let path = match item.get("path") {
        Some(Value::String(p)) if !p.trim().is_empty() => p.trim().to_string(),
        Some(Value::String(_)) => return Err(".path: is empty".into()),
        Some(other) => return Err(format!(".path: must be text, not {}", kind(other))),
        None => return Err(".path: is missing".into()),
    };
    let line = |field: &str| -> Result<Option<u32>, String> {
        match item.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|n| *n >= 1 && *n <= u64::from(u32::MAX))
                .map(|n| Some(n as u32))
                .ok_or_else(|| format!(".{field}: must be a line number (1 or more), not {v}")),
        }
    };
    let start_line = line("start_line")?;
    let end_line = line("end_line")?;
    if let (Some(a), Some(b)) = (start_line, end_line) {
        if b < a {
            return Err(format!(".end_line: {b} comes before start_line {a}"));
        }
    }
    Ok(FileRange {
        path,
        start_line,
        end_line,
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Problems as one sentence for an error message.
pub fn describe_problems(problems: &[String]) -> String {
    let mut text = problems
        .iter()
        .take(SHOWN_PROBLEMS)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN_PROBLEMS {
        let _ = write!(text, "; and {} more", problems.len() - SHOWN_PROBLEMS);
    }
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

    fn issue(title: &str, severity: &str) -> Value {
        json!({
            "title": title, "description": "d", "severity": severity, "category": "Bug",
            "files": [{"path": "src/a.rs", "start_line": 3, "end_line": 9}],
            "evidence": "e", "suggested_fix": "f", "effort": "small"
        })
    }

    #[test]
    fn structured_output_is_read_and_sorted_by_severity() {
        let answer =
            json!({"issues": [issue("b", "low"), issue("a", "critical"), issue("c", "low")]});
        let read = read_answer(Some(&answer), "ignored", 20).unwrap();
        let titles: Vec<&str> = read.issues.iter().map(|i| i.title.as_str()).collect();
        assert_eq!(titles, ["a", "b", "c"]);
        assert_eq!(read.issues[0].category, "bug");
        assert_eq!(read.issues[0].files[0].to_string(), "src/a.rs:3-9");
        assert_eq!(read.dropped, 0);
    }

    #[test]
    fn the_last_fenced_json_block_of_the_text_is_the_answer() {
        let text = format!(
            "I looked around.\n```json\n{{\"not\": \"this\"}}\n```\nFinal:\n```json\n{}\n```\n",
            json!({"issues": [issue("x", "high")]})
        );
        let read = read_answer(None, &text, 20).unwrap();
        assert_eq!(read.issues.len(), 1);
        assert_eq!(read.issues[0].severity, Severity::High);
        // A bare JSON answer and a bare list are accepted too.
        let bare = json!([issue("y", "medium")]).to_string();
        assert_eq!(read_answer(None, &bare, 20).unwrap().issues[0].title, "y");
    }

    #[test]
    fn every_problem_is_named_with_its_place() {
        let answer = json!({"issues": [
            issue("fine", "low"),
            {"title": "", "description": "d", "severity": "urgent", "category": "bug",
             "files": [{"path": "a", "start_line": 9, "end_line": 3}, {"start_line": 0}],
             "evidence": 4, "suggested_fix": "f", "effort": "huge"}
        ]});
        let problems = read_answer(Some(&answer), "", 20).unwrap_err();
        for expected in [
            "issues[1].title: is empty",
            "issues[1].evidence: must be text, not a number",
            "issues[1].severity: \"urgent\" is not one of critical, high, medium, low",
            "issues[1].effort: \"huge\" is not one of trivial, small, medium, large",
            "issues[1].files[0].end_line: 3 comes before start_line 9",
            "issues[1].files[1].path: is missing",
        ] {
            assert!(
                problems.iter().any(|p| p == expected),
                "{expected} not in {problems:?}"
            );
        }
        assert_eq!(problems.len(), 6, "{problems:?}");
    }

    #[test]
    fn answers_without_json_say_so() {
        let problems = read_answer(None, "I found three bugs.", 20).unwrap_err();
        assert_eq!(
            problems,
            ["the answer holds no fenced ```json block with the issues"]
        );
        let problems = read_answer(None, "```json\n{nope\n```", 20).unwrap_err();
        assert!(problems[0].starts_with("the fenced JSON block is not valid JSON"));
        let problems = read_answer(Some(&json!({"found": []})), "", 20).unwrap_err();
        assert_eq!(problems, ["the answer has no \"issues\" list"]);
    }

    #[test]
    fn more_issues_than_asked_keep_the_most_severe() {
        let answer =
            json!({"issues": [issue("l", "low"), issue("c", "critical"), issue("m", "medium")]});
        let read = read_answer(Some(&answer), "", 2).unwrap();
        let titles: Vec<&str> = read.issues.iter().map(|i| i.title.as_str()).collect();
        assert_eq!(titles, ["c", "m"]);
        assert_eq!(read.dropped, 1);
        assert_eq!(
            read_answer(Some(&json!({"issues": []})), "", 2)
                .unwrap()
                .issues,
            []
        );
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
