//! Every custom id the bot puts on a button, select menu or form, and reading them back. Each one
//! carries its action and what it acts on, so a press still works after a restart; the strings are
//! exactly those earlier versions posted, so buttons on old messages keep working.

use crate::ids::JobId;
use crate::ids::{IssueSessionId, SandboxId};
use crate::pipeline::scan::MAX_MAX_ISSUES;

/// What the buttons under a launch do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxAction {
    Stop,
    Retry,
    OpenPr,
    FollowUp,
}

/// A part of the launch dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogPart {
    /// The select menus.
    Tool,
    Model,
    Effort,
    /// The button that opens the form.
    Open,
    /// The form: prompt and resources.
    Form,
}

/// What a scan's list offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanAction {
    /// Show page n (from 0) of the list.
    Page(usize),
    /// The select menu of page n: issues chosen.
    Pick(usize),
    /// File the chosen issues on GitHub.
    File(Vec<u32>),
    /// Launch a fix for each chosen issue.
    Fix(Vec<u32>),
    /// Fix the chosen issues one after another on one branch (a work chain).
    Chain(Vec<u32>),
}

/// Every custom id of the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomId {
    /// A launch's buttons: `cc:stop|retry|pr|follow:<sandbox>`.
    Sandbox(SandboxAction, SandboxId),
    /// The Follow up form: `cc:fu:<sandbox>`.
    FollowUpForm(SandboxId),
    /// The launch dialog: `cc:dlg:tool|model|effort|open|modal:<dialog>`.
    Dialog(DialogPart, String),
    /// A scan's list: `cc:scan:page|pick|gh|fix|chain:<session>:<page or chosen issues>`.
    Scan(IssueSessionId, ScanAction),
    /// A workflow run's or chain's Stop: `cc:wfstop:run|chain:<id>`.
    StopJob(JobId),
    /// The `/workflow create` form: `cc:wfcreate`.
    WorkflowForm,
}

impl SandboxAction {
    const ALL: [SandboxAction; 4] = [
        SandboxAction::Stop,
        SandboxAction::Retry,
        SandboxAction::OpenPr,
        SandboxAction::FollowUp,
    ];

    fn word(self) -> &'static str {
        match self {
            SandboxAction::Stop => "stop",
            SandboxAction::Retry => "retry",
            SandboxAction::OpenPr => "pr",
            SandboxAction::FollowUp => "follow",
        }
    }
}

impl DialogPart {
    const ALL: [DialogPart; 5] = [
        DialogPart::Tool,
        DialogPart::Model,
        DialogPart::Effort,
        DialogPart::Open,
        DialogPart::Form,
    ];

    fn word(self) -> &'static str {
        match self {
            DialogPart::Tool => "tool",
            DialogPart::Model => "model",
            DialogPart::Effort => "effort",
            DialogPart::Open => "open",
            DialogPart::Form => "modal",
        }
    }
}

impl CustomId {
    pub fn encode(&self) -> String {
        match self {
            CustomId::Sandbox(action, id) => format!("cc:{}:{id}", action.word()),
            CustomId::FollowUpForm(id) => format!("cc:fu:{id}"),
            CustomId::Dialog(part, id) => format!("cc:dlg:{}:{id}", part.word()),
            CustomId::Scan(session, action) => {
                let (word, arg) = match action {
                    ScanAction::Page(n) => ("page", n.to_string()),
                    ScanAction::Pick(n) => ("pick", n.to_string()),
                    ScanAction::File(chosen) => ("gh", encode_positions(chosen)),
                    ScanAction::Fix(chosen) => ("fix", encode_positions(chosen)),
                    ScanAction::Chain(chosen) => ("chain", encode_positions(chosen)),
                };
                format!("cc:scan:{word}:{session}:{arg}")
            }
            CustomId::StopJob(JobId::Run(id)) => format!("cc:wfstop:run:{id}"),
            CustomId::StopJob(JobId::Chain(id)) => format!("cc:wfstop:chain:{id}"),
            CustomId::WorkflowForm => "cc:wfcreate".into(),
        }
    }

    /// `None` for ids that are not ours (poise's own forms) or no longer make sense.
    pub fn parse(text: &str) -> Option<CustomId> {
        let rest = text.strip_prefix("cc:")?;
        if rest == "wfcreate" {
            return Some(CustomId::WorkflowForm);
        }
        let (kind, rest) = rest.split_once(':')?;
        match kind {
            "fu" => Some(CustomId::FollowUpForm(rest.parse().ok()?)),
            "dlg" => {
                let (word, id) = rest.split_once(':')?;
                let part = DialogPart::ALL.into_iter().find(|p| p.word() == word)?;
                Some(CustomId::Dialog(part, id.to_string()))
            }
            "scan" => {
                let mut parts = rest.splitn(3, ':');
                let (word, session, arg) = (parts.next()?, parts.next()?, parts.next()?);
                let action = match word {
                    "page" => ScanAction::Page(arg.parse().ok()?),
                    "pick" => ScanAction::Pick(arg.parse().ok()?),
                    "gh" => ScanAction::File(decode_positions(arg)?),
                    "fix" => ScanAction::Fix(decode_positions(arg)?),
                    "chain" => ScanAction::Chain(decode_positions(arg)?),
                    _ => return None,
                };
                Some(CustomId::Scan(session.parse().ok()?, action))
            }
            "wfstop" => match rest.split_once(':')? {
                ("run", id) => Some(CustomId::StopJob(JobId::Run(id.parse().ok()?))),
                ("chain", id) => Some(CustomId::StopJob(JobId::Chain(id.parse().ok()?))),
                _ => None,
            },
            word => {
                let action = SandboxAction::ALL.into_iter().find(|a| a.word() == word)?;
                Some(CustomId::Sandbox(action, rest.parse().ok()?))
            }
        }
    }
}

/// Chosen positions (1–100) as a bit set in hexadecimal: short enough for a custom id.
fn encode_positions(positions: &[u32]) -> String {
    let mut bits: u128 = 0;
    for p in positions {
        if (1..=MAX_MAX_ISSUES).contains(p) {
            bits |= 1u128 << (p - 1);
        }
    }
    format!("{bits:x}")
}

fn decode_positions(text: &str) -> Option<Vec<u32>> {
    let bits = u128::from_str_radix(text, 16).ok()?;
    Some(
        (1..=MAX_MAX_ISSUES)
            .filter(|p| bits & (1u128 << (p - 1)) != 0)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{WorkChainId, WorkflowRunId};

    /// One of every kind, with the most a custom id ever carries.
    fn every_variant() -> Vec<CustomId> {
        let sandbox = SandboxId::new();
        let session = IssueSessionId::new();
        let all_issues: Vec<u32> = (1..=MAX_MAX_ISSUES).collect();
        let mut ids: Vec<CustomId> = SandboxAction::ALL
            .into_iter()
            .map(|a| CustomId::Sandbox(a, sandbox))
            .collect();
        ids.push(CustomId::FollowUpForm(sandbox));
        ids.extend(
            DialogPart::ALL
                .into_iter()
                .map(|p| CustomId::Dialog(p, "0123456789ab".into())),
        );
        ids.extend(
            [
                ScanAction::Page(0),
                ScanAction::Page(9),
                ScanAction::Pick(3),
                ScanAction::File(vec![1, 7, 64]),
                ScanAction::Fix(vec![99, 100]),
                ScanAction::Chain(all_issues),
            ]
            .into_iter()
            .map(|a| CustomId::Scan(session, a)),
        );
        ids.push(CustomId::StopJob(JobId::Run(WorkflowRunId::new())));
        ids.push(CustomId::StopJob(JobId::Chain(WorkChainId::new())));
        ids.push(CustomId::WorkflowForm);
        ids
    }

    #[test]
    fn every_custom_id_round_trips_within_discords_limit() {
        for id in every_variant() {
            let text = id.encode();
            assert!(text.len() <= 100, "over Discord's 100 characters: {text}");
            assert_eq!(CustomId::parse(&text), Some(id), "{text}");
        }
    }

    #[test]
    fn ids_on_messages_posted_by_earlier_versions_still_parse() {
        let sandbox: SandboxId = "0d5f6b1e-7c2a-4f3e-9b8d-1a2b3c4d5e6f".parse().unwrap();
        let session: IssueSessionId = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d".parse().unwrap();
        let run: WorkflowRunId = "11111111-2222-4333-8444-555555555555".parse().unwrap();
        let chain: WorkChainId = "66666666-7777-4888-9999-aaaaaaaaaaaa".parse().unwrap();
        let legacy = [
            (
                "cc:stop:0d5f6b1e-7c2a-4f3e-9b8d-1a2b3c4d5e6f",
                CustomId::Sandbox(SandboxAction::Stop, sandbox),
            ),
            (
                "cc:retry:0d5f6b1e-7c2a-4f3e-9b8d-1a2b3c4d5e6f",
                CustomId::Sandbox(SandboxAction::Retry, sandbox),
            ),
            (
                "cc:pr:0d5f6b1e-7c2a-4f3e-9b8d-1a2b3c4d5e6f",
                CustomId::Sandbox(SandboxAction::OpenPr, sandbox),
            ),
            (
                "cc:follow:0d5f6b1e-7c2a-4f3e-9b8d-1a2b3c4d5e6f",
                CustomId::Sandbox(SandboxAction::FollowUp, sandbox),
            ),
            (
                "cc:fu:0d5f6b1e-7c2a-4f3e-9b8d-1a2b3c4d5e6f",
                CustomId::FollowUpForm(sandbox),
            ),
            (
                "cc:dlg:tool:3f2a1b0c9d8e",
                CustomId::Dialog(DialogPart::Tool, "3f2a1b0c9d8e".into()),
            ),
            (
                "cc:dlg:model:3f2a1b0c9d8e",
                CustomId::Dialog(DialogPart::Model, "3f2a1b0c9d8e".into()),
            ),
            (
                "cc:dlg:effort:3f2a1b0c9d8e",
                CustomId::Dialog(DialogPart::Effort, "3f2a1b0c9d8e".into()),
            ),
            (
                "cc:dlg:open:3f2a1b0c9d8e",
                CustomId::Dialog(DialogPart::Open, "3f2a1b0c9d8e".into()),
            ),
            (
                "cc:dlg:modal:3f2a1b0c9d8e",
                CustomId::Dialog(DialogPart::Form, "3f2a1b0c9d8e".into()),
            ),
            (
                "cc:scan:page:9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d:2",
                CustomId::Scan(session, ScanAction::Page(2)),
            ),
            (
                "cc:scan:pick:9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d:0",
                CustomId::Scan(session, ScanAction::Pick(0)),
            ),
            (
                "cc:scan:gh:9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d:5",
                CustomId::Scan(session, ScanAction::File(vec![1, 3])),
            ),
            (
                "cc:scan:fix:9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d:2",
                CustomId::Scan(session, ScanAction::Fix(vec![2])),
            ),
            (
                "cc:scan:chain:9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d:6",
                CustomId::Scan(session, ScanAction::Chain(vec![2, 3])),
            ),
            (
                "cc:wfstop:run:11111111-2222-4333-8444-555555555555",
                CustomId::StopJob(JobId::Run(run)),
            ),
            (
                "cc:wfstop:chain:66666666-7777-4888-9999-aaaaaaaaaaaa",
                CustomId::StopJob(JobId::Chain(chain)),
            ),
            ("cc:wfcreate", CustomId::WorkflowForm),
        ];
        for (text, id) in legacy {
            assert_eq!(CustomId::parse(text).as_ref(), Some(&id), "{text}");
            assert_eq!(id.encode(), text);
        }
    }

    #[test]
    fn strangers_are_not_ours() {
        for text in [
            "",
            "cc:",
            "cc:explode:x",
            "other:stop:0d5f6b1e-7c2a-4f3e-9b8d-1a2b3c4d5e6f",
            "cc:stop:not-a-uuid",
            "cc:dlg:colour:3f2a1b0c9d8e",
            "cc:scan:page:nope:1",
            "cc:scan:gh:9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d:zz",
            "cc:wfstop:run:nope",
            "cc:wfstop:step:11111111-2222-4333-8444-555555555555",
            // poise's own form ids
            "a1b2c3d4-0000-4000-8000-000000000000",
        ] {
            assert_eq!(CustomId::parse(text), None, "{text:?}");
        }
    }
}
