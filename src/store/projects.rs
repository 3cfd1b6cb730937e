//! Projects: a repository's standing instructions and what earlier runs learned about it.

use chrono::Utc;
use serde::Serialize;
use sqlx::FromRow;

use super::{Result, Store};
use crate::model::NamedText;

/// Accepted learnings compiled into a prompt stop at this size (the newest are kept).
const MAX_LEARNINGS_BYTES: usize = 16 * 1024;
/// One proposed learning is cut at this length; one run proposes at most `MAX_PROPOSED_PER_RUN`.
const MAX_LEARNING_CHARS: usize = 500;
const MAX_PROPOSED_PER_RUN: usize = 20;
/// Proposals waiting for review beyond this are dropped, oldest first.
const MAX_PENDING: i64 = 100;

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub repo: String,
    pub base_branch: Option<String>,
    pub system_prompt: Option<String>,
    /// The accepted learnings, oldest first, one per line (proposals are not here).
    pub learnings: String,
    pub skills_json: String,
    pub commands_json: String,
    /// New learnings are accepted without review.
    pub auto_accept_learnings: bool,
    /// A shell script the setup phase runs in the project directory before the agent.
    pub setup_script: Option<String>,
    /// Without a script, the setup phase installs what the repository's lockfiles name.
    pub auto_setup: bool,
    /// Pushes may change `.github/workflows/`.
    pub allow_workflow_changes: bool,
    /// The budget in US dollars of its launches that set none.
    pub default_budget_usd: Option<f64>,
}

/// Settings to change on a project: `None` leaves one as it is; for the optional texts,
/// `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ProjectChange {
    pub base_branch: Option<Option<String>>,
    pub system_prompt: Option<Option<String>>,
    pub setup_script: Option<Option<String>>,
    pub auto_setup: Option<bool>,
    pub auto_accept_learnings: Option<bool>,
    pub allow_workflow_changes: Option<bool>,
    pub default_budget_usd: Option<Option<f64>>,
}

/// A learning an agent proposed, and whether a manager accepted it.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Learning {
    pub id: i64,
    pub text: String,
    pub status: String,
    pub sandbox_id: Option<String>,
    pub proposed_at: chrono::DateTime<Utc>,
    pub decided_by: Option<String>,
}

impl Learning {
    pub fn accepted(&self) -> bool {
        self.status == "accepted"
    }
}

impl Project {
    pub fn skills(&self) -> Vec<NamedText> {
        serde_json::from_str(&self.skills_json).unwrap_or_default()
    }

    pub fn commands(&self) -> Vec<NamedText> {
        serde_json::from_str(&self.commands_json).unwrap_or_default()
    }
}

const COLUMNS: &str = "id, name, repo, base_branch, system_prompt, skills_json, commands_json,
    auto_accept_learnings, setup_script, auto_setup, allow_workflow_changes, default_budget_usd,
    COALESCE((SELECT group_concat(text, char(10)) FROM
        (SELECT text FROM learnings WHERE project_id = projects.id AND status = 'accepted' ORDER BY id)),
        '') AS learnings";

impl Store {
    /// The project for a repository, created on first use (a terminal launch names only the repo).
    pub async fn project_for_repo(&self, repo: &str) -> Result<Project> {
        let now = Utc::now();
        sqlx::query(
            "INSERT INTO projects (name, repo, created_at, updated_at)
             SELECT ?1, ?1, ?2, ?2 WHERE NOT EXISTS (SELECT 1 FROM projects WHERE repo = ?1)",
        )
        .bind(repo)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let project = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM projects WHERE repo = ?1 ORDER BY id LIMIT 1"
        ))
        .bind(repo)
        .fetch_one(&self.pool)
        .await?;
        Ok(project)
    }

    /// Binds a Discord channel to a repository (creating or updating its project).
    pub async fn bind_channel_project(
        &self,
        channel: crate::ids::DiscordId,
        guild: Option<crate::ids::DiscordId>,
        repo: &str,
        base_branch: Option<&str>,
        system_prompt: Option<&str>,
    ) -> Result<Project> {
        let now = Utc::now();
        sqlx::query(
            "INSERT INTO projects (name, repo, base_branch, system_prompt, discord_guild_id, discord_channel_id, created_at, updated_at)
             VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT (discord_channel_id) DO UPDATE SET
                name = excluded.name, repo = excluded.repo, base_branch = excluded.base_branch,
                system_prompt = excluded.system_prompt, updated_at = excluded.updated_at",
        )
        .bind(repo)
        .bind(base_branch)
        .bind(system_prompt)
        .bind(guild.map(|g| g.to_string()))
        .bind(channel.to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(self
            .project_for_channel(channel)
            .await?
            .expect("the row was just written"))
    }

    /// The project a Discord channel is bound to, if any.
    pub async fn project_for_channel(
        &self,
        channel: crate::ids::DiscordId,
    ) -> Result<Option<Project>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM projects WHERE discord_channel_id = ?1"
        ))
        .bind(channel.to_string())
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn get_project(&self, id: i64) -> Result<Option<Project>> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM projects WHERE id = ?1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The projects bound to channels of a Discord server.
    pub async fn projects_in_guild(&self, guild: crate::ids::DiscordId) -> Result<Vec<Project>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM projects WHERE discord_guild_id = ?1 ORDER BY id"
        ))
        .bind(guild.to_string())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every project, by id.
    pub async fn list_projects(&self) -> Result<Vec<Project>> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM projects ORDER BY id"))
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Changes the settings given (`Some`), leaving the others as they are.
    pub async fn update_project(&self, id: i64, change: &ProjectChange) -> Result<()> {
        sqlx::query(
            "UPDATE projects SET
                base_branch = CASE WHEN ?2 THEN ?3 ELSE base_branch END,
                system_prompt = CASE WHEN ?4 THEN ?5 ELSE system_prompt END,
                setup_script = CASE WHEN ?6 THEN ?7 ELSE setup_script END,
                auto_setup = COALESCE(?8, auto_setup),
                auto_accept_learnings = COALESCE(?9, auto_accept_learnings),
                allow_workflow_changes = COALESCE(?10, allow_workflow_changes),
                updated_at = ?11,
                default_budget_usd = CASE WHEN ?12 THEN ?13 ELSE default_budget_usd END
             WHERE id = ?1",
        )
        .bind(id)
        .bind(change.base_branch.is_some())
        .bind(change.base_branch.clone().flatten())
        .bind(change.system_prompt.is_some())
        .bind(change.system_prompt.clone().flatten())
        .bind(change.setup_script.is_some())
        .bind(change.setup_script.clone().flatten())
        .bind(change.auto_setup)
        .bind(change.auto_accept_learnings)
        .bind(change.allow_workflow_changes)
        .bind(Utc::now())
        .bind(change.default_budget_usd.is_some())
        .bind(change.default_budget_usd.flatten())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replaces the project's skills.
    pub async fn set_skills(&self, id: i64, skills: &[NamedText]) -> Result<()> {
        self.set_named_texts(id, "skills_json", skills).await
    }

    /// Replaces the project's commands.
    pub async fn set_commands(&self, id: i64, commands: &[NamedText]) -> Result<()> {
        self.set_named_texts(id, "commands_json", commands).await
    }

    async fn set_named_texts(&self, id: i64, column: &str, items: &[NamedText]) -> Result<()> {
        let json = serde_json::to_string(items).map_err(anyhow::Error::from)?;
        sqlx::query(&format!(
            "UPDATE projects SET {column} = ?2, updated_at = ?3 WHERE id = ?1"
        ))
        .bind(id)
        .bind(json)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records what a run learned: each new line a proposal (accepted at once when the project
    /// says so); lines already known are skipped. Returns how many were added.
    pub async fn add_learnings(&self, project_id: i64, new: &str) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let auto: bool =
            sqlx::query_scalar("SELECT auto_accept_learnings FROM projects WHERE id = ?1")
                .bind(project_id)
                .fetch_one(&mut *tx)
                .await?;
        let now = Utc::now();
        let mut added = 0;
        let lines = new.lines().map(str::trim).filter(|l| !l.is_empty());
        for line in lines.take(MAX_PROPOSED_PER_RUN) {
            let line: String = line.chars().take(MAX_LEARNING_CHARS).collect();
            let inserted = sqlx::query(
                "INSERT OR IGNORE INTO learnings (project_id, text, status, proposed_at, decided_by,
                    decided_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .bind(project_id)
            .bind(&line)
            .bind(if auto { "accepted" } else { "proposed" })
            .bind(now)
            .bind(auto.then_some("automatically"))
            .bind(auto.then_some(now))
            .execute(&mut *tx)
            .await?;
            added += inserted.rows_affected() as usize;
        }
        sqlx::query(
            "DELETE FROM learnings WHERE project_id = ?1 AND status = 'proposed' AND id NOT IN
                (SELECT id FROM learnings WHERE project_id = ?1 AND status = 'proposed'
                 ORDER BY id DESC LIMIT ?2)",
        )
        .bind(project_id)
        .bind(MAX_PENDING)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(added)
    }

    /// A project's learnings, proposals and accepted ones, oldest first.
    pub async fn learnings(&self, project_id: i64) -> Result<Vec<Learning>> {
        Ok(sqlx::query_as(
            "SELECT id, text, status, sandbox_id, proposed_at, decided_by FROM learnings
             WHERE project_id = ?1 ORDER BY id",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Accepts a proposed learning of the project; `false` when it has none with that id.
    pub async fn accept_learning(&self, project_id: i64, id: i64, by: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE learnings SET status = 'accepted', decided_by = ?3, decided_at = ?4
             WHERE project_id = ?1 AND id = ?2",
        )
        .bind(project_id)
        .bind(id)
        .bind(by)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes a learning (proposed or accepted) of the project; `false` when it has none.
    pub async fn remove_learning(&self, project_id: i64, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM learnings WHERE project_id = ?1 AND id = ?2")
            .bind(project_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether new learnings of the project skip review.
    pub async fn set_auto_accept_learnings(&self, project_id: i64, on: bool) -> Result<()> {
        sqlx::query(
            "UPDATE projects SET auto_accept_learnings = ?2, updated_at = ?3 WHERE id = ?1",
        )
        .bind(project_id)
        .bind(on)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl Project {
    /// This project with none of its team's settings: for a launch recorded under it that may
    /// not use them (a repository named from another channel).
    pub fn without_team_settings(self) -> Self {
        Self {
            system_prompt: None,
            learnings: String::new(),
            skills_json: "[]".into(),
            commands_json: "[]".into(),
            setup_script: None,
            ..self
        }
    }

    /// The accepted learnings that fit a prompt: the newest, up to `MAX_LEARNINGS_BYTES`.
    pub fn compiled_learnings(&self) -> String {
        let mut kept: Vec<&str> = Vec::new();
        let mut size = 0;
        for line in self.learnings.lines().rev() {
            size += line.len() + 1;
            if size > MAX_LEARNINGS_BYTES {
                break;
            }
            kept.push(line);
        }
        kept.reverse();
        kept.join("\n")
    }
}
