//! What a launch may leave behind, bounded: the events stored of a talkative agent
//! (`CODECOURIER_MAX_EVENTS`), and the files and session archives of sandboxes finished longer ago
//! than `CODECOURIER_RETENTION_DAYS` (their records stay).

mod support;

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
        notes.contains(&format!(
            "{dropped} agent events and output lines past the cap of 500 were counted, not stored"
        )
        .as_str()),
        "{notes:#?}"
    );
    assert!(
        notes.iter().any(|n| n.starts_with(
            "the event log keeps at most 500 agent events and output lines (CODECOURIER_MAX_EVENTS)"
        )),
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
