//! The live terminal display of a launch: a line per phase (spinner, then ✓ or ✗ with its duration),
//! a rolling line of agent activity, all on standard error. Without a terminal, plain lines. And
//! the timeline of a workflow run or chain: a line per step, with the current step's phases below.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ids::{JobKind, SandboxId};
use crate::model::{Phase, PhaseOutcome};
use crate::pipeline::{ProgressEvent, ProgressSink, WorkflowEvent, WorkflowSink};

pub struct TerminalProgress {
    multi: MultiProgress,
    live: bool,
    bars: Mutex<HashMap<Phase, ProgressBar>>,
}

impl TerminalProgress {
    pub fn new() -> Self {
        let live = std::io::stderr().is_terminal();
        let target = if live {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            live,
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn line(&self, text: String) {
        if self.live {
            let _ = self.multi.println(text);
        } else {
            eprintln!("{text}");
        }
    }
}

fn seconds(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

impl ProgressSink for TerminalProgress {
    fn emit(&self, _: SandboxId, event: &ProgressEvent) {
        let mut bars = self.bars.lock().expect("lock");
        match event {
            ProgressEvent::PhaseStarted { phase } => {
                if self.live {
                    let bar = self.multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {prefix:<13} {elapsed:>4} {msg}")
                            .expect("template"),
                    );
                    bar.set_prefix(phase.to_string());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bars.insert(*phase, bar);
                } else {
                    eprintln!("… {phase}");
                }
            }
            ProgressEvent::PhaseFinished {
                phase,
                outcome,
                detail,
                duration_ms,
            } => {
                let mark = match outcome {
                    PhaseOutcome::Ok => "✓",
                    PhaseOutcome::Failed => "✗",
                    PhaseOutcome::Skipped => "-",
                    PhaseOutcome::Running => "…",
                };
                let text = format!(
                    "{mark} {:<13} {:>5} {}",
                    phase.to_string(),
                    seconds(*duration_ms),
                    detail.as_deref().unwrap_or("")
                );
                match bars.remove(phase) {
                    Some(bar) => {
                        bar.set_style(ProgressStyle::with_template("{msg}").expect("template"));
                        bar.finish_with_message(text);
                    }
                    None => self.line(text),
                }
            }
            ProgressEvent::Status { .. } => {}
            ProgressEvent::Note { message } => match bars.get(&Phase::Agent) {
                Some(bar) => bar.set_message(format!("⏳ {message}")),
                None => eprintln!("  {message}"),
            },
            ProgressEvent::Output { phase, line } => match bars.get(phase) {
                Some(bar) => bar.set_message(line.clone()),
                None => eprintln!("  {phase} | {line}"),
            },
            ProgressEvent::Agent { event } => {
                if let Some(text) = event.activity() {
                    match bars.get(&Phase::Agent) {
                        Some(bar) => bar.set_message(text),
                        None => eprintln!("  {text}"),
                    }
                }
            }
            ProgressEvent::Spend { .. } => {
                let words = event.spend_words().unwrap_or_default();
                // Beside the agent's phase name, so the activity line keeps its place.
                match bars.get(&Phase::Agent) {
                    Some(bar) => bar.set_prefix(format!("{} · {words}", Phase::Agent)),
                    None => eprintln!("  spent {words}"),
                }
            }
        }
    }
}

/// The live terminal timeline: a line per step as it starts and ends, and the current step's
/// phases below it.
#[derive(Default)]
pub struct TerminalTimeline {
    current: Mutex<Option<(SandboxId, TerminalProgress)>>,
}

impl WorkflowSink for TerminalTimeline {
    fn emit(&self, event: &WorkflowEvent) {
        match event {
            WorkflowEvent::BranchReady { base, branch } => {
                eprintln!("branch {branch} (from {base})")
            }
            WorkflowEvent::ItemStarted {
                position, title, ..
            } => {
                eprintln!("\n■ issue {}: {title}", position + 1)
            }
            WorkflowEvent::StepStarted {
                kind,
                round,
                sandbox,
                tool,
                model,
                template,
                ..
            } => {
                eprintln!(
                    "\n▶ {kind}{} · {tool} · {model} · template {template} · sandbox {}",
                    if *round > 0 {
                        format!(" {round}")
                    } else {
                        String::new()
                    },
                    sandbox.short()
                );
                *self.current.lock().expect("lock") = Some((*sandbox, TerminalProgress::new()));
            }
            WorkflowEvent::Progress { event, .. } => {
                if let Some((id, progress)) = self.current.lock().expect("lock").as_ref() {
                    progress.emit(*id, event);
                }
            }
            WorkflowEvent::StepFinished {
                kind,
                status,
                verdict,
                error,
                cost_usd,
                duration_ms,
                ..
            } => {
                let mut line = format!("■ {kind} {}", status.as_str());
                if let Some(v) = verdict {
                    line.push_str(if v.pass {
                        " · verdict pass"
                    } else {
                        " · verdict fail"
                    });
                }
                if let Some(c) = cost_usd {
                    line.push_str(&format!(" · ${c:.4}"));
                }
                if let Some(ms) = duration_ms {
                    line.push_str(&format!(" · {:.1}s", *ms as f64 / 1000.0));
                }
                eprintln!("{line}");
                if let Some(v) = verdict {
                    for f in &v.findings {
                        eprintln!("    finding: {f}");
                    }
                }
                if let Some(e) = error {
                    eprintln!("    {e}");
                }
            }
            WorkflowEvent::JobFinished { job, status, .. } => match job.kind() {
                JobKind::Run => eprintln!("run {status}"),
                JobKind::Chain => eprintln!("chain {status}"),
            },
        }
    }
}
