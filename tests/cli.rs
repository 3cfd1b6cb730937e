//! The built binary, run as a user would: a fresh directory, no configuration but what the test sets.

use assert_cmd::Command;
use predicates::prelude::*;

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `codecourier` in an empty working directory with a clean environment (no stray .env, no keys).
    fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("codecourier").unwrap();
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path());
        cmd
    }

    fn sandboxes_json(&self) -> serde_json::Value {
        let out = self
            .cmd()
            .args(["sandboxes", "list", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

#[test]
fn help_lists_every_command() {
    let out = Sandbox::new().cmd().arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for command in ["serve", "launch", "scan", "sandboxes", "tools", "doctor"] {
        assert!(
            help.contains(&format!("  {command} ")),
            "{command} missing from:\n{help}"
        );
    }
}

#[test]
fn tools_json_lists_four_tools_with_claude_code_default() {
    let out = Sandbox::new()
        .cmd()
        .args(["tools", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let catalog: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tools = catalog["tools"].as_array().unwrap();
    let ids: Vec<&str> = tools.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["claude-code", "opencode", "codex", "pi"]);
    let defaults: Vec<&str> = tools
        .iter()
        .filter(|t| t["default"] == true)
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(defaults, ["Claude Code"]);
    assert_eq!(catalog["default_tool"], "claude-code");
    assert_eq!(tools[0]["default_model"], "claude-sonnet-4-6");
    assert_eq!(tools[0]["default_effort"]["claude-sonnet-4-6"], "medium");
    assert_eq!(tools[0]["default_effort"]["claude-opus-4-6"], "high");
    assert_eq!(tools[0]["default_effort"]["claude-haiku-4-5"], "none");
    assert_eq!(tools[2]["default_effort"]["gpt-5.4-codex"], "high");
    assert_eq!(tools[0]["capabilities"]["resume_session"], true);
    assert_eq!(tools[1]["capabilities"]["resume_session"], false);
    assert_eq!(catalog["limits"]["memory_mb"]["max"], 8192);
}

#[test]
fn tools_table_marks_the_default() {
    Sandbox::new()
        .cmd()
        .arg("tools")
        .assert()
        .success()
        .stdout(predicate::str::contains("claude-code (default)"))
        .stdout(predicate::str::contains("claude-opus-4-6 · high"))
        .stdout(predicate::str::contains("resume session"))
        .stdout(predicate::str::contains("256–8192 MB"));
}

#[test]
fn invalid_launch_exits_2_names_the_range_and_records_nothing() {
    let s = Sandbox::new();
    s.cmd()
        .args([
            "launch",
            "--repo",
            "acme/widgets",
            "--prompt",
            "Add a README",
            "--memory-mb",
            "100",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--memory-mb: 100 is outside the allowed range 256–8192 MB",
        ));
    assert_eq!(s.sandboxes_json(), serde_json::json!([]));
}

#[test]
fn every_invalid_flag_is_reported_at_once() {
    Sandbox::new()
        .cmd()
        .args([
            "launch",
            "--repo",
            "acme",
            "--prompt",
            " ",
            "--tool",
            "opencode",
            "--effort",
            "high",
            "--cpus",
            "0",
            "--timeout",
            "59s",
            "--template",
            "Bad Name",
            "--env",
            "NOPE",
        ])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("--prompt: is empty")
                .and(predicate::str::contains("--repo: \"acme\""))
                .and(predicate::str::contains(
                    "--effort: \"high\" is not available for OpenCode",
                ))
                .and(predicate::str::contains(
                    "--cpus: 0 is outside the allowed range 1–8",
                ))
                .and(predicate::str::contains("--timeout: \"59s\""))
                .and(predicate::str::contains("--template: \"Bad Name\""))
                .and(predicate::str::contains("--env: \"NOPE\" is not KEY=VALUE")),
        );
}

#[test]
fn dry_run_shows_the_resolved_request_with_defaults() {
    let s = Sandbox::new();
    let prompt_file = s.dir.path().join("prompt.md");
    std::fs::write(&prompt_file, "-- starts with dashes\nand has two lines").unwrap();
    let out = s
        .cmd()
        .args([
            "launch",
            "--repo",
            "https://github.com/acme/widgets.git",
            "--tool",
            "codex",
            "--effort",
            "low",
        ])
        .arg("--prompt-file")
        .arg(&prompt_file)
        .args([
            "--timeout",
            "90s",
            "--env",
            "TOKEN=sk-do-not-print",
            "--dry-run",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains("sk-do-not-print"));
    let request: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        request["repo"],
        serde_json::json!({"kind": "github", "owner": "acme", "name": "widgets"})
    );
    assert_eq!(request["model"], "gpt-5.4");
    assert_eq!(request["effort"], "low");
    assert_eq!(request["resources"]["timeout_ms"], 90_000);
    assert_eq!(request["env_names"], serde_json::json!(["TOKEN"]));
    assert_eq!(
        request["prompt"],
        "-- starts with dashes\nand has two lines"
    );
}

#[test]
fn a_prompt_starting_with_a_dash_is_a_prompt() {
    Sandbox::new()
        .cmd()
        .args([
            "launch",
            "--repo",
            "acme/widgets",
            "--prompt",
            "--help me",
            "--dry-run",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("--help me"));
}

#[test]
fn configuration_problems_are_named_and_exit_2() {
    Sandbox::new()
        .cmd()
        .env("SANDBOX_PROVIDER", "docker")
        .env("DISCORD_GUILD_ID", "my server")
        .args(["sandboxes", "list"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("2 configuration problems")
                .and(predicate::str::contains(
                    "SANDBOX_PROVIDER: \"docker\" is not a provider; choose local or e2b",
                ))
                .and(predicate::str::contains("DISCORD_GUILD_ID")),
        );
}

#[test]
fn a_dotenv_file_is_read() {
    let s = Sandbox::new();
    std::fs::write(
        s.dir.path().join(".env"),
        "CODECOURIER_DATA_DIR=elsewhere\n",
    )
    .unwrap();
    s.cmd().args(["sandboxes", "list"]).assert().success();
    assert!(s.dir.path().join("elsewhere/codecourier.db").exists());
}

#[test]
fn the_first_command_creates_the_data_directory_and_database() {
    let s = Sandbox::new();
    s.cmd()
        .args(["sandboxes", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("No sandboxes yet"));
    assert!(s.dir.path().join("data/codecourier.db").exists());
    assert!(s.dir.path().join("data/secret.key").exists());
}

#[test]
fn show_names_an_unknown_sandbox() {
    Sandbox::new()
        .cmd()
        .args(["sandboxes", "show", "deadbeef"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no sandbox matches \"deadbeef\""));
}

#[test]
fn doctor_reports_missing_keys_without_failing_and_bad_config_with_failing() {
    let s = Sandbox::new();
    s.cmd()
        .env("ANTHROPIC_API_KEY", "sk-ant-planted")
        .arg("doctor")
        .assert()
        .success()
        .stdout(
            predicate::str::contains("✓ Claude Code: key present")
                .and(predicate::str::contains(
                    "! Codex: no key; set OPENAI_API_KEY",
                ))
                .and(predicate::str::is_match("[0-9]+ of [0-9]+ migrations applied").unwrap())
                .and(predicate::str::contains("sk-ant-planted").not()),
        );
    s.cmd()
        .env("CODECOURIER_SECRET_KEY", "short-and-secret")
        .arg("doctor")
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("✗ CODECOURIER_SECRET_KEY")
                .and(predicate::str::contains("short-and-secret").not()),
        );
}

#[tokio::test]
async fn list_and_show_read_the_records() {
    use codecourier::catalog::{Catalog, LaunchInput};
    use codecourier::config::Config;
    use codecourier::model::{Phase, PhaseOutcome};
    use codecourier::store::{NewSandbox, Store};

    let s = Sandbox::new();
    let data_dir = s.dir.path().join("data").display().to_string();
    let config =
        Config::from_lookup(|name| (name == "CODECOURIER_DATA_DIR").then(|| data_dir.clone()))
            .unwrap();
    let store = Store::open(&config).await.unwrap();
    let request = LaunchInput {
        prompt: Some("Fix the flaky test\nin ci.yml".into()),
        repo: Some("acme/widgets".into()),
        tool: Some("pi".into()),
        ..Default::default()
    }
    .validate(&Catalog::built_in(), false)
    .unwrap();
    let id = store
        .insert_sandbox(&NewSandbox {
            request: &request,
            launched_by: "alice",
            discord: None,
            project_id: None,
            issue_session: None,
            workflow: None,
            caps: Default::default(),
        })
        .await
        .unwrap();
    store.start_phase(id, Phase::Provision).await.unwrap();
    store
        .end_phase(
            id,
            Phase::Provision,
            PhaseOutcome::Failed,
            Some("no capacity"),
        )
        .await
        .unwrap();
    store.close().await;

    s.cmd()
        .args(["sandboxes", "list"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains(id.short())
                .and(predicate::str::contains("Fix the flaky test")),
        );
    s.cmd()
        .args(["sandboxes", "show", &id.short()])
        .assert()
        .success()
        .stdout(
            predicate::str::contains(format!("Sandbox {id} — creating"))
                .and(predicate::str::contains("by alice"))
                .and(predicate::str::contains("✗ provision"))
                .and(predicate::str::contains("no capacity")),
        );
    let out = s
        .cmd()
        .args(["sandboxes", "show", &id.to_string(), "--json"])
        .output()
        .unwrap();
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["id"], id.to_string());
    assert_eq!(record["request"]["tool"], "pi");
    assert_eq!(record["failed_phase"], "provision");
}

/// Commands open and close the database all the time (a poller, a launch, a bot). When the last
/// connection closes, SQLite checkpoints and removes the WAL; a command opening just then used to
/// fail with "database is locked". Several processes opening and closing at once must all succeed.
#[test]
fn commands_opening_the_database_together_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |data: std::path::PathBuf| {
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
            let mut runs = 0;
            while std::time::Instant::now() < deadline {
                let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("codecourier"))
                    .args(["sandboxes", "list", "--json"])
                    .env_clear()
                    .env("PATH", std::env::var_os("PATH").unwrap())
                    .env("CODECOURIER_DATA_DIR", &data)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "run {runs}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                runs += 1;
            }
            runs
        })
    };
    // A launch in another process writes events all the while.
    let writer_data = data.clone();
    let writer = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            std::fs::create_dir_all(&writer_data).unwrap();
            let url = format!("sqlite://{}/codecourier.db", writer_data.display());
            let store = codecourier::store::Store::open_with_key(
                &url,
                codecourier::secret::SecretKey::generate(),
                codecourier::secret::KeySource::Environment,
            )
            .await
            .unwrap();
            let request = codecourier::catalog::LaunchInput {
                prompt: Some("p".into()),
                repo: Some("acme/widgets".into()),
                ..Default::default()
            }
            .validate(&codecourier::catalog::Catalog::built_in(), false)
            .unwrap();
            let id = store
                .insert_sandbox(&codecourier::store::NewSandbox {
                    request: &request,
                    launched_by: "writer",
                    discord: None,
                    project_id: None,
                    issue_session: None,
                    workflow: None,
                    caps: Default::default(),
                })
                .await
                .unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
            while std::time::Instant::now() < deadline {
                store
                    .append_event(id, "note", &serde_json::json!({"message": "x"}))
                    .await
                    .unwrap();
            }
            store.close().await;
        })
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let workers: Vec<_> = (0..6).map(|_| run(data.clone())).collect();
    writer.join().unwrap();
    let runs: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(runs > 20, "only {runs} runs");
}

/// `usage` reads the metered rows: its JSON sums are the records' sums, per grouping and window.
#[tokio::test]
async fn usage_json_sums_match_the_records_in_every_grouping_and_window() {
    use codecourier::agent::AgentResult;
    use codecourier::catalog::{Catalog, LaunchInput};
    use codecourier::config::Config;
    use codecourier::ids::DiscordId;
    use codecourier::model::SandboxStatus;
    use codecourier::store::{DiscordOrigin, Finish, ModelUsage, NewSandbox, Store};

    let s = Sandbox::new();
    let data_dir = s.dir.path().join("data");
    let data = data_dir.display().to_string();
    let config =
        Config::from_lookup(|name| (name == "CODECOURIER_DATA_DIR").then(|| data.clone())).unwrap();
    let store = Store::open(&config).await.unwrap();
    let usage = |input, output, cost| ModelUsage {
        requests: 2,
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: 3,
        cache_write_tokens: 1,
        cost_usd: cost,
    };
    // (who, Discord user, tool, reported cost, metered rows)
    let launches = [
        (
            "alice",
            None,
            "pi",
            Some(0.5),
            vec![
                (
                    "openrouter",
                    "google/gemini-3-pro",
                    usage(100, 10, Some(0.25)),
                ),
                ("openrouter", "mystery/model", usage(40, 4, None)),
            ],
        ),
        (
            "alice",
            None,
            "claude-code",
            None,
            vec![(
                "anthropic",
                "claude-sonnet-4-6",
                usage(1000, 200, Some(1.5)),
            )],
        ),
        (
            "bob",
            Some(DiscordId(42)),
            "claude-code",
            Some(9.0),
            vec![("anthropic", "claude-sonnet-4-6", usage(10, 1, Some(0.125)))],
        ),
        (
            "carol",
            None,
            "claude-code",
            Some(100.0),
            vec![("anthropic", "claude-opus-4-6", usage(5, 5, Some(50.0)))],
        ),
    ];
    let mut ids = Vec::new();
    for (who, user, tool, reported, rows) in &launches {
        let request = LaunchInput {
            prompt: Some("Tidy up".into()),
            repo: Some("acme/widgets".into()),
            tool: Some(tool.to_string()),
            ..Default::default()
        }
        .validate(&Catalog::built_in(), false)
        .unwrap();
        let id = store
            .insert_sandbox(&NewSandbox {
                request: &request,
                launched_by: who,
                discord: user.map(|user_id| DiscordOrigin {
                    user_id,
                    guild_id: Some(DiscordId(7)),
                    channel_id: DiscordId(8),
                }),
                project_id: None,
                issue_session: None,
                workflow: None,
                caps: Default::default(),
            })
            .await
            .unwrap();
        for (api, model, usage) in rows {
            store.add_model_usage(id, api, model, usage).await.unwrap();
        }
        let finish = Finish {
            result: Some(AgentResult {
                cost_usd: *reported,
                ..Default::default()
            }),
            ..Default::default()
        };
        store
            .finish(id, SandboxStatus::Failed, &finish)
            .await
            .unwrap();
        ids.push(id);
    }
    store.close().await;
    // Carol's launch was 40 days ago: outside the default window of 30 days.
    {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect(&format!(
            "sqlite://{}",
            data_dir.join("codecourier.db").display()
        ))
        .await
        .unwrap();
        sqlx::query("UPDATE sandboxes SET created_at = ?1 WHERE id = ?2")
            .bind(chrono::Utc::now() - chrono::Duration::days(40))
            .bind(ids[3].to_string())
            .execute(&mut db)
            .await
            .unwrap();
        db.close().await.unwrap();
    }

    let report = |args: &[&str]| -> serde_json::Value {
        let out = s
            .cmd()
            .arg("usage")
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let sum = |rows: &serde_json::Value, field: &str| -> f64 {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| r[field].as_f64().unwrap_or(0.0))
            .sum()
    };
    // The records' own sums over the three launches in the window.
    let metered = 0.25 + 1.5 + 0.125;
    let input = (100 + 40 + 1000 + 10) as f64;
    for by in ["person", "project", "model", "tool"] {
        let r = report(&["--by", by]);
        assert_eq!(r["by"], by);
        for field in ["metered_cost_usd", "input_tokens"] {
            assert!(
                (sum(&r["rows"], field) - r["total"][field].as_f64().unwrap()).abs() < 1e-9,
                "{by} {field}: {r}"
            );
        }
        assert!(
            (r["total"]["metered_cost_usd"].as_f64().unwrap() - metered).abs() < 1e-9,
            "{r}"
        );
        assert_eq!(r["total"]["input_tokens"].as_f64().unwrap(), input, "{r}");
        assert_eq!(r["total"]["launches"], 3, "{r}");
        assert_eq!(r["total"]["unpriced_tokens"], 40 + 4 + 3 + 1, "{r}");
        assert_eq!(r["total"]["reported_cost_usd"], 9.5, "{r}");
    }
    let people = report(&["--by", "person"]);
    let names: Vec<&str> = people["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"], "most spent first: {people}");
    assert_eq!(people["rows"][1]["discord_user_id"], "42");
    let models = report(&["--by", "model"]);
    let sonnet = models["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "claude-sonnet-4-6")
        .unwrap();
    assert_eq!(
        (sonnet["launches"].as_u64(), sonnet["requests"].as_u64()),
        (Some(2), Some(4))
    );
    assert!(
        sonnet["reported_cost_usd"].is_null(),
        "a CLI reports per run, not per model"
    );
    // A wider window takes Carol's launch in.
    let wide = report(&["--since", "6w"]);
    assert_eq!(wide["total"]["launches"], 4);
    assert!((wide["total"]["metered_cost_usd"].as_f64().unwrap() - metered - 50.0).abs() < 1e-9);

    s.cmd()
        .args(["usage", "--by", "tool"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Usage by tool over the last 30d")
                .and(predicate::str::contains("claude-code"))
                .and(predicate::str::contains("$1.8750"))
                .and(predicate::str::contains(
                    "48 tokens were of models the catalog has no price for",
                )),
        );
    s.cmd()
        .args(["usage", "--since", "7y"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("90m, 12h, 7d, 4w"));
    s.cmd()
        .args(["usage", "--by", "team"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("person, project, model or tool"));
}
