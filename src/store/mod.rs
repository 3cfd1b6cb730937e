//! SQLite through sqlx: the one place that holds SQL. Records for sandboxes, their phases and
//! events, issue sessions, projects, workflows and their jobs (runs and chains) with their steps,
//! and secrets encrypted at rest.

mod issues;
mod jobs;
mod projects;
mod retention;
mod sandbox_log;
mod sandboxes;
mod secrets;
mod steps;
mod usage;
mod workflows;

pub use issues::{IssueRecord, IssueSession, NewIssueSession};
pub use jobs::{
    ChainWork, JobEnd, JobMeta, JobOwner, JobRecord, JobStatus, NewJob, NewWork, RunWork, Work,
};
pub use projects::{Learning, Project, ProjectChange};
pub use retention::SessionArchives;
pub use sandbox_log::{EventRecord, PhaseRecord};
pub use sandboxes::{
    CapReached, Commit, DiscordOrigin, Finish, IssueSessionLink, NewSandbox, RunningCaps,
    SandboxFilter, SandboxRecord,
};
pub use steps::{NewStep, StepEnding, StepRecord, StepStatus, WorkflowLink};
pub use usage::{MeteredModel, MeteredTotal, ModelUsage, UsageReport, UsageRow, UsageScope};
pub use workflows::StoredWorkflow;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::config::Config;
use crate::ids::SandboxId;
use crate::model::IllegalTransition;
use crate::secret::{KeySource, SecretKey};

/// Errors a caller branches on; everything else is `Other`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no sandbox matches \"{0}\"; `codecourier sandboxes list` shows the ids")]
    NotFound(String),
    #[error("\"{0}\" matches {1} sandboxes; give more characters of the id")]
    Ambiguous(String, usize),
    #[error("sandbox {id}: {source}")]
    IllegalTransition {
        id: SandboxId,
        source: IllegalTransition,
    },
    /// A launch would exceed a running cap; nothing was recorded.
    #[error(transparent)]
    AtCapacity(#[from] sandboxes::CapReached),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Other(e.into())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    key: SecretKey,
    key_source: KeySource,
}

impl Store {
    /// Creates the data directory, the secret key and the database as needed, and migrates it.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {} (CODECOURIER_DATA_DIR)",
                config.data_dir.display()
            )
        })?;
        let (key, key_source) =
            SecretKey::load_or_create(config.secret_key.as_ref(), &config.data_dir)?;
        Self::open_with_key(&config.database_url, key, key_source).await
    }

    pub async fn open_with_key(
        database_url: &str,
        key: SecretKey,
        key_source: KeySource,
    ) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(database_url)
            .with_context(|| format!("DATABASE_URL {database_url} is not a SQLite URL"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(parent) = options.get_filename().parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).with_context(|| {
                    format!("cannot create the database directory {}", parent.display())
                })?;
            }
        }
        let options_for_lock = options.clone();
        // SQLite can answer "database is locked" at once, without waiting through the busy
        // timeout, while another process sets the file up or checkpoints it on close (seen once
        // under a loaded test run, not reproduced alone): a few spaced retries ride that out.
        let mut attempt = 0;
        let pool = loop {
            match SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(options.clone())
                .await
            {
                Err(e) if attempt < OPEN_RETRIES && is_busy(&e) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                other => {
                    break other
                        .with_context(|| format!("cannot open the database {database_url}"))?
                }
            }
        };
        // Two commands started together on a new database would both try to apply the first
        // migration; a file lock beside the database makes the second wait and find it done.
        let _guard = MigrationLock::acquire(options_for_lock.get_filename()).await?;
        MIGRATOR.run(&pool).await.with_context(|| {
            format!(
                "cannot migrate the database {database_url}; if a newer CodeCourier created it, run that version or point DATABASE_URL at a new file"
            )
        })?;
        Ok(Self {
            pool,
            key,
            key_source,
        })
    }

    pub fn key_source(&self) -> &KeySource {
        &self.key_source
    }

    /// How many migrations the database has applied (for `doctor`).
    pub async fn applied_migrations(&self) -> Result<i64> {
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    pub async fn close(self) {
        self.pool.close().await;
    }

    /// The id in `table` that is `id_or_prefix` or starts with it (at least four characters).
    /// `what` names the records in the error ("workflow run").
    async fn find_id(&self, table: &str, id_or_prefix: &str, what: &str) -> Result<String> {
        let wanted = id_or_prefix.trim().to_ascii_lowercase();
        let not_found = || StoreError::Other(anyhow::anyhow!("no {what} matches \"{wanted}\""));
        if wanted.len() < 4 || !wanted.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(not_found());
        }
        let ids: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT id FROM {table} WHERE substr(id, 1, length(?1)) = ?1 LIMIT 10"
        ))
        .bind(&wanted)
        .fetch_all(&self.pool)
        .await?;
        match ids.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(not_found()),
            many => Err(StoreError::Other(anyhow::anyhow!(
                "\"{wanted}\" matches {} {what}s; give more characters of the id",
                many.len()
            ))),
        }
    }
}

/// How often opening is retried when SQLite reports the file busy.
const OPEN_RETRIES: u64 = 6;

fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|c| c == "5" || c == "6") || db.message().contains("locked")
        }
        _ => false,
    }
}

/// An exclusive `flock` on `<database>.lock`, released when dropped.
struct MigrationLock(std::fs::File);

impl MigrationLock {
    async fn acquire(database: &std::path::Path) -> anyhow::Result<Self> {
        let mut path = database.as_os_str().to_owned();
        path.push(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| {
                format!(
                    "cannot open the lock file {}",
                    std::path::Path::new(&path).display()
                )
            })?;
        tokio::task::spawn_blocking(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor we own; it blocks until the lock is ours.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(anyhow::Error::from(std::io::Error::last_os_error())
                    .context("cannot lock the database for migration"));
            }
            Ok(Self(file))
        })
        .await?
    }
}

impl Drop for MigrationLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking a descriptor we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}
