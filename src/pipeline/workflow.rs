//! Running a workflow: a designer builds, an optimizer refines, a checker verifies and gives a
//! verdict; on a failing verdict the optimizer runs again with the findings, up to a round limit.
//! This module holds the verdict's form and check, the step prompts, and which step comes next —
//! all pure; `job/` runs the steps. The definitions are in `model::workflow`.

use std::fmt::Write as _;

use serde_json::Value;

use crate::model::workflow::{StepKind, Task, Verdict};

/// The JSON schema of a checker's answer.
pub fn verdict_schema() -> Value {
    serde_json::json!({
        "type": "object",
        "required": ["verdict", "findings"],
        "properties": {
            "verdict": {"type": "string", "enum": ["pass", "fail"]},
            "findings": {"type": "array", "items": {"type": "string", "minLength": 1}}
        }
    })
}

/// How the checker is told to give its verdict.
pub fn verdict_instructions(structured_output: bool) -> String {
    if structured_output {
        "Give your verdict with the StructuredOutput tool: \"pass\" when the work does what the task \
asks and its tests pass, else \"fail\" with one finding per problem the optimizer must fix."
            .into()
    } else {
        format!(
            "End your final answer with exactly one fenced ```json block following this JSON schema: \
{} — \"pass\" when the work does what the task asks and its tests pass, else \"fail\" with one \
finding per problem the optimizer must fix.",
            verdict_schema()
        )
    }
}

/// Reads a checker's verdict from its structured output or the last fenced JSON block of its text.
pub fn read_verdict(structured: Option<&Value>, text: &str) -> Result<Verdict, Vec<String>> {
    let value = match structured {
        Some(v) => v.clone(),
        None => super::scan::json_in_text(text).map_err(|p| {
            p.into_iter()
                .map(|p| p.replace("the issues", "the verdict"))
                .collect::<Vec<_>>()
        })?,
    };
    let mut problems = Vec::new();
    let pass = match value.get("verdict").and_then(Value::as_str) {
        Some("pass") => Some(true),
        Some("fail") => Some(false),
        Some(other) => {
            problems.push(format!("verdict: \"{other}\" is not pass or fail"));
            None
        }
        None => {
            problems.push("verdict: is missing (pass or fail)".into());
            None
        }
    };
    let mut findings = Vec::new();
    match value.get("findings") {
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item.as_str().map(str::trim) {
                    Some(text) if !text.is_empty() => findings.push(text.to_string()),
                    _ => problems.push(format!("findings[{i}]: must be non-empty text")),
                }
            }
        }
        None | Some(Value::Null) => {
            problems.push("findings: is missing (a list, empty on pass)".into())
        }
        Some(_) => problems.push("findings: must be a list of text".into()),
    }
    if pass == Some(false) && findings.is_empty() && problems.is_empty() {
        problems.push("findings: a failing verdict must say what to fix".into());
    }
    match (pass, problems.is_empty()) {
        (Some(pass), true) => Ok(Verdict { pass, findings }),
        _ => Err(problems),
    }
}

/// The repair request after an unusable verdict.
pub fn verdict_repair_prompt(problems: &[String], raw: &str, structured_output: bool) -> String {
    let mut text = String::from("Your verdict could not be read:\n");
    for p in problems {
        let _ = writeln!(text, "- {p}");
    }
    let _ = write!(
        text,
        "\nGive it again, without checking further unless you must. {}\n\nYour previous answer was:\n{}",
        verdict_instructions(structured_output),
        crate::agent::clip(raw, 16 * 1024)
    );
    text
}

/// The prompt of one step: the persona, the task, and for an optimizer after a failing check, the
/// checker's findings.
pub fn step_prompt(
    kind: StepKind,
    persona: &str,
    task: &Task,
    findings: &[String],
    structured_output: bool,
) -> String {
    let mut text = format!("{persona}\n\n## The task\n\n{}\n", task.prompt.trim());
    if kind == StepKind::Optimizer && !findings.is_empty() {
        text.push_str("\n## What the checker found\n\n");
        for f in findings {
            let _ = writeln!(text, "- {f}");
        }
        text.push_str("\nFix every finding.\n");
    }
    if kind == StepKind::Checker {
        let _ = write!(text, "\n{}\n", verdict_instructions(structured_output));
    }
    text
}

/// How a recorded step ended, as the next-step decision sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum StepEnd {
    Completed {
        verdict: Option<Verdict>,
    },
    Failed {
        error: String,
    },
    Stopped,
    /// CodeCourier stopped while it ran: it runs again.
    Interrupted,
}

/// A recorded step, for the decision.
#[derive(Debug, Clone, PartialEq)]
pub struct DoneStep {
    pub kind: StepKind,
    pub round: u32,
    pub end: StepEnd,
}

/// What a run does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Run {
        kind: StepKind,
        round: u32,
        /// The checker's findings the optimizer must fix.
        findings: Vec<String>,
    },
    Passed,
    Failed {
        error: String,
        findings: Vec<String>,
    },
    Stopped,
}

/// The next step after the recorded ones (in order): designer, then optimizer and checker rounds
/// until the checker passes or the round limit is reached. An interrupted step runs again; finished
/// steps never do.
pub fn next_step(done: &[DoneStep], max_rounds: u32) -> Next {
    let Some(last) = done.iter().rev().find(|s| s.end != StepEnd::Interrupted) else {
        return match done.last() {
            Some(interrupted) => Next::Run {
                kind: interrupted.kind,
                round: interrupted.round,
                findings: Vec::new(),
            },
            None => Next::Run {
                kind: StepKind::Designer,
                round: 0,
                findings: Vec::new(),
            },
        };
    };
    // A step interrupted after the last finished one runs again, with what it had then.
    if let Some(interrupted) = done.last().filter(|s| s.end == StepEnd::Interrupted) {
        let findings = match (&last.kind, &last.end) {
            (StepKind::Checker, StepEnd::Completed { verdict: Some(v) }) if !v.pass => {
                v.findings.clone()
            }
            _ => Vec::new(),
        };
        return Next::Run {
            kind: interrupted.kind,
            round: interrupted.round,
            findings,
        };
    }
    match &last.end {
        StepEnd::Failed { error } => Next::Failed {
            error: format!("the {} step failed: {error}", last.kind),
            findings: Vec::new(),
        },
        StepEnd::Stopped => Next::Stopped,
        StepEnd::Interrupted => unreachable!("skipped above"),
        StepEnd::Completed { verdict } => match last.kind {
            StepKind::Designer => Next::Run {
                kind: StepKind::Optimizer,
                round: 1,
                findings: Vec::new(),
            },
            StepKind::Optimizer => Next::Run {
                kind: StepKind::Checker,
                round: last.round,
                findings: Vec::new(),
            },
            StepKind::Checker => match verdict {
                Some(v) if v.pass => Next::Passed,
                Some(v) if last.round < max_rounds => Next::Run {
                    kind: StepKind::Optimizer,
                    round: last.round + 1,
                    findings: v.findings.clone(),
                },
                Some(v) => Next::Failed {
                    error: format!(
                        "the checker still found problems after {} optimizer round{}",
                        last.round,
                        if last.round == 1 { "" } else { "s" }
                    ),
                    findings: v.findings.clone(),
                },
                None => Next::Failed {
                    error: "the checker gave no verdict".into(),
                    findings: Vec::new(),
                },
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn done(kind: StepKind, round: u32, end: StepEnd) -> DoneStep {
        DoneStep { kind, round, end }
    }

    fn ok() -> StepEnd {
        StepEnd::Completed { verdict: None }
    }

    fn verdict(pass: bool) -> StepEnd {
        StepEnd::Completed {
            verdict: Some(Verdict {
                pass,
                findings: if pass {
                    vec![]
                } else {
                    vec!["tests fail".into()]
                },
            }),
        }
    }

    #[test]
    fn rounds_go_designer_optimizer_checker_until_a_pass() {
        use StepKind::*;
        assert!(matches!(
            next_step(&[], 3),
            Next::Run {
                kind: Designer,
                round: 0,
                ..
            }
        ));
        let mut steps = vec![done(Designer, 0, ok())];
        assert!(matches!(
            next_step(&steps, 3),
            Next::Run {
                kind: Optimizer,
                round: 1,
                ..
            }
        ));
        steps.push(done(Optimizer, 1, ok()));
        assert!(matches!(
            next_step(&steps, 3),
            Next::Run {
                kind: Checker,
                round: 1,
                ..
            }
        ));
        steps.push(done(Checker, 1, verdict(false)));
        assert_eq!(
            next_step(&steps, 3),
            Next::Run {
                kind: Optimizer,
                round: 2,
                findings: vec!["tests fail".into()]
            }
        );
        steps.push(done(Optimizer, 2, ok()));
        steps.push(done(Checker, 2, verdict(true)));
        assert_eq!(next_step(&steps, 3), Next::Passed);
    }

    #[test]
    fn the_round_limit_ends_a_run_failed_with_the_findings() {
        use StepKind::*;
        let steps = vec![
            done(Designer, 0, ok()),
            done(Optimizer, 1, ok()),
            done(Checker, 1, verdict(false)),
            done(Optimizer, 2, ok()),
            done(Checker, 2, verdict(false)),
        ];
        match next_step(&steps, 2) {
            Next::Failed { error, findings } => {
                assert!(error.contains("after 2 optimizer rounds"), "{error}");
                assert_eq!(findings, ["tests fail"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_interrupted_step_runs_again_and_finished_ones_never() {
        use StepKind::*;
        let steps = vec![
            done(Designer, 0, ok()),
            done(Optimizer, 1, ok()),
            done(Checker, 1, verdict(false)),
            done(Optimizer, 2, StepEnd::Interrupted),
        ];
        assert_eq!(
            next_step(&steps, 3),
            Next::Run {
                kind: Optimizer,
                round: 2,
                findings: vec!["tests fail".into()]
            }
        );
        assert!(matches!(
            next_step(&[done(Designer, 0, StepEnd::Interrupted)], 3),
            Next::Run {
                kind: Designer,
                round: 0,
                ..
            }
        ));
        let failed = vec![done(
            Designer,
            0,
            StepEnd::Failed {
                error: "boom".into(),
            },
        )];
        assert!(
            matches!(next_step(&failed, 3), Next::Failed { error, .. } if error == "the designer step failed: boom")
        );
        assert_eq!(
            next_step(&[done(Designer, 0, StepEnd::Stopped)], 3),
            Next::Stopped
        );
    }

    #[test]
    fn verdicts_are_read_and_checked() {
        let v = read_verdict(
            Some(&json!({"verdict": "fail", "findings": ["no tests"]})),
            "",
        )
        .unwrap();
        assert_eq!(
            v,
            Verdict {
                pass: false,
                findings: vec!["no tests".into()]
            }
        );
        let text = "Looks fine.\n```json\n{\"verdict\": \"pass\", \"findings\": []}\n```";
        assert!(read_verdict(None, text).unwrap().pass);
        let problems =
            read_verdict(Some(&json!({"verdict": "maybe", "findings": [""]})), "").unwrap_err();
        assert_eq!(
            problems,
            [
                "verdict: \"maybe\" is not pass or fail",
                "findings[0]: must be non-empty text"
            ]
        );
        let problems =
            read_verdict(Some(&json!({"verdict": "fail", "findings": []})), "").unwrap_err();
        assert_eq!(
            problems,
            ["findings: a failing verdict must say what to fix"]
        );
        assert!(read_verdict(None, "All good!").is_err());
    }
}
