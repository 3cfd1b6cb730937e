//! Workflow definitions a project stores; the built-in `default` lives in the code.

use anyhow::Context;
use chrono::Utc;
use serde::Serialize;
use sqlx::Row;

use super::{Result, Store, StoreError};
use crate::model::workflow::{WorkflowDef, DEFAULT_WORKFLOW};

/// A project's workflow as stored.
#[derive(Debug, Clone, Serialize)]
pub struct StoredWorkflow {
    pub project_id: Option<i64>,
    pub definition: WorkflowDef,
    pub created_by: String,
}

impl Store {
    /// Stores a project's workflow; the name must be new in the project, and not the built-in's.
    pub async fn create_workflow(
        &self,
        project_id: Option<i64>,
        definition: &WorkflowDef,
        created_by: &str,
    ) -> Result<()> {
        if definition.name.trim() == DEFAULT_WORKFLOW {
            return Err(StoreError::Other(anyhow::anyhow!(
                "\"{}\" is the built-in workflow's name; choose another",
                definition.name
            )));
        }
        let now = Utc::now();
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT id FROM workflows WHERE project_id IS ?1 AND name = ?2")
                .bind(project_id)
                .bind(&definition.name)
                .fetch_optional(&self.pool)
                .await?;
        if exists.is_some() {
            return Err(StoreError::Other(anyhow::anyhow!(
                "a workflow named \"{}\" exists already; choose another name",
                definition.name
            )));
        }
        sqlx::query(
            "INSERT INTO workflows (project_id, name, definition_json, created_by, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )
        .bind(project_id)
        .bind(&definition.name)
        .bind(serde_json::to_string(definition).context("serialising the workflow")?)
        .bind(created_by)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A project's workflows (and those made without a project), by name.
    pub async fn list_workflows(&self, project_id: Option<i64>) -> Result<Vec<StoredWorkflow>> {
        let rows = sqlx::query(
            "SELECT project_id, definition_json, created_by FROM workflows
             WHERE project_id IS ?1 OR project_id IS NULL ORDER BY name",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let json: String = row.try_get("definition_json")?;
                Ok(StoredWorkflow {
                    project_id: row.try_get("project_id")?,
                    definition: serde_json::from_str(&json).context("a stored workflow")?,
                    created_by: row.try_get("created_by")?,
                })
            })
            .collect()
    }
}
