//! What a job works on, as people name it: a workflow by name, and a task from an issue of a scan
//! or a GitHub issue.

use super::Runner;
use crate::catalog::RepoRef;
use crate::ids::DiscordId;
use crate::model::workflow::{Task, WorkflowDef, DEFAULT_WORKFLOW};
use crate::pipeline::LaunchError;

impl Runner {
    /// A workflow by name: the project's own (or one made without a project), else the built-in
    /// `default`. Unknown names are refused with the names there are.
    pub async fn find_workflow(
        &self,
        project_id: Option<i64>,
        name: Option<&str>,
    ) -> Result<WorkflowDef, LaunchError> {
        let name = name.unwrap_or(DEFAULT_WORKFLOW).trim();
        let stored = self.store().list_workflows(project_id).await?;
        // The project's own first, then one made without a project.
        let found = stored
            .iter()
            .filter(|w| w.definition.name == name)
            .max_by_key(|w| w.project_id.is_some());
        if let Some(found) = found {
            return Ok(found.definition.clone());
        }
        if name == DEFAULT_WORKFLOW {
            return Ok(WorkflowDef::built_in());
        }
        let mut names: Vec<String> = stored.into_iter().map(|w| w.definition.name).collect();
        names.insert(0, DEFAULT_WORKFLOW.into());
        Err(LaunchError::Invalid(format!(
            "there is no workflow named \"{name}\"; there are: {}",
            names.join(", ")
        )))
    }

    /// A task from an issue of an issue session (`session` an id or its first characters) of the
    /// same repository; from chat, only a session started in the same channel is found.
    pub async fn task_from_issue(
        &self,
        session: &str,
        position: u32,
        repo: &str,
        channel: Option<DiscordId>,
    ) -> Result<Task, LaunchError> {
        let wanted = session;
        let session = self
            .store()
            .find_issue_session(wanted)
            .await
            .ok()
            .filter(|s| {
                channel.is_none()
                    || s.discord_channel_id == channel
                    || s.discord_thread_id == channel
            })
            .ok_or_else(|| {
                LaunchError::Invalid(format!(
                    "no issue session \"{wanted}\"{}",
                    if channel.is_some() {
                        " was started in this channel"
                    } else {
                        " exists; `codecourier scan history` lists them"
                    }
                ))
            })?;
        if RepoRef::parse(&session.repo) != RepoRef::parse(repo) {
            return Err(LaunchError::Invalid(format!(
                "issue session {} scanned {}, not {repo}",
                session.id.short(),
                session.repo
            )));
        }
        let issues = self.store().issues(session.id).await?;
        let issue = issues
            .iter()
            .find(|i| i.position == position)
            .ok_or_else(|| {
                LaunchError::Invalid(format!(
                    "issue session {} has no issue {position} (it has {})",
                    session.id.short(),
                    issues.len()
                ))
            })?;
        Ok(Task {
            title: issue.issue.title.clone(),
            prompt: crate::pipeline::scan::fix_prompt(&issue.issue),
            source: format!("issue {}#{position}", session.id.short()),
        })
    }

    /// A task from a GitHub issue of `repo`.
    pub async fn task_from_github(&self, repo: &str, number: u64) -> Result<Task, LaunchError> {
        let Some(RepoRef::Github { owner, name }) = RepoRef::parse(repo) else {
            return Err(LaunchError::Invalid(format!(
                "GitHub issue #{number}: {repo} is not a GitHub repository"
            )));
        };
        let github = crate::github::connect(&self.launcher.github, &owner, &name)
            .await
            .map_err(|e| LaunchError::Invalid(e.to_string()))?;
        let (title, body) = github
            .issue(number)
            .await
            .map_err(|e| LaunchError::Invalid(e.to_string()))?;
        Ok(Task {
            title: format!("#{number} {title}"),
            prompt: format!("Resolve GitHub issue #{number}: {title}\n\n{body}"),
            source: format!("github #{number}"),
        })
    }
}
