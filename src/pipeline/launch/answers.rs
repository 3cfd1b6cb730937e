//! Read-only launches (a scan, a workflow's checker) answer in a fixed form: here the form, the
//! check of an answer with one repair request in the same sandbox, the read-only finish phase, and
//! the end of a scan's issue session.

use super::agent::AgentOutcome;
use super::{count, Ending, Launch, Launcher};
use crate::agent::{self, AgentContext, AgentResult};
use crate::catalog::{LaunchMode, ScanTask, Tool};
use crate::ids::IssueSessionId;
use crate::model::scan::{FileRange, IssueSessionStatus, ScannedIssue};
use crate::model::workflow::Verdict;
use crate::model::{Phase, SandboxStatus};
use crate::pipeline::scan::{self, IssueList};
use crate::pipeline::workflow;
use crate::redact::Redactor;
use crate::store::{Finish, StoreError};

/// The form a read-only launch answers in.
#[derive(Clone, Copy)]
pub(super) enum AnswerForm<'a> {
    Issues(&'a ScanTask),
    Verdict,
}

/// A read-only launch's answer, checked against its form.
pub(super) enum CheckedAnswer {
    Issues(IssueList),
    Verdict(Verdict),
}

impl CheckedAnswer {
    /// A few words for the agent phase's detail.
    pub(super) fn summary(&self) -> String {
        match self {
            CheckedAnswer::Issues(list) => {
                let counts = scan::severity_counts(list.issues.iter().map(|i| &i.severity));
                format!(
                    "{}{}",
                    count(list.issues.len(), "issue"),
                    if counts.is_empty() {
                        String::new()
                    } else {
                        format!(" ({counts})")
                    }
                )
            }
            CheckedAnswer::Verdict(v) => {
                format!("verdict {}", if v.pass { "pass" } else { "fail" })
            }
        }
    }
}

impl<'a> AnswerForm<'a> {
    /// The form a launch in `mode` answers in; none for a launch that works on a branch.
    pub(super) fn of(mode: &'a LaunchMode) -> Option<Self> {
        match mode {
            LaunchMode::Scan(task) => Some(AnswerForm::Issues(task)),
            LaunchMode::Check => Some(AnswerForm::Verdict),
            LaunchMode::Work => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            AnswerForm::Issues(_) => "issue",
            AnswerForm::Verdict => "verdict",
        }
    }

    fn answer_of(self) -> &'static str {
        match self {
            AnswerForm::Issues(_) => "scan's answer",
            AnswerForm::Verdict => "checker's answer",
        }
    }

    pub(super) fn schema(self) -> serde_json::Value {
        match self {
            AnswerForm::Issues(_) => scan::answer_schema(),
            AnswerForm::Verdict => workflow::verdict_schema(),
        }
    }

    fn read(self, result: &AgentResult) -> Result<CheckedAnswer, Vec<String>> {
        let structured = result.structured_output.as_ref();
        match self {
            AnswerForm::Issues(task) => {
                scan::read_answer(structured, &result.text, task.max_issues)
                    .map(CheckedAnswer::Issues)
            }
            AnswerForm::Verdict => {
                workflow::read_verdict(structured, &result.text).map(CheckedAnswer::Verdict)
            }
        }
    }

    fn repair_prompt(self, tool: &Tool, problems: &[String], raw: &str) -> String {
        match self {
            AnswerForm::Issues(task) => scan::repair_prompt(task, tool, problems, raw),
            AnswerForm::Verdict => {
                workflow::verdict_repair_prompt(problems, raw, tool.capabilities.structured_output)
            }
        }
    }
}

impl Launcher {
    /// Reads a read-only launch's answer; an unusable one gets one repair request in the same
    /// sandbox, after which it is used whole or the launch fails with both answers kept.
    pub(super) async fn check_answer(
        &self,
        launch: &Launch<'_>,
        form: AnswerForm<'_>,
        first: AgentOutcome,
    ) -> Result<AgentOutcome, Ending> {
        let problems = match form.read(&first.result) {
            Ok(answer) => {
                return Ok(AgentOutcome {
                    answer: Some(answer),
                    ..first
                })
            }
            Err(problems) => problems,
        };
        let first_raw = raw_answer(&first.result);
        self.note(
            launch,
            format!(
                "the answer did not follow the {} format ({}); asking {} once more",
                form.name(),
                scan::describe_problems(&problems),
                launch.tool.name
            ),
        )
        .await;
        let request = launch.request;
        let session_id = uuid::Uuid::new_v4().to_string();
        let schema = launch.answer_schema();
        let plan = agent::plan(AgentContext {
            tool: launch.tool,
            model: &request.model,
            effort: request.effort,
            session_id: &session_id,
            resume: None,
            keys: launch.agent_keys.clone(),
            env: &launch.agent_env,
            system_prompt: &launch.system_prompt,
            memory: &launch.memory,
            skills: launch.project.skills(),
            commands: launch.project.commands(),
            output_schema: schema.as_deref(),
        })
        .map_err(Ending::failed(Phase::Agent))?;
        let prompt = form.repair_prompt(launch.tool, &problems, &first_raw);
        let second = self.run_agent(launch, plan, &prompt).await?;
        let result = with_usage_of(&first.result, second.result);
        if second.failure.is_some() {
            return Ok(AgentOutcome {
                result,
                failure: second.failure,
                answer: None,
                raw_answer: Some(first_raw),
            });
        }
        match form.read(&result) {
            Ok(answer) => Ok(AgentOutcome {
                result,
                failure: None,
                answer: Some(answer),
                raw_answer: None,
            }),
            Err(problems) => Ok(AgentOutcome {
                failure: Some(format!(
                    "the {} did not follow the {} format, even after one repair request: {}",
                    form.answer_of(),
                    form.name(),
                    scan::describe_problems(&problems)
                )),
                raw_answer: Some(format!(
                    "First answer:\n{first_raw}\n\nAnswer to the repair request:\n{}",
                    raw_answer(&result)
                )),
                result,
                answer: None,
            }),
        }
    }

    /// A read-only finish phase: a scan's issues are stored (redacted); nothing is committed or
    /// pushed.
    pub(super) async fn finish_read_only(&self, launch: &Launch<'_>) -> Result<String, Ending> {
        let changed = self.changed_files(launch).await?;
        let answer = launch.agent.as_ref().and_then(|a| a.answer.as_ref());
        let mut detail = match (answer, launch.issue_session) {
            (Some(CheckedAnswer::Verdict(v)), _) => format!(
                "verdict {}{}",
                if v.pass { "pass" } else { "fail" },
                match v.findings.len() {
                    0 => String::new(),
                    n => format!(" with {}", count(n, "finding")),
                }
            ),
            (Some(CheckedAnswer::Issues(list)), Some(session)) => {
                self.save_issues(launch, session, list).await?
            }
            (Some(CheckedAnswer::Issues(_)), None) => {
                "no issue session to record the issues in".to_string()
            }
            (None, _) => match launch.request.mode {
                LaunchMode::Scan(_) => "no issues recorded".to_string(),
                _ => "no verdict".to_string(),
            },
        };
        if !changed.is_empty() {
            detail.push_str("; the agent changed files, which a read-only scan does not keep");
        }
        let learned = self.save_learnings(launch).await;
        if learned > 0 {
            detail.push_str(&format!("; {}", count(learned, "new learning")));
        }
        detail.push_str("; read-only: nothing pushed");
        Ok(detail)
    }

    /// Stores a scan's issues in its session, redacted. Returns the finish phase's words on them.
    async fn save_issues(
        &self,
        launch: &Launch<'_>,
        session: IssueSessionId,
        list: &IssueList,
    ) -> Result<String, Ending> {
        let redact = |t: &str| launch.redactor.redact(t);
        let issues: Vec<ScannedIssue> = list
            .issues
            .iter()
            .map(|i| ScannedIssue {
                title: redact(&i.title),
                description: redact(&i.description),
                category: redact(&i.category),
                evidence: redact(&i.evidence),
                suggested_fix: redact(&i.suggested_fix),
                files: i
                    .files
                    .iter()
                    .map(|f| FileRange {
                        path: redact(&f.path),
                        ..f.clone()
                    })
                    .collect(),
                ..i.clone()
            })
            .collect();
        self.store
            .save_issues(session, &issues)
            .await
            .map_err(|e| Ending::failed(Phase::Finish)(e.to_string()))?;
        let mut text = format!("{} recorded", count(issues.len(), "issue"));
        if list.dropped > 0 {
            text.push_str(&format!(
                " ({} more left out: the session asked for at most {})",
                list.dropped,
                launch.request.scan_task().map_or(0, |t| t.max_issues)
            ));
        }
        Ok(text)
    }

    /// Ends a scan's issue session as its sandbox ended, keeping unusable answers.
    pub(super) async fn finish_issue_session(
        &self,
        session: IssueSessionId,
        sandbox_status: SandboxStatus,
        finish: &Finish,
        agent: Option<&AgentOutcome>,
        redactor: &Redactor,
    ) -> Result<(), StoreError> {
        let status = match sandbox_status {
            SandboxStatus::Completed => IssueSessionStatus::Completed,
            SandboxStatus::Stopped => IssueSessionStatus::Stopped,
            _ => IssueSessionStatus::Failed,
        };
        let raw = agent
            .and_then(|a| a.raw_answer.as_deref())
            .map(|r| redactor.redact(r));
        let error = finish
            .error
            .as_deref()
            .filter(|_| status != IssueSessionStatus::Completed);
        self.store
            .finish_issue_session(session, status, error, raw.as_deref())
            .await?;
        Ok(())
    }
}

/// An answer as the agent gave it: its structured output, else its final text.
pub(super) fn raw_answer(result: &AgentResult) -> String {
    match &result.structured_output {
        Some(value) => serde_json::to_string_pretty(value).unwrap_or_default(),
        None => result.text.clone(),
    }
}

/// `second`, with the cost, tokens, turns and time of `first` added: what both runs used.
fn with_usage_of(first: &AgentResult, second: AgentResult) -> AgentResult {
    fn sum<T: std::ops::Add<Output = T>>(a: Option<T>, b: Option<T>) -> Option<T> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        }
    }
    AgentResult {
        cost_usd: sum(first.cost_usd, second.cost_usd),
        input_tokens: sum(first.input_tokens, second.input_tokens),
        output_tokens: sum(first.output_tokens, second.output_tokens),
        num_turns: sum(first.num_turns, second.num_turns),
        duration_ms: sum(first.duration_ms, second.duration_ms),
        ..second
    }
}
