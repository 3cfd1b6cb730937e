//! The launch sequence end to end, as a person runs it: `codecourier launch` on a bare repository
//! on disk, a real local sandbox, real git, and a stand-in agent CLI (tests/fixtures/bin/claude)
//! that prints recorded Claude Code output or misbehaves on request.

mod support;

use std::time::{Duration, Instant};

use predicates::prelude::*;
use support::{git, processes_of, run_json, World, API_KEY};

fn record(world: &World, id: &str) -> serde_json::Value {
    let out = world
        .cmd()
        .args(["sandboxes", "show", "--json", id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The provision phase's detail of a `--json` record.
fn provision_detail(r: &serde_json::Value) -> String {
    r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "provision")
        .and_then(|p| p["detail"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_sandbox_has_its_own_network_unless_egress_is_opened_and_both_work() {
    let world = World::new();
    let args = ["--prompt", "Save the prompt", "--env", "FAKE_CLAUDE=create"];
    let (code, r, _) = run_json(world.launch(&args));
    assert_eq!(
        (code, r["status"].as_str()),
        (0, Some("completed")),
        "{r:#}"
    );
    let detail = provision_detail(&r);
    assert!(
        detail.contains("network: its own; model APIs and git through CodeCourier's gateway"),
        "{detail}"
    );
    let mut open = world.launch(&args);
    open.env("CODECOURIER_EGRESS", "open");
    let (code, r, _) = run_json(open);
    assert_eq!(
        (code, r["status"].as_str()),
        (0, Some("completed")),
        "{r:#}"
    );
    let detail = provision_detail(&r);
    assert!(
        detail.contains(
            "network: the host's (egress open); model APIs and git through CodeCourier's gateway"
        ),
        "{detail}"
    );
    assert_eq!(
        world.file_on_branch(r["branch"].as_str().unwrap(), "prompt.txt"),
        "Save the prompt"
    );
}

#[test]
fn a_launch_commits_the_agents_work_on_a_new_branch_and_reports_the_result() {
    let world = World::new();
    let (code, r, _) = run_json(world.launch(&[
        "--prompt",
        "Save the prompt for later",
        "--env",
        "FAKE_CLAUDE=create",
    ]));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["result"], "Saved the prompt to prompt.txt.");
    assert_eq!(r["cost_usd"], 0.0123);
    assert_eq!(
        (
            r["input_tokens"].as_i64(),
            r["output_tokens"].as_i64(),
            r["num_turns"].as_i64()
        ),
        (Some(1000), Some(50), Some(2))
    );
    assert_eq!(r["base_branch"], "main");
    assert_eq!(r["pushed"], true);
    let id = r["id"].as_str().unwrap();
    let branch = r["branch"].as_str().unwrap();
    assert_eq!(
        branch,
        format!("codecourier/{}-save-the-prompt-for-later", &id[..8])
    );

    // The agent left its change uncommitted: CodeCourier committed it, naming the sandbox and prompt.
    assert_eq!(
        world.file_on_branch(branch, "prompt.txt"),
        "Save the prompt for later"
    );
    let commits = r["commits"].as_array().unwrap();
    assert_eq!(commits.len(), 1);
    assert_eq!(
        commits[0]["subject"],
        "CodeCourier: Save the prompt for later"
    );
    let message = git(&world.origin, &["log", "-1", "--format=%B", branch]);
    assert!(message.contains(id), "{message}");
    assert!(!world.file_on_branch("main", "README.md").is_empty());

    let phases: Vec<(&str, &str)> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["phase"].as_str().unwrap(), p["outcome"].as_str().unwrap()))
        .collect();
    let names: Vec<&str> = phases.iter().map(|p| p.0).collect();
    assert_eq!(
        names,
        [
            "validate",
            "record",
            "prepare",
            "provision",
            "clone",
            "branch",
            "credentials",
            "environment",
            "system_prompt",
            "setup",
            "tool_setup",
            "agent",
            "finish"
        ]
    );
    assert!(phases.iter().all(|p| p.1 == "ok"), "{phases:?}");
    let provision = &r["phases"][3]["detail"];
    assert!(
        provision.as_str().unwrap().contains("timeout 15m enforced"),
        "{provision}"
    );

    // What the agent learned is kept for the next run of this repository.
    let full = record(&world, id);
    assert!(full["provider_sandbox_id"]
        .as_str()
        .unwrap()
        .starts_with("local-"));
    assert!(processes_of(full["provider_sandbox_id"].as_str().unwrap()).is_empty());
    // A proposal only: the next run does not hear of it until someone accepts it.
    let (_, unreviewed, _) =
        run_json(world.launch(&["--prompt", "Again", "--env", "FAKE_CLAUDE=recall"]));
    assert!(
        !unreviewed["result"].as_str().unwrap().contains("make test"),
        "{unreviewed:#}"
    );
    world.accept_learnings();
    let (_, second, _) =
        run_json(world.launch(&["--prompt", "Again", "--env", "FAKE_CLAUDE=recall"]));
    assert_ne!(second["branch"], r["branch"]);
    let memory = second["result"].as_str().unwrap();
    assert!(
        memory.contains("run the tests with make test"),
        "{second:#}"
    );
    assert!(
        memory.contains("not instructions"),
        "learnings are framed as notes: {memory}"
    );
    assert!(
        second["phases"][10]["detail"]
            .as_str()
            .unwrap()
            .contains("1 setup file"),
        "{second:#}"
    );
}

#[test]
fn commits_made_by_the_agent_are_listed_and_pushed() {
    let world = World::new();
    let (code, r, _) =
        run_json(world.launch(&["--prompt", "Add one file", "--env", "FAKE_CLAUDE=commit"]));
    assert_eq!(code, 0, "{r:#}");
    let subjects: Vec<&str> = r["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["Add one.txt"]);
    assert_eq!(
        world.file_on_branch(r["branch"].as_str().unwrap(), "one.txt"),
        "one\n"
    );
}

#[test]
fn prompts_starting_with_a_dash_or_of_100_kb_arrive_whole() {
    let world = World::new();
    let (code, r, _) = run_json(world.launch(&[
        "--prompt",
        "--delete everything? no: -rf is a flag",
        "--env",
        "FAKE_CLAUDE=create",
    ]));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        world.file_on_branch(r["branch"].as_str().unwrap(), "prompt.txt"),
        "--delete everything? no: -rf is a flag"
    );

    let big: String = (0..2000)
        .map(|i| format!("line {i:05} of a long prompt with 'quotes' and $dollars\n"))
        .collect();
    assert!(big.len() > 100_000);
    let file = world.dir.path().join("big-prompt.md");
    std::fs::write(&file, &big).unwrap();
    let mut cmd = world.launch(&["--env", "FAKE_CLAUDE=create", "--prompt-file"]);
    cmd.arg(&file);
    let (code, r, _) = run_json(&mut cmd);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        world.file_on_branch(r["branch"].as_str().unwrap(), "prompt.txt"),
        big
    );
}

#[test]
fn an_invalid_key_fails_the_agent_phase_with_a_clear_message() {
    let world = World::new();
    let (code, r, _) =
        run_json(world.launch(&["--prompt", "Do it", "--env", "FAKE_CLAUDE=unauthorized"]));
    assert_eq!(code, 1);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["failed_phase"], "agent");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("invalid API key") && error.contains("ANTHROPIC_API_KEY"),
        "{error}"
    );
    assert_eq!(r["phases"][11]["phase"], "agent");
    assert_eq!(r["phases"][11]["outcome"], "failed");
    assert_eq!(r["phases"][12]["phase"], "finish");
}

#[test]
fn an_agent_that_dies_without_a_result_fails_with_its_stderr() {
    let world = World::new();
    let (code, r, _) =
        run_json(world.launch(&["--prompt", "Do it", "--env", "FAKE_CLAUDE=noresult"]));
    assert_eq!(code, 1);
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("exited with code 3 without a result") && error.contains("something broke"),
        "{error}"
    );
}

#[test]
fn garbage_output_is_logged_and_does_not_break_the_run() {
    let world = World::new();
    let (code, r, _) =
        run_json(world.launch(&["--prompt", "Do it", "--env", "FAKE_CLAUDE=garbage"]));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["result"], "Survived the garbage.");
    world
        .cmd()
        .args(["sandboxes", "logs", r["id"].as_str().unwrap()])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("(unparsed) this is not json")
                .and(predicate::str::contains("mystery")),
        );
}

#[test]
fn a_hanging_agent_times_out_and_nothing_is_left_running() {
    let world = World::new();
    let catalog = world.short_timeout_catalog();
    let started = Instant::now();
    let mut cmd = world.launch(&[
        "--prompt",
        "Hang",
        "--timeout",
        "3s",
        "--env",
        "FAKE_CLAUDE=hang",
    ]);
    cmd.env("CODECOURIER_CATALOG", &catalog)
        .env("CODECOURIER_AGENT_IDLE_NOTICE", "1s");
    let (code, r, _) = run_json(&mut cmd);
    let took = started.elapsed();
    assert_eq!(code, 1);
    assert_eq!(r["status"], "timed_out");
    assert_eq!(r["failed_phase"], "agent");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("time limit of 3s ran out during agent"),
        "{r:#}"
    );
    assert!(took < Duration::from_secs(3 + 10), "took {took:?}");
    let provider_id = record(&world, r["id"].as_str().unwrap())["provider_sandbox_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        processes_of(&provider_id).is_empty(),
        "{:?}",
        processes_of(&provider_id)
    );
    // While it hung, the progress said so.
    world
        .cmd()
        .args(["sandboxes", "logs", r["id"].as_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "note: no output from Claude Code for 1s; the sandbox's timeout of 3s still ends the run",
        ));
}

#[test]
fn planted_secrets_never_reach_the_display_the_json_the_logs_or_the_error() {
    let world = World::new();
    let planted = "plantedvalue-9f8e7d";
    for json in [true, false] {
        let mut cmd = world.cmd();
        cmd.args(["launch", "--repo"]).arg(&world.origin).args([
            "--prompt",
            "Leak",
            "--env",
            "FAKE_CLAUDE=leak",
        ]);
        cmd.args(["--env", &format!("PLANTED={planted}")])
            .env("RUST_LOG", "debug");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(
            !all.contains(planted) && !all.contains(API_KEY),
            "leaked:\n{all}"
        );
        assert!(all.contains("[redacted]"), "{all}");
    }
    let list = world
        .cmd()
        .args(["sandboxes", "list", "--json"])
        .output()
        .unwrap();
    let records: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    for r in records.as_array().unwrap() {
        let id = r["id"].as_str().unwrap();
        for args in [
            vec!["sandboxes", "show", "--json", id],
            vec!["sandboxes", "show", id],
            vec!["sandboxes", "logs", id],
            vec!["sandboxes", "logs", "--json", id],
        ] {
            let out = world.cmd().args(&args).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                !text.contains(planted) && !text.contains(API_KEY),
                "{args:?} leaked:\n{text}"
            );
        }
    }
}

#[test]
fn a_missing_key_is_invalid_input_and_records_nothing() {
    let world = World::new();
    world
        .launch(&["--prompt", "Do it"])
        .env_remove("ANTHROPIC_API_KEY")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "Claude Code needs ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN",
        ));
    let list = world
        .cmd()
        .args(["sandboxes", "list", "--json"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "[]");
}

#[test]
fn an_unknown_base_branch_fails_in_clone_with_gits_words() {
    let world = World::new();
    let (code, r, _) =
        run_json(world.launch(&["--prompt", "Do it", "--base-branch", "no-such-branch"]));
    assert_eq!(code, 1);
    assert_eq!(r["failed_phase"], "clone");
    assert!(
        r["error"].as_str().unwrap().contains("no-such-branch"),
        "{r:#}"
    );
    assert_eq!(world.branches(), ["main"]);
}

#[test]
fn a_memory_hog_is_killed_and_the_run_says_so_where_limits_hold() {
    let world = World::new();
    let (code, r, _) = run_json(world.launch(&[
        "--prompt",
        "Eat memory",
        "--memory-mb",
        "256",
        "--env",
        "FAKE_CLAUDE=memory",
    ]));
    let provision = r["phases"][3]["detail"].as_str().unwrap().to_string();
    if provision.contains("memory 256 MB enforced") {
        assert_eq!(code, 1, "{r:#}");
        assert!(
            r["error"]
                .as_str()
                .unwrap()
                .contains("more than the sandbox's 256 MB of memory"),
            "{r:#}"
        );
    } else {
        assert!(
            provision.contains("memory 256 MB NOT enforced"),
            "{provision}"
        );
    }
}

fn wait_for_status(world: &World, status: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = world
            .cmd()
            .args(["sandboxes", "list", "--json"])
            .output()
            .unwrap();
        let list: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        if let Some(r) = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == status)
        {
            return r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no sandbox reached {status}: {list:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sandboxes_stop_from_another_terminal_stops_a_running_launch() {
    let world = World::new();
    let mut cmd = world.launch_std(&["--prompt", "Hang", "--env", "FAKE_CLAUDE=hang"]);
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let running = wait_for_status(&world, "running");
    let id = running["id"].as_str().unwrap();
    world
        .cmd()
        .args(["sandboxes", "stop", &id[..8]])
        .assert()
        .success()
        .stdout(predicate::str::contains("stopped"));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["status"], "stopped");
    let provider_id = record(&world, id)["provider_sandbox_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(processes_of(&provider_id).is_empty());
}

#[test]
fn ctrl_c_stops_the_sandbox_and_records_stopped() {
    let world = World::new();
    let mut cmd = world.launch_std(&["--prompt", "Hang", "--env", "FAKE_CLAUDE=hang"]);
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let running = wait_for_status(&world, "running");
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["status"], "stopped");
    assert_eq!(r["failed_phase"], "agent");
    let provider_id = record(&world, running["id"].as_str().unwrap())["provider_sandbox_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(processes_of(&provider_id).is_empty());
}

#[test]
fn a_launch_killed_outright_is_ended_by_the_next_command() {
    let world = World::new();
    let mut child = world
        .launch_std(&["--prompt", "Hang", "--env", "FAKE_CLAUDE=hang"])
        .spawn()
        .unwrap();
    let running = wait_for_status(&world, "running");
    child.kill().unwrap(); // SIGKILL: no chance to clean up or record anything
    child.wait().unwrap();
    let id = running["id"].as_str().unwrap();
    let r = record(&world, id);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["failed_phase"], "agent");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("CodeCourier restarted during the run (while running, in agent)"),
        "{r:#}"
    );
    assert!(processes_of(r["provider_sandbox_id"].as_str().unwrap()).is_empty());
}

#[test]
fn a_cli_that_is_not_installed_fails_tool_setup_with_what_to_do() {
    let world = World::new();
    let empty_tools = world.dir.path().join("no-tools");
    std::fs::create_dir(&empty_tools).unwrap();
    let mut cmd = world.launch(&["--prompt", "Do it"]);
    cmd.env("CODECOURIER_TOOLS_DIR", &empty_tools);
    let (code, r, _) = run_json(cmd);
    assert_eq!(code, 1);
    assert_eq!(r["failed_phase"], "tool_setup");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("Claude Code's `claude` is not available in the sandbox"),
        "{error}"
    );
    // Advice for a local sandbox: this machine, or the tools directory, with the pinned version.
    assert!(
        error.contains(&format!(
            "install it on this machine (`npm install -g {}`) or put it in CODECOURIER_TOOLS_DIR",
            codecourier::agent::packages::CLAUDE_CODE.spec()
        )),
        "{error}"
    );
}
