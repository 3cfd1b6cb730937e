//! A workflow thread's status message, as pure functions: the timeline of a run's steps (and a
//! chain's issues) with their state, tool, model, verdict, duration and cost, the current step's
//! live phases, and the result posted when the job ends.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::discord::render::{self, cut, inert, StatusView, MAX_CONTENT};
use crate::discord::status_editor::LiveView;
use crate::ids::JobKind;
use crate::model::workflow::StepKind;
use crate::pipeline::{ProgressEvent, WorkflowEvent};
use crate::store::{JobRecord, JobStatus, StepRecord, StepStatus, Work};

/// What the thread is told when a job ends: how it ended, with its steps' cost and time; a run's
/// branch or a chain's issues; its pull request; why it failed, and a run's findings.
pub fn result(job: &JobRecord) -> String {
    let status = status_word(job.status);
    let usage = usage(&job.steps());
    let mut text = match &job.work {
        Work::Run(run) => format!(
            "**{status}** · workflow `{}` · run `{}` · {} step{}{usage}",
            inert(&job.workflow.name),
            run.id.short(),
            run.steps.len(),
            if run.steps.len() == 1 { "" } else { "s" },
        ),
        Work::Chain(chain) => format!(
            "**{status}** · work chain `{}` · {} issue{}{usage}",
            chain.id.short(),
            chain.items.len(),
            if chain.items.len() == 1 { "" } else { "s" },
        ),
    };
    match &job.work {
        Work::Run(_) => {
            if let Some(branch) = &job.branch {
                let _ = write!(text, "\n🌿 `{}`", inert(branch));
            }
        }
        Work::Chain(chain) => {
            for (i, item) in chain.items.iter().enumerate() {
                let state = chain
                    .run_at(i as u32)
                    .map(|r| status_word(r.status))
                    .unwrap_or("▫️ not run");
                let _ = write!(
                    text,
                    "\n{}. {} — {state}",
                    i + 1,
                    inert(&cut(&item.title, 100))
                );
            }
        }
    }
    if let Some(url) = &job.pr_url {
        let _ = write!(text, "\n🔀 {url}");
    }
    if let Some(error) = &job.error {
        let _ = write!(text, "\n{}", inert(&cut(error, 600)));
    }
    if let Work::Run(run) = &job.work {
        for f in run.findings.iter().take(10) {
            let _ = write!(text, "\n• {}", inert(&cut(f, 200)));
        }
    }
    text
}

/// The cost and the time in sandboxes of these steps.
fn usage(steps: &[&StepRecord]) -> String {
    let (cost, ms) = steps.iter().fold((None::<f64>, 0i64), |(c, t), s| {
        (
            match (c, s.cost_usd) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            },
            t + s.duration_ms.unwrap_or(0),
        )
    });
    let mut text = String::new();
    if let Some(c) = cost {
        let _ = write!(text, " · ${c:.4}");
    }
    if ms > 0 {
        let _ = write!(text, " · {:.1}s in sandboxes", ms as f64 / 1000.0);
    }
    text
}

pub fn status_word(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Running => "⏳ running",
        JobStatus::Passed => "✅ passed",
        JobStatus::Failed => "❌ failed",
        JobStatus::Stopped => "🛑 stopped",
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ItemState {
    Waiting,
    Running,
    Done(JobStatus),
}

/// One step's line on the timeline.
#[derive(Debug, Clone)]
struct StepView {
    kind: StepKind,
    round: u32,
    tool: String,
    model: String,
    status: StepStatus,
    verdict: Option<bool>,
    findings: usize,
    cost_usd: Option<f64>,
    duration_ms: Option<i64>,
}

/// Everything the timeline message shows.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    title: String,
    branch: Option<String>,
    items: Vec<(String, ItemState)>,
    steps: Vec<StepView>,
    /// The current step's phases and activity.
    current: StatusView,
    finished: Option<JobStatus>,
    /// Tool ids to the names people know them by.
    tool_names: HashMap<String, String>,
}

impl Timeline {
    /// A timeline under `title`, with a chain's issues waiting (none for a run); `tool_names` maps
    /// tool ids to the names people know them by.
    pub fn new(title: String, items: Vec<String>, tool_names: HashMap<String, String>) -> Self {
        Self {
            title,
            items: items.into_iter().map(|t| (t, ItemState::Waiting)).collect(),
            tool_names,
            ..Default::default()
        }
    }

    fn apply(&mut self, event: WorkflowEvent) {
        match event {
            WorkflowEvent::BranchReady { base, branch } => {
                self.branch = Some(format!("`{}` from `{}`", inert(&branch), inert(&base)))
            }
            WorkflowEvent::ItemStarted { position, .. } => {
                if let Some(item) = self.items.get_mut(position as usize) {
                    item.1 = ItemState::Running;
                }
                self.steps.clear();
            }
            WorkflowEvent::StepStarted {
                kind,
                round,
                tool,
                model,
                ..
            } => {
                self.current = StatusView::default();
                self.steps.push(StepView {
                    kind,
                    round,
                    tool: self.tool_names.get(&tool).cloned().unwrap_or(tool),
                    model,
                    status: StepStatus::Running,
                    verdict: None,
                    findings: 0,
                    cost_usd: None,
                    duration_ms: None,
                });
            }
            // A step's own end shows as its line; its launch's final status would only repeat it.
            WorkflowEvent::Progress {
                event: ProgressEvent::Status { .. },
                ..
            } => {}
            WorkflowEvent::Progress { event, .. } => self.current.apply(event),
            WorkflowEvent::StepFinished {
                status,
                verdict,
                cost_usd,
                duration_ms,
                ..
            } => {
                if let Some(step) = self.steps.last_mut() {
                    step.status = status;
                    step.verdict = verdict.as_ref().map(|v| v.pass);
                    step.findings = verdict.map(|v| v.findings.len()).unwrap_or(0);
                    step.cost_usd = cost_usd;
                    step.duration_ms = duration_ms;
                }
                self.current = StatusView::default();
            }
            WorkflowEvent::JobFinished { job, status, .. } => {
                // A chain's run ends its issue; a run on its own, or the chain, ends the job.
                let issue = self
                    .items
                    .iter_mut()
                    .find(|(_, s)| *s == ItemState::Running)
                    .filter(|_| job.kind() == JobKind::Run);
                match issue {
                    Some(item) => item.1 = ItemState::Done(status),
                    None => self.finished = Some(status),
                }
            }
        }
    }

    fn render(&self) -> String {
        let mut text = format!(
            "{} — {}\n",
            self.title,
            self.finished.map(status_word).unwrap_or("⏳ running")
        );
        if let Some(branch) = &self.branch {
            let _ = writeln!(text, "🌿 {branch}");
        }
        if !self.items.is_empty() {
            text.push_str("**Issues**\n");
            for (i, (title, state)) in self.items.iter().enumerate() {
                let mark = match state {
                    ItemState::Waiting => "▫️",
                    ItemState::Running => "⏳",
                    ItemState::Done(s) => status_word(*s).split(' ').next().unwrap_or(""),
                };
                let _ = writeln!(text, "{mark} {}. {}", i + 1, inert(&cut(title, 90)));
            }
        }
        if !self.steps.is_empty() {
            text.push_str("**Steps**\n");
        }
        for step in &self.steps {
            let mark = match (step.status, step.verdict) {
                (StepStatus::Running, _) => "⏳",
                (StepStatus::Completed, Some(false)) => "❌",
                (StepStatus::Completed, _) => "✅",
                (StepStatus::Failed, _) => "❌",
                (StepStatus::Stopped, _) => "🛑",
                (StepStatus::Interrupted, _) => "↻",
            };
            let _ = write!(text, "{mark} **{}**", step.kind);
            if step.kind != StepKind::Designer {
                let _ = write!(text, " {}", step.round);
            }
            let _ = write!(text, " · {} · `{}`", inert(&step.tool), inert(&step.model));
            if let Some(pass) = step.verdict {
                let _ = write!(
                    text,
                    " · verdict {}",
                    if pass {
                        "pass".to_string()
                    } else {
                        format!(
                            "fail ({} finding{})",
                            step.findings,
                            if step.findings == 1 { "" } else { "s" }
                        )
                    }
                );
            }
            if let Some(ms) = step.duration_ms {
                let _ = write!(text, " · {:.1}s", ms as f64 / 1000.0);
            }
            if let Some(c) = step.cost_usd {
                let _ = write!(text, " · ${c:.4}");
            }
            text.push('\n');
        }
        if self
            .steps
            .last()
            .is_some_and(|s| s.status == StepStatus::Running)
        {
            // The current step's latest phases, as a launch's status message shows them.
            let mut current = self.current.clone();
            let skip = current.phases.len().saturating_sub(4);
            current.phases.drain(..skip);
            let live = render::status_message(&current);
            for line in live.lines().filter(|l| !l.trim().is_empty()) {
                let _ = writeln!(text, "\u{2003}{line}");
            }
        }
        cut(text.trim_end(), MAX_CONTENT)
    }
}

impl LiveView for Timeline {
    type Event = WorkflowEvent;

    fn apply(&mut self, event: WorkflowEvent) {
        Timeline::apply(self, event)
    }

    fn render(&self) -> String {
        Timeline::render(self)
    }
}
