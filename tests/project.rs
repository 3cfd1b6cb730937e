//! `codecourier project` as a terminal user drives it: settings, variables, keys read from standard
//! input (never echoed), skills and commands checked before they are stored, learnings reviewed.

mod support;

use serde_json::Value;
use support::World;

fn run(world: &World, args: &[&str], stdin: &str) -> (bool, String, String) {
    let out = world
        .cmd()
        .arg("project")
        .args(args)
        .write_stdin(stdin)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn show(world: &World) -> Value {
    let repo = world.origin.to_str().unwrap();
    let (ok, out, err) = run(world, &["show", "--json", "--repo", repo], "");
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn settings_variables_and_keys_are_kept_and_keys_never_shown() {
    let world = World::new();
    let repo = world.origin.to_str().unwrap();
    let script = world.dir.path().join("setup.sh");
    std::fs::write(&script, "npm ci\n").unwrap();
    let (ok, _, err) = run(
        &world,
        &[
            "setup",
            "--repo",
            repo,
            "--base-branch",
            "main",
            "--setup-script-file",
            script.to_str().unwrap(),
            "--auto-setup",
            "off",
            "--allow-workflow-changes",
            "on",
        ],
        "",
    );
    assert!(ok, "{err}");
    let (ok, _, err) = run(
        &world,
        &["env", "set", "--repo", repo, "MODE=fast", "TOKENISH=abc"],
        "",
    );
    assert!(ok, "{err}");
    let (ok, _, err) = run(&world, &["env", "unset", "--repo", repo, "TOKENISH"], "");
    assert!(ok, "{err}");
    let key = "sk-ant-plantedprojectkey0123456789";
    let (ok, out, err) = run(
        &world,
        &["keys", "set", "--repo", repo, "ANTHROPIC_API_KEY"],
        key,
    );
    assert!(ok, "{err}");
    assert!(!out.contains(key) && !err.contains(key), "{out}{err}");

    let p = show(&world);
    assert_eq!(p["base_branch"], "main");
    assert_eq!(p["setup_script"], "npm ci\n");
    assert_eq!(p["auto_setup"], false);
    assert_eq!(p["allow_workflow_changes"], true);
    assert_eq!(p["variables"], serde_json::json!(["MODE"]));
    assert_eq!(p["keys"], serde_json::json!(["ANTHROPIC_API_KEY"]));
    assert!(!p.to_string().contains(key));

    // Only agent keys are keys; anything else is refused, saying where it belongs.
    let (ok, _, err) = run(
        &world,
        &["keys", "set", "--repo", repo, "DATABASE_URL"],
        "x",
    );
    assert!(!ok);
    assert!(err.contains("project env set"), "{err}");
    let (ok, _, err) = run(
        &world,
        &["keys", "set", "--repo", repo, "OPENAI_API_KEY"],
        "",
    );
    assert!(!ok);
    assert!(err.contains("no value for OPENAI_API_KEY"), "{err}");
    let (ok, _, _) = run(
        &world,
        &["keys", "unset", "--repo", repo, "ANTHROPIC_API_KEY"],
        "",
    );
    assert!(ok);
    assert_eq!(show(&world)["keys"], serde_json::json!([]));
}

#[test]
fn skills_and_commands_are_checked_before_they_are_stored() {
    let world = World::new();
    let repo = world.origin.to_str().unwrap();
    let skill = world.dir.path().join("SKILL.md");
    std::fs::write(
        &skill,
        "---\nname: run-tests\ndescription: How this repository runs its tests\n---\nRun make check.\n",
    )
    .unwrap();
    let (ok, out, err) = run(
        &world,
        &[
            "skills",
            "add",
            "--repo",
            repo,
            "--file",
            skill.to_str().unwrap(),
        ],
        "",
    );
    assert!(ok, "{err}");
    assert!(out.contains("skill run-tests stored"), "{out}");

    // A skill without a description, or with a name that is not a safe file name, is refused.
    let (ok, _, err) = run(
        &world,
        &[
            "skills", "add", "--repo", repo, "--file", "-", "--name", "lint",
        ],
        "Run make lint.",
    );
    assert!(!ok);
    assert!(err.contains("needs a description"), "{err}");
    let (ok, _, err) = run(
        &world,
        &[
            "skills",
            "add",
            "--repo",
            repo,
            "--file",
            "-",
            "--name",
            "../../.ssh",
            "--description",
            "x",
        ],
        "body",
    );
    assert!(!ok);
    assert!(
        err.contains("lowercase letters, digits and hyphens"),
        "{err}"
    );

    let (ok, _, err) = run(
        &world,
        &[
            "commands", "add", "--repo", repo, "--file", "-", "--name", "review",
        ],
        "Review the diff for bugs.",
    );
    assert!(ok, "{err}");
    let p = show(&world);
    assert_eq!(p["skills"], serde_json::json!(["run-tests"]));
    assert_eq!(p["commands"], serde_json::json!(["review"]));

    let (ok, _, _) = run(
        &world,
        &["skills", "remove", "--repo", repo, "run-tests"],
        "",
    );
    assert!(ok);
    assert_eq!(show(&world)["skills"], serde_json::json!([]));
}

#[test]
fn learnings_are_listed_accepted_and_removed_by_id() {
    let world = World::new();
    let repo = world.origin.to_str().unwrap();
    // The stand-in agent proposes one learning.
    let out = world.launch(&["--prompt", "Save it"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = |world: &World| -> Vec<Value> {
        let (ok, out, err) = run(world, &["learnings", "list", "--json", "--repo", repo], "");
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let all = list(&world);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["status"], "proposed");
    assert_eq!(all[0]["text"], "- run the tests with make test");
    let id = all[0]["id"].to_string();

    let (ok, _, err) = run(&world, &["learnings", "accept", "--repo", repo, "999"], "");
    assert!(ok);
    assert!(err.contains("no learning 999"), "{err}");
    let (ok, out, _) = run(&world, &["learnings", "accept", "--repo", repo, &id], "");
    assert!(ok);
    assert!(out.contains("1 learning(s) accepted"), "{out}");
    assert_eq!(list(&world)[0]["status"], "accepted");
    let (ok, _, _) = run(&world, &["learnings", "remove", "--repo", repo, &id], "");
    assert!(ok);
    assert!(list(&world).is_empty());
}
