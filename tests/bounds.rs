//! What a launch may leave behind, bounded: the events stored of a talkative agent
//! (`CODECOURIER_MAX_EVENTS`), and the files and session archives of sandboxes finished longer ago
//! than `CODECOURIER_RETENTION_DAYS` (their records stay).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use codecourier::catalog::{build_custom_tag, Resources};
use codecourier::config::Config;
use codecourier::sandbox::local::LocalProvider;
use codecourier::sandbox::{run_captured, Exec, SandboxProvider, SandboxSpec};
use codecourier::store::Store;
use support::{run_json, World};

/// The `--json` event log of a sandbox, one event a line.
fn events(world: &World, id: &str) -> Vec<serde_json::Value> {
    let out = world
        .std_cmd()
        .args(["sandboxes", "logs", "--json", id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn an_agent_printing_a_million_lines_leaves_at_most_the_cap_and_says_how_many_were_dropped() {
    let world = World::new();
    let mut cmd = world.launch(&["--prompt", "Talk a lot", "--env", "FAKE_CLAUDE=flood"]);
    cmd.env("CODECOURIER_MAX_EVENTS", "500");
    let (code, r, stderr) = run_json(cmd);
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["result"], "Printed 1000000 lines.", "{r:#}");
    assert_eq!(r["num_turns"], 2, "{r:#}");

    let log = events(&world, r["id"].as_str().unwrap());
    let streamed = log
        .iter()
        .filter(|e| {
            let kind = e["kind"].as_str().unwrap();
            kind.starts_with("agent.") || kind == "output"
        })
        .count();
    assert_eq!(streamed, 500);
    let notes: Vec<&str> = log
        .iter()
        .filter(|e| e["kind"] == "note")
        .map(|e| e["payload"]["message"].as_str().unwrap())
        .collect();
    // The agent printed its init, a million messages and its result: all but 500 dropped.
    let dropped = 1_000_002 - 500;
    assert!(
        notes.contains(
            &format!(
            "{dropped} agent events and output lines past the cap of 500 were counted, not stored"
        )
            .as_str()
        ),
        "{notes:#?}"
    );
    assert!(
        notes.iter().any(|n| {
            n.starts_with(
            "the event log keeps at most 500 agent events and output lines (CODECOURIER_MAX_EVENTS)"
        )
        }),
        "{notes:#?}"
    );
    // The phases and the final status are all there.
    let last = log.last().unwrap();
    assert_eq!(last["kind"], "status", "{last:#}");
    assert_eq!(last["payload"]["status"], "completed");
    assert!(log
        .iter()
        .any(|e| e["kind"] == "phase_finished" && e["payload"]["phase"] == "finish"));
    assert!(log.len() < 500 + 60, "{} events", log.len());
}

/// Makes `path`'s last change `days` ago, as time would.
fn age(path: &Path, days: u32) {
    let out = std::process::Command::new("touch")
        .args(["-h", "-d", &format!("{days} days ago")])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn doctor(world: &World) -> String {
    let out = world.std_cmd().arg("doctor").output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_removes_an_old_finished_sandboxs_files_keeps_its_record_and_never_a_running_one()
{
    let world = World::new();
    let (code, r, stderr) = run_json(world.launch(&["--prompt", "Save the prompt"]));
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    let id = r["id"].as_str().unwrap().to_string();
    let data = world.dir.path().join("data");
    let config = Config::from_lookup(|var| {
        (var == "CODECOURIER_DATA_DIR").then(|| data.display().to_string())
    })
    .unwrap();
    let store = Store::open(&config).await.unwrap();
    let sandbox = store.find_sandbox(&id).await.unwrap();
    let finished = data
        .join("sandboxes")
        .join(sandbox.provider_sandbox_id.as_deref().unwrap());
    assert!(finished.join("killed").exists(), "{r:#}");
    assert!(store.agent_session(sandbox.id).await.unwrap().is_some());
    // Young, nothing is due.
    assert!(
        doctor(&world).contains("it would free now: nothing"),
        "{}",
        doctor(&world)
    );

    // A sandbox running now, whose files look as old as can be.
    let provider = LocalProvider::new(&data, None);
    let running = provider
        .create(
            &SandboxSpec {
                template: build_custom_tag("base").unwrap(),
                resources: Resources {
                    memory_mb: 512,
                    cpus: 1,
                    timeout_ms: 120_000,
                },
                env: Vec::new(),
                metadata: BTreeMap::new(),
                mounts: Vec::new(),
                host_tools: Vec::new(),
                network: None,
            },
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    let running_dir = data.join("sandboxes").join(&running.provider_id);
    for path in [running_dir.join("state.json"), running_dir.clone()] {
        age(&path, 400);
    }

    // Twenty days on: the finished sandbox and its session are past the 14 days kept.
    age(&finished.join("killed"), 20);
    let db = sqlx::SqlitePool::connect(&config.database_url)
        .await
        .unwrap();
    sqlx::query("UPDATE sandboxes SET finished_at = ?1 WHERE id = ?2")
        .bind(chrono::Utc::now() - chrono::Duration::days(20))
        .bind(&id)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let said = doctor(&world);
    assert!(
        said.contains(
            "it would free now: 1 finished sandboxes' directories, 1 session archive(s) ("
        ),
        "{said}"
    );
    assert!(said.contains("data directory"), "{said}");

    let said = codecourier::retention::run_once(&store, &data, 14).await;
    assert!(
        said.starts_with("retention: removed what was past 14 days: 1 finished sandboxes' directories, 1 session archive(s)"),
        "{said}"
    );
    assert!(!finished.exists());
    assert!(store.agent_session(sandbox.id).await.unwrap().is_none());
    let kept = store.find_sandbox(&id).await.unwrap();
    assert_eq!(kept.status.to_string(), "completed");
    assert_eq!(kept.result_text, sandbox.result_text);
    assert!(!store.events(kept.id, 0).await.unwrap().is_empty());

    // The running sandbox is untouched and still runs.
    let out = run_captured(
        &provider,
        &running,
        &Exec {
            argv: vec!["sh".into(), "-c".into(), "echo alive".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(out.stdout, "alive\n");
    assert!(running_dir.join("state.json").exists());
    provider.kill(&running.provider_id).await.unwrap();
    // Once ended, it waits its own days.
    assert!(codecourier::retention::run_once(&store, &data, 14)
        .await
        .ends_with("past 14 days: nothing"));
    assert!(running_dir.exists());
}
