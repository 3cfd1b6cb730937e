//! A workflow run's own part: its steps, each a launch on the run's branch (designer, optimizer
//! and checker rounds, see `workflow::next_step`), recorded before and after it runs so a run
//! driven again after a crash runs the interrupted step again and never repeats a finished one.

use std::fmt::Write as _;

use tokio_util::sync::CancellationToken;

use super::events::{StepProgress, WorkflowEvent, WorkflowSink};
use super::{Driving, PullRequest, Runner};
use crate::catalog::{FollowUp, LaunchMode};
use crate::ids::SandboxId;
use crate::model::workflow::{StepKind, Verdict};
use crate::model::SandboxStatus;
use crate::pipeline::ops::continuing;
use crate::pipeline::workflow::{next_step, read_verdict, step_prompt, DoneStep, Next, StepEnd};
use crate::pipeline::{LaunchError, LaunchOrigin, ProjectChoice};
use crate::store::{
    JobEnd, JobRecord, JobStatus, NewStep, RunWork, StepEnding, StepRecord, StepStatus,
    WorkflowLink,
};

/// What one step needs to run.
struct Step<'a> {
    on: &'a Driving<'a>,
    run: &'a RunWork,
    kind: StepKind,
    round: u32,
    seq: u32,
    findings: &'a [String],
    /// The last finished step's sandbox: the launch this one continues.
    previous: Option<SandboxId>,
}

impl Runner {
    /// Runs the run's steps until the workflow says it passed or failed, or it is stopped.
    pub(super) async fn run_steps(
        &self,
        on: &Driving<'_>,
        run: &RunWork,
        sink: &dyn WorkflowSink,
        stop: CancellationToken,
    ) -> anyhow::Result<JobEnd> {
        // A step still marked running was cut off by a crash: it runs again.
        for step in run.steps.iter().filter(|s| s.status == StepStatus::Running) {
            let ending = StepEnding {
                status: StepStatus::Interrupted,
                verdict: None,
                error: Some("CodeCourier stopped during this step; it ran again"),
                cost_usd: None,
                duration_ms: None,
            };
            self.store().end_step(step.id, &ending).await?;
        }
        loop {
            let steps = self.store().steps(run.id).await?;
            let done: Vec<DoneStep> = steps.iter().map(done_step).collect();
            let next = if stop.is_cancelled() {
                Next::Stopped
            } else {
                next_step(&done, on.record.workflow.max_rounds)
            };
            match next {
                Next::Run {
                    kind,
                    round,
                    findings,
                } => {
                    let previous = steps
                        .iter()
                        .rev()
                        .find(|s| s.status == StepStatus::Completed)
                        .and_then(|s| s.sandbox_id);
                    let step = Step {
                        on,
                        run,
                        kind,
                        round,
                        seq: steps.len() as u32 + 1,
                        findings: &findings,
                        previous,
                    };
                    if let Err(error) = self.run_step(&step, sink, stop.clone()).await {
                        return Ok(JobEnd::new(JobStatus::Failed, Some(error)));
                    }
                }
                Next::Passed => return Ok(JobEnd::new(JobStatus::Passed, None)),
                Next::Failed { error, findings } => {
                    return Ok(JobEnd {
                        findings,
                        ..JobEnd::new(JobStatus::Failed, Some(error))
                    })
                }
                Next::Stopped => {
                    return Ok(JobEnd::new(JobStatus::Stopped, Some("stopped".into())))
                }
            }
        }
    }

    /// Runs one step as a launch on the run's branch and records it. Err: the step could not start.
    async fn run_step(
        &self,
        step: &Step<'_>,
        sink: &dyn WorkflowSink,
        stop: CancellationToken,
    ) -> Result<(), String> {
        let job = step.on.record;
        let kind = step.kind;
        let workflow = &job.workflow;
        let mut input = workflow.step_input(&self.catalog, kind, String::new());
        let structured = input
            .tool
            .as_deref()
            .and_then(|t| self.catalog.tool(t))
            .unwrap_or_else(|| self.catalog.default_tool())
            .capabilities
            .structured_output;
        input.prompt = Some(step_prompt(
            kind,
            workflow.persona(kind),
            &step.run.task,
            step.findings,
            structured,
        ));
        input.repo = Some(job.repo.clone());
        input.base_branch = Some(step.on.base.to_string());
        // Checked when the run was recorded; the terminal's and the chat's rules applied then.
        let mut request = input
            .validate(&self.catalog, true)
            .map_err(|e| format!("the {kind} step cannot start: {e}"))?;
        request.env = step.on.env.to_vec();
        if kind == StepKind::Checker {
            request.mode = LaunchMode::Check;
        }
        let request = continuing(
            request,
            FollowUp {
                of: step.previous,
                branch: step.on.branch.to_string(),
                base_branch: step.on.base.to_string(),
                session_id: None,
            },
        );
        let origin = LaunchOrigin {
            launched_by: job.meta.launched_by.clone(),
            discord: job.meta.discord(),
            // A run started without a project of its own (a repository named from another
            // channel) keeps none for every step.
            project: job
                .project_id
                .map_or(ProjectChoice::Nothing, ProjectChoice::Project),
            keys_of: job.meta.discord().map(|d| d.user_id),
            issue_session: None,
            workflow: Some(WorkflowLink {
                run: step.run.id,
                step: kind,
                chain: step.run.work_chain_id,
            }),
        };
        let config = serde_json::json!({
            "tool": request.tool,
            "model": request.model,
            "effort": request.effort,
            "resources": request.resources,
            "template": request.template.to_string(),
        });
        let (tool, model, template) = (
            request.tool.clone(),
            request.model.clone(),
            request.template.to_string(),
        );
        let prepared = match self.launcher.prepare(request, &origin).await {
            Ok(prepared) => prepared,
            Err(LaunchError::Invalid(message)) => {
                return Err(format!("the {kind} step cannot start: {message}"))
            }
            Err(LaunchError::Store(e)) => return Err(e.to_string()),
        };
        let sandbox = prepared.id;
        let inserted = self
            .store()
            .insert_step(&NewStep {
                run: step.run.id,
                seq: step.seq,
                kind,
                round: step.round,
                sandbox,
                tool: &tool,
                model: &model,
                template: &template,
                config: &config,
            })
            .await;
        let step_id = match inserted {
            Ok(id) => id,
            Err(e) => {
                let why = format!("the {kind} step could not be recorded: {e}");
                if let Err(e) = self.launcher.abandon(prepared, &why).await {
                    tracing::warn!(sandbox = %sandbox, error = %e, "could not end an unused sandbox record");
                }
                return Err(why);
            }
        };
        sink.emit(&WorkflowEvent::StepStarted {
            seq: step.seq,
            kind,
            round: step.round,
            sandbox,
            tool,
            model,
            template,
        });
        let record = match self
            .launcher
            .run(prepared, &StepProgress { sink, kind }, stop)
            .await
        {
            Ok(record) => record,
            Err(e) => {
                let why = format!("the {kind} step ended without a record: {e:#}");
                let ending = StepEnding {
                    status: StepStatus::Failed,
                    verdict: None,
                    error: Some(&why),
                    cost_usd: None,
                    duration_ms: None,
                };
                let _ = self.store().end_step(step_id, &ending).await;
                return Err(why);
            }
        };
        let (status, verdict, error) = match record.status {
            SandboxStatus::Completed if kind == StepKind::Checker => {
                match read_verdict(None, record.result_text.as_deref().unwrap_or("")) {
                    Ok(v) => (StepStatus::Completed, Some(v), None),
                    Err(problems) => (
                        StepStatus::Failed,
                        None,
                        Some(format!("no readable verdict: {}", problems.join("; "))),
                    ),
                }
            }
            SandboxStatus::Completed => (StepStatus::Completed, None, None),
            SandboxStatus::Stopped => (StepStatus::Stopped, None, record.error.clone()),
            _ => (
                StepStatus::Failed,
                None,
                Some(record.error.clone().unwrap_or_else(|| "failed".into())),
            ),
        };
        self.store()
            .end_step(
                step_id,
                &StepEnding {
                    status,
                    verdict: verdict.as_ref(),
                    error: error.as_deref(),
                    cost_usd: record.shown_usage().0,
                    duration_ms: record.duration_ms,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        sink.emit(&WorkflowEvent::StepFinished {
            seq: step.seq,
            kind,
            round: step.round,
            status,
            verdict,
            error,
            cost_usd: record.shown_usage().0,
            duration_ms: record.duration_ms,
        });
        Ok(())
    }
}

fn done_step(step: &StepRecord) -> DoneStep {
    let end = match step.status {
        StepStatus::Completed => StepEnd::Completed {
            verdict: step.verdict.as_deref().map(|v| Verdict {
                pass: v == "pass",
                findings: step.findings.clone(),
            }),
        },
        StepStatus::Failed => StepEnd::Failed {
            error: step.error.clone().unwrap_or_else(|| "failed".into()),
        },
        StepStatus::Stopped => StepEnd::Stopped,
        StepStatus::Running | StepStatus::Interrupted => StepEnd::Interrupted,
    };
    DoneStep {
        kind: step.step,
        round: step.round,
        end,
    }
}

/// The pull request a run ends with: only a standalone run that passed has one of its own (a
/// chain's runs share the chain's).
pub(super) fn pull_request(
    job: &JobRecord,
    run: &RunWork,
    status: JobStatus,
) -> Option<PullRequest> {
    if status != JobStatus::Passed || run.work_chain_id.is_some() {
        return None;
    }
    let mut body = format!("{}\n\n", crate::agent::clip(run.task.prompt.trim(), 4000));
    let _ = writeln!(body, "### Workflow `{}` passed\n", job.workflow.name);
    for step in &run.steps {
        let _ = writeln!(body, "- {}", step_line(step));
    }
    let _ = write!(
        body,
        "\nLaunched by {} via CodeCourier (workflow run {}).",
        job.meta.launched_by, run.id
    );
    Some(PullRequest {
        title: run.task.title.clone(),
        body,
    })
}

/// A step's line for timelines and pull requests: "designer · Claude Code · model · ✅ · $0.01 · 3.2s".
pub fn step_line(step: &StepRecord) -> String {
    let mut text = format!("{}", step.step);
    if step.step != StepKind::Designer {
        let _ = write!(text, " {}", step.round);
    }
    let _ = write!(
        text,
        " · {} · {} · template {}",
        step.tool, step.model, step.template
    );
    let outcome = match (step.status, step.verdict.as_deref()) {
        (StepStatus::Completed, Some("pass")) => "✅ pass".to_string(),
        (StepStatus::Completed, Some(_)) => "❌ fail".to_string(),
        (StepStatus::Completed, None) => "✅".to_string(),
        (StepStatus::Running, _) => "⏳".to_string(),
        (StepStatus::Failed, _) => "❌ failed".to_string(),
        (StepStatus::Stopped, _) => "🛑 stopped".to_string(),
        (StepStatus::Interrupted, _) => "↻ interrupted, ran again".to_string(),
    };
    let _ = write!(text, " · {outcome}");
    if let Some(cost) = step.cost_usd {
        let _ = write!(text, " · ${cost:.4}");
    }
    if let Some(ms) = step.duration_ms {
        let _ = write!(text, " · {:.1}s", ms as f64 / 1000.0);
    }
    text
}
