//! The session archives of sandboxes finished before a time: what the retention would free of
//! the database, and their removal (the records themselves stay).

use chrono::{DateTime, Utc};

use super::sandboxes::AGENT_SESSION;
use super::{Result, Store};

/// The archives of sandboxes that ended before `?1`.
const OLD_SESSIONS: &str = "FROM secrets WHERE name = ?2 AND scope IN (
    SELECT 'sandbox:' || id FROM sandboxes WHERE finished_at IS NOT NULL AND finished_at < ?1
        AND status IN ('completed', 'failed', 'timed_out', 'stopped'))";

/// Archives counted or removed, and their encrypted bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionArchives {
    pub count: u64,
    pub bytes: u64,
}

impl Store {
    /// The agent session archives of sandboxes that ended before `before`.
    pub async fn old_agent_sessions(&self, before: DateTime<Utc>) -> Result<SessionArchives> {
        let (count, bytes): (i64, i64) = sqlx::query_as(&format!(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(ciphertext)), 0) {OLD_SESSIONS}"
        ))
        .bind(before)
        .bind(AGENT_SESSION)
        .fetch_one(&self.pool)
        .await?;
        Ok(SessionArchives {
            count: count as u64,
            bytes: bytes as u64,
        })
    }

    /// Removes the agent session archives of sandboxes that ended before `before`: a follow-up
    /// of one starts a fresh session.
    pub async fn remove_old_agent_sessions(
        &self,
        before: DateTime<Utc>,
    ) -> Result<SessionArchives> {
        let old = self.old_agent_sessions(before).await?;
        sqlx::query(&format!("DELETE {OLD_SESSIONS}"))
            .bind(before)
            .bind(AGENT_SESSION)
            .execute(&self.pool)
            .await?;
        Ok(old)
    }
}
