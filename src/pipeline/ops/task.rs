//! A workflow's task as people name it — what to do in words, an issue of a scan (`SESSION#N`) or
//! a GitHub issue of the repository — and the task it names, looked up. One parser for every
//! front end, so a task means the same from the terminal and from chat.

use super::Ops;
use crate::ids::DiscordId;
use crate::model::workflow::Task;
use crate::pipeline::LaunchError;

/// A task as named, before it is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskRef {
    /// What to do, in words.
    Text(String),
    /// An issue of an issue session: the session's id (or its first characters) and the issue's
    /// place in the session's list.
    ScanIssue { session: String, position: u32 },
    /// An issue of the repository on GitHub, by number.
    GithubIssue(u64),
}

/// Why a task cannot be named so; front ends show it with the names of their own options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskRefusal {
    /// No task was given, or only blank text.
    #[error(
        "no task given: say what to do, or name an issue of a scan (SESSION#N) or a GitHub issue"
    )]
    Blank,
    /// A scan's issue not written `SESSION#N`.
    #[error("\"{0}\" is not SESSION#N (a scan's session id or its first characters, then # and the issue's number, like 1a2b3c4d#3)")]
    NotSessionIssue(String),
}

impl TaskRef {
    /// A run's task from the three ways to give it — the text, an issue of a scan, a GitHub issue
    /// number — the first one given wins. Blank text and issue number 0 count as not given, so a
    /// run never starts on an empty task.
    pub fn for_run(
        text: Option<&str>,
        scan_issue: Option<&str>,
        github_issue: Option<u64>,
    ) -> Result<TaskRef, TaskRefusal> {
        if let Some(text) = text.filter(|t| !t.trim().is_empty()) {
            return Ok(TaskRef::Text(text.to_string()));
        }
        if let Some(issue) = scan_issue {
            return TaskRef::scan_issue(issue);
        }
        match github_issue {
            Some(n) if n > 0 => Ok(TaskRef::GithubIssue(n)),
            _ => Err(TaskRefusal::Blank),
        }
    }

    /// An issue of a scan written `SESSION#N`.
    pub fn scan_issue(text: &str) -> Result<TaskRef, TaskRefusal> {
        text.split_once('#')
            .map(|(session, n)| (session.trim(), n.trim()))
            .filter(|(session, _)| !session.is_empty())
            .and_then(|(session, n)| {
                Some(TaskRef::ScanIssue {
                    session: session.to_string(),
                    position: n.parse().ok()?,
                })
            })
            .ok_or_else(|| TaskRefusal::NotSessionIssue(text.to_string()))
    }

    /// A chain's issues written in one line, separated by `;`: `#N` is a GitHub issue, anything
    /// else text. Blank entries are skipped (a trailing `;` is no issue).
    pub fn list(text: &str) -> Vec<TaskRef> {
        text.split(';')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(
                |entry| match entry.strip_prefix('#').and_then(|n| n.parse::<u64>().ok()) {
                    Some(n) => TaskRef::GithubIssue(n),
                    None => TaskRef::Text(entry.to_string()),
                },
            )
            .collect()
    }
}

impl Ops {
    /// The task a run works on. From chat (`channel`), only a scan started in that channel is found.
    pub async fn run_task(
        &self,
        task: &TaskRef,
        repo: &str,
        channel: Option<DiscordId>,
    ) -> Result<Task, LaunchError> {
        self.look_up(task, "prompt", repo, channel).await
    }

    /// A chain's issues, in order; one that cannot be found refuses the chain.
    pub async fn chain_tasks(
        &self,
        tasks: &[TaskRef],
        repo: &str,
        channel: Option<DiscordId>,
    ) -> Result<Vec<Task>, LaunchError> {
        let mut found = Vec::with_capacity(tasks.len());
        for task in tasks {
            found.push(self.look_up(task, "text", repo, channel).await?);
        }
        Ok(found)
    }

    /// `text_source` is what a task given in words records as its source.
    async fn look_up(
        &self,
        task: &TaskRef,
        text_source: &str,
        repo: &str,
        channel: Option<DiscordId>,
    ) -> Result<Task, LaunchError> {
        match task {
            TaskRef::Text(text) => Ok(Task::from_prompt(text, text_source)),
            TaskRef::ScanIssue { session, position } => {
                self.runner
                    .task_from_issue(session, *position, repo, channel)
                    .await
            }
            TaskRef::GithubIssue(n) => self.runner.task_from_github(repo, *n).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(session: &str, position: u32) -> TaskRef {
        TaskRef::ScanIssue {
            session: session.into(),
            position,
        }
    }

    #[test]
    fn a_runs_task_is_the_first_way_given() {
        assert_eq!(
            TaskRef::for_run(Some("Add a README"), Some("1a2b#3"), Some(7)),
            Ok(TaskRef::Text("Add a README".into()))
        );
        assert_eq!(
            TaskRef::for_run(None, Some("1a2b3c4d#3"), Some(7)),
            Ok(issue("1a2b3c4d", 3))
        );
        assert_eq!(
            TaskRef::for_run(None, None, Some(12)),
            Ok(TaskRef::GithubIssue(12))
        );
    }

    #[test]
    fn a_blank_task_is_refused_unless_another_way_is_given() {
        assert_eq!(
            TaskRef::for_run(Some("  \n\t"), None, None),
            Err(TaskRefusal::Blank)
        );
        assert_eq!(TaskRef::for_run(None, None, None), Err(TaskRefusal::Blank));
        assert_eq!(
            TaskRef::for_run(Some(""), None, Some(0)),
            Err(TaskRefusal::Blank)
        );
        assert_eq!(
            TaskRef::for_run(Some(" "), Some("1a2b#2"), None),
            Ok(issue("1a2b", 2))
        );
        assert_eq!(
            TaskRef::for_run(Some(""), None, Some(5)),
            Ok(TaskRef::GithubIssue(5))
        );
        let said = TaskRefusal::Blank.to_string();
        assert!(said.starts_with("no task given"), "{said}");
    }

    #[test]
    fn a_scans_issue_is_session_hash_number() {
        assert_eq!(TaskRef::scan_issue(" 1a2b#10 "), Ok(issue("1a2b", 10)));
        for bad in ["1a2b", "1a2b#", "1a2b#x", "#3", "1a2b#-1", ""] {
            assert_eq!(
                TaskRef::scan_issue(bad),
                Err(TaskRefusal::NotSessionIssue(bad.into())),
                "{bad:?}"
            );
        }
        assert!(TaskRefusal::NotSessionIssue("x".into())
            .to_string()
            .contains("like 1a2b3c4d#3"));
    }

    #[test]
    fn a_chains_list_holds_github_numbers_and_text_and_skips_blanks() {
        assert_eq!(
            TaskRef::list("Add a CONTRIBUTING.md; #12 ;; #15;#x; Fix #3 in the parser ;"),
            vec![
                TaskRef::Text("Add a CONTRIBUTING.md".into()),
                TaskRef::GithubIssue(12),
                TaskRef::GithubIssue(15),
                TaskRef::Text("#x".into()),
                TaskRef::Text("Fix #3 in the parser".into()),
            ]
        );
        assert!(TaskRef::list(" ; ;").is_empty());
    }
}
