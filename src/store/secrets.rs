//! Secrets at rest: sealed with the store's key, bound to their scope and name.

use chrono::Utc;
use sqlx::SqliteConnection;

use super::{Result, Store};
use crate::secret::Secret;

impl Store {
    /// Stores (or replaces) a secret. `scope` says whose it is: `global`, `project:<id>`, `sandbox:<id>`.
    pub async fn put_secret(&self, scope: &str, name: &str, value: &Secret) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        self.write_secret(&mut conn, scope, name, value).await
    }

    /// `put_secret` on a given connection, so it can join the caller's transaction.
    pub(super) async fn write_secret(
        &self,
        conn: &mut SqliteConnection,
        scope: &str,
        name: &str,
        value: &Secret,
    ) -> Result<()> {
        let (nonce, sealed) = self
            .key
            .seal(&format!("{scope}/{name}"), value.expose().as_bytes());
        let now = Utc::now();
        sqlx::query(
            "INSERT INTO secrets (scope, name, nonce, ciphertext, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (scope, name) DO UPDATE SET
                nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(scope)
        .bind(name)
        .bind(nonce)
        .bind(sealed)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub async fn get_secret(&self, scope: &str, name: &str) -> Result<Option<Secret>> {
        let row: Option<(Vec<u8>, Vec<u8>)> =
            sqlx::query_as("SELECT nonce, ciphertext FROM secrets WHERE scope = ?1 AND name = ?2")
                .bind(scope)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        let Some((nonce, sealed)) = row else {
            return Ok(None);
        };
        let plain = self.key.open(&format!("{scope}/{name}"), &nonce, &sealed)?;
        let text = String::from_utf8(plain)
            .map_err(|_| anyhow::anyhow!("stored secret {scope}/{name} is not UTF-8"))?;
        Ok(Some(Secret::new(text)))
    }
}

/// Variables (a sandbox's `--env`, a project's environment) are stored as one secret: a JSON object.
pub(super) const ENV_SECRET: &str = "env";

pub(super) fn env_to_secret(pairs: &[(String, Secret)]) -> Secret {
    let values: std::collections::BTreeMap<&str, &str> = pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.expose()))
        .collect();
    Secret::new(serde_json::to_string(&values).expect("a map of strings serialises"))
}

impl Store {
    /// The variables stored under `scope`, decrypted, in name order.
    pub async fn get_env(&self, scope: &str) -> Result<Vec<(String, Secret)>> {
        let Some(json) = self.get_secret(scope, ENV_SECRET).await? else {
            return Ok(Vec::new());
        };
        let values: std::collections::BTreeMap<String, String> =
            serde_json::from_str(json.expose()).map_err(|_| {
                anyhow::anyhow!("stored variables of {scope} are not a JSON object")
            })?;
        Ok(values
            .into_iter()
            .map(|(n, v)| (n, Secret::new(v)))
            .collect())
    }

    /// Replaces the variables stored under `scope`.
    pub async fn put_env(&self, scope: &str, pairs: &[(String, Secret)]) -> Result<()> {
        self.put_secret(scope, ENV_SECRET, &env_to_secret(pairs))
            .await
    }

    /// Removes a secret; `false` when there was none.
    pub async fn delete_secret(&self, scope: &str, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM secrets WHERE scope = ?1 AND name = ?2")
            .bind(scope)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The names of the variables and of the keys stored under `scope` (never their values).
    pub async fn setting_names(&self, scope: &str) -> Result<(Vec<String>, Vec<String>)> {
        let variables = self
            .get_env(scope)
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let mut keys = self.secret_names(scope).await?;
        keys.retain(|n| n != ENV_SECRET);
        Ok((variables, keys))
    }

    /// Which secrets exist under `scope`, by name (never their values).
    pub async fn secret_names(&self, scope: &str) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT name FROM secrets WHERE scope = ?1 ORDER BY name")
                .bind(scope)
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
