//! Every migration applies to an empty database, and to a database holding sample rows written with
//! the schema before it (tests/data/migrations/<same file name>.sql). A new migration needs a sample file.

use std::str::FromStr;

use codecourier::catalog::{LaunchMode, ScanTask};
use codecourier::ids::{DiscordId, SandboxId};
use codecourier::model::SandboxStatus;
use codecourier::secret::{KeySource, SecretKey};
use codecourier::store::{Store, MIGRATOR};
use sqlx::migrate::Migrate;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

fn sample_rows(version: i64) -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/migrations");
    let prefix = format!("{version:04}_");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .unwrap_or_else(|| panic!("migration {version} needs sample rows in {}", dir.display()));
    std::fs::read_to_string(file).unwrap()
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/empty.db", dir.path().display());
    let store = Store::open_with_key(&url, SecretKey::generate(), KeySource::Environment)
        .await
        .unwrap();
    assert_eq!(
        store.applied_migrations().await.unwrap(),
        MIGRATOR.iter().count() as i64
    );
}

#[tokio::test]
async fn each_migration_keeps_the_rows_written_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/upgrade.db", dir.path().display());
    let mut conn = SqliteConnectOptions::from_str(&url)
        .unwrap()
        .create_if_missing(true)
        .foreign_keys(true)
        .connect()
        .await
        .unwrap();
    conn.ensure_migrations_table().await.unwrap();
    for migration in MIGRATOR.iter() {
        conn.apply(migration)
            .await
            .unwrap_or_else(|e| panic!("migration {} on sample data: {e}", migration.version));
        sqlx::raw_sql(&sample_rows(migration.version))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("sample rows for {}: {e}", migration.version));
    }
    let violations: Vec<(String, i64, String, i64)> = sqlx::query_as("PRAGMA foreign_key_check")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(violations.is_empty(), "{violations:?}");
    conn.close().await.unwrap();

    // Opening through the store runs the migrator again: nothing left to apply, nothing changed.
    let store = Store::open_with_key(&url, SecretKey::generate(), KeySource::Environment)
        .await
        .unwrap();
    let id: SandboxId = "7f1e2d3c-4b5a-4678-9abc-def012345678".parse().unwrap();
    let record = store
        .get_sandbox(id)
        .await
        .unwrap()
        .expect("sample sandbox survives");
    assert_eq!(record.status, SandboxStatus::Completed);
    assert_eq!(record.request.repo.to_string(), "acme/widgets");
    assert_eq!(record.discord.user_id, Some(DiscordId(u64::MAX)));
    assert_eq!(
        record.issue_session_id.as_deref(),
        Some("0c9a8b7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d")
    );
    assert_eq!(record.pushed, Some(true));
    assert_eq!(record.phases.len(), 1);
    assert_eq!(store.events(id, 0).await.unwrap()[0].kind, "agent.text");

    // Each launch's mode reads from the request JSON as it was written: a work launch from before
    // the scan and checker fields existed, a scan, and a workflow's checker.
    assert_eq!(record.request.mode, LaunchMode::Work);
    let scan: SandboxId = "5ca55ca5-0000-4000-8000-000000000002".parse().unwrap();
    let scan = store
        .get_sandbox(scan)
        .await
        .unwrap()
        .expect("scan sandbox");
    assert_eq!(
        scan.request.mode,
        LaunchMode::Scan(ScanTask {
            max_issues: 20,
            focus: Some("security".into())
        })
    );
    let checker: SandboxId = "c4ec4e00-0000-4000-8000-000000000004".parse().unwrap();
    let checker = store
        .get_sandbox(checker)
        .await
        .unwrap()
        .expect("checker sandbox");
    assert_eq!(checker.request.mode, LaunchMode::Check);
    assert_eq!(
        checker.request.follow_up.map(|f| f.branch).as_deref(),
        Some("codecourier/chain-c0c0c0c0")
    );
}
