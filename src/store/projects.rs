//! Projects: a repository's standing instructions and what earlier runs learned about it.

use chrono::Utc;
use serde::Serialize;
use sqlx::FromRow;

use super::{Result, Store};

/// Learnings beyond this are trimmed from the oldest end: they are compiled into every prompt.
const MAX_LEARNINGS_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub repo: String,
    pub base_branch: Option<String>,
    pub system_prompt: Option<String>,
    pub learnings: String,
    pub skills_json: String,
    pub commands_json: String,
}

/// A skill (`SKILL.md` body) or a slash command, as stored on a project.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct NamedText {
    pub name: String,
    pub text: String,
}

impl Project {
    pub fn skills(&self) -> Vec<NamedText> {
        serde_json::from_str(&self.skills_json).unwrap_or_default()
    }

    pub fn commands(&self) -> Vec<NamedText> {
        serde_json::from_str(&self.commands_json).unwrap_or_default()
    }
}

const COLUMNS: &str =
    "id, name, repo, base_branch, system_prompt, learnings, skills_json, commands_json";

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

    /// Appends learnings (lines already known are skipped) and trims the oldest past the cap.
    pub async fn add_learnings(&self, project_id: i64, new: &str) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let current: String = sqlx::query_scalar("SELECT learnings FROM projects WHERE id = ?1")
            .bind(project_id)
            .fetch_one(&mut *tx)
            .await?;
        let mut lines: Vec<String> = current.lines().map(str::to_string).collect();
        let mut added = 0;
        for line in new.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if !lines.iter().any(|l| l.trim() == line) {
                lines.push(line.to_string());
                added += 1;
            }
        }
        while lines.iter().map(|l| l.len() + 1).sum::<usize>() > MAX_LEARNINGS_BYTES
            && !lines.is_empty()
        {
            lines.remove(0);
        }
        sqlx::query("UPDATE projects SET learnings = ?1, updated_at = ?2 WHERE id = ?3")
            .bind(lines.join("\n"))
            .bind(Utc::now())
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(added)
    }
}
