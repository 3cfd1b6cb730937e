//! A scan's answer: the JSON form the agent answers in, and the check that reads it field by field.
//! A list is either whole and valid or it is not used; every problem is named, so one repair
//! request can list them all.

use std::fmt::Write as _;

use serde_json::Value;

use crate::model::scan::{FileRange, ScannedIssue, Severity, EFFORTS};

/// At most this many problems are listed in a repair request or an error.
pub(super) const SHOWN_PROBLEMS: usize = 12;

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
}
