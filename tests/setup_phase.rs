//! The setup phase with the real Claude Code CLI in a real local sandbox against the fake
//! Anthropic API: a project's setup script (its output in the log, what it made visible to the
//! agent, a failure ending the launch in `setup`), and the installs a lockfile names, against a
//! stand-in npm registry on loopback.

mod support;

use std::process::Command as StdCommand;

use support::agent_cli::{self, output, run};
use support::fake_anthropic::{self, Mode};
use support::npm_registry::NpmRegistry;
use support::{claude_code_bin, git, World};

fn launch(world: &World, api: &str, args: &[&str]) -> StdCommand {
    agent_cli::launch(
        world,
        &claude_code_bin(),
        "claude-code",
        "ANTHROPIC_API_KEY",
        support::API_KEY,
        ("ANTHROPIC_BASE_URL", api),
        args,
    )
}

/// Commits `files` (path, contents) to the origin's `main`.
fn push_files(world: &World, files: &[(&str, &str)]) {
    let seed = world.dir.path().join("seed");
    for (path, contents) in files {
        let path = seed.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "--quiet", "-m", "Project files"]);
    git(&seed, &["push", "--quiet", "origin", "HEAD:main"]);
}

/// `codecourier project setup --repo <origin>` with `args`.
fn project_setup(world: &World, args: &[&str]) {
    let out = world
        .std_cmd()
        .args(["project", "setup", "--repo"])
        .arg(&world.origin)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn setup_detail(record: &serde_json::Value) -> String {
    record["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "setup")
        .unwrap_or_else(|| panic!("no setup phase: {record:#}"))["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn logs(world: &World, id: &str) -> String {
    let mut cmd = world.std_cmd();
    cmd.args(["sandboxes", "logs", id]);
    let (code, stdout, stderr) = output(cmd).await;
    assert_eq!(code, 0, "{stderr}");
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn the_projects_setup_script_runs_before_the_agent_which_sees_what_it_made() {
    let world = World::new();
    let api = fake_anthropic::start(Mode::Works {
        extra_text: String::new(),
    })
    .await;
    let script = world.dir.path().join("setup.sh");
    std::fs::write(
        &script,
        "echo \"preparing widgets in $(pwd)\"\nmkdir -p build\necho ready > build/marker\necho 'setup done' >&2\n",
    )
    .unwrap();
    project_setup(&world, &["--setup-script-file", script.to_str().unwrap()]);

    let (code, r, stderr) = run(launch(
        &world,
        &api.uri(),
        &[
            "--prompt",
            "Run `cat build/marker > seen.txt && cat seen.txt`",
        ],
    ))
    .await;
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    assert_eq!(r["status"], "completed");
    let detail = setup_detail(&r);
    assert!(
        detail.contains("ran the project's setup script") && detail.contains("setup done"),
        "{detail}"
    );
    // The agent saw the file the script made; the script's own files stay out of the branch.
    let results = fake_anthropic::tool_results_received(&api).await;
    assert!(results.iter().any(|t| t.contains("ready")), "{results:?}");
    let branch = r["branch"].as_str().unwrap();
    assert_eq!(world.file_on_branch(branch, "seen.txt"), "ready\n");
    let tree = git(&world.origin, &["ls-tree", "-r", "--name-only", branch]);
    assert!(!tree.contains("build/marker"), "{tree}");

    let log = logs(&world, r["id"].as_str().unwrap()).await;
    assert!(
        log.contains("setup | preparing widgets in /home/user/project")
            && log.contains("setup | setup done"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_setup_script_ends_the_launch_in_setup_with_its_tail() {
    let world = World::new();
    let api = fake_anthropic::start(Mode::Works {
        extra_text: String::new(),
    })
    .await;
    // The repository's own script, as the project sets none.
    push_files(
        &world,
        &[(
            ".codecourier/setup.sh",
            "echo installing\nfor i in $(seq 1 100); do echo \"step $i\"; done\necho \"using $WIDGET_TOKEN\"\necho 'error: libwidget not found' >&2\nexit 3\n",
        )],
    );
    let planted = "wgt_plantedSECRETvalue0123456789";
    let mut cmd = launch(&world, &api.uri(), &["--prompt", "Create hello.txt"]);
    cmd.args(["--env", &format!("WIDGET_TOKEN={planted}")]);
    let (code, r, stderr) = run(cmd).await;
    assert_eq!(code, 1, "{r:#}\n{stderr}");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["failed_phase"], "setup");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains(".codecourier/setup.sh failed (exit 3)")
            && error.contains("step 100")
            && error.contains("error: libwidget not found")
            && error.contains("using [redacted]")
            && !error.contains("installing"),
        "{error}"
    );
    let log = logs(&world, r["id"].as_str().unwrap()).await;
    assert!(log.contains("setup | step 57"), "{log}");
    assert!(!format!("{r}{stderr}{log}").contains("plantedSECRET"));
    assert!(
        fake_anthropic::requests_received(&api).await.is_empty(),
        "the agent started"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_package_lock_runs_npm_ci_against_the_registry_and_names_it() {
    let world = World::new();
    let api = fake_anthropic::start(Mode::Works {
        extra_text: String::new(),
    })
    .await;
    let registry = NpmRegistry::start(&[("widget-core", "1.2.0"), ("widget-extra", "0.3.1")]).await;
    let seed = world.dir.path().join("seed");
    registry.write_project(&seed, "widgets");
    // A Gemfile.lock names bundler, which this sandbox lacks.
    push_files(&world, &[("Gemfile.lock", "GEM\n  specs:\n")]);

    let mut cmd = launch(
        &world,
        &api.uri(),
        &[
            "--prompt",
            "Run `node -e \"console.log(require('widget-core'), require('widget-extra'))\" > seen.txt && cat seen.txt`",
        ],
    );
    cmd.env("CODECOURIER_EGRESS_ALLOW", &registry.host_port);
    let (code, r, stderr) = run(cmd).await;
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    let detail = setup_detail(&r);
    assert!(
        detail.contains("ran npm ci --no-audit --no-fund (package-lock.json)")
            && detail.contains("Gemfile.lock names bundle, which this sandbox lacks: skipped"),
        "{detail}"
    );
    assert_eq!(registry.tarballs_served(), 2);
    let branch = r["branch"].as_str().unwrap();
    assert_eq!(
        world.file_on_branch(branch, "seen.txt"),
        "widget-core@1.2.0 widget-extra@0.3.1\n"
    );
    let tree = git(&world.origin, &["ls-tree", "-r", "--name-only", branch]);
    assert!(!tree.contains("node_modules"), "{tree}");
    assert!(
        detail.contains("download caches kept between the project's launches"),
        "{detail}"
    );

    // The next launch of the project installs from its npm cache: nothing is downloaded again.
    let mut cmd = launch(&world, &api.uri(), &["--prompt", "Create again.txt"]);
    cmd.env("CODECOURIER_EGRESS_ALLOW", &registry.host_port);
    let (code, r, stderr) = run(cmd).await;
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    assert!(
        setup_detail(&r).contains("ran npm ci"),
        "{}",
        setup_detail(&r)
    );
    assert_eq!(registry.tarballs_served(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_setup_past_its_own_limit_ends_the_launch_in_setup() {
    let world = World::new();
    let api = fake_anthropic::start(Mode::Works {
        extra_text: String::new(),
    })
    .await;
    push_files(
        &world,
        &[(
            ".codecourier/setup.sh",
            "echo 'waiting for the database'\nsleep 600\n",
        )],
    );
    let started = std::time::Instant::now();
    let mut cmd = launch(&world, &api.uri(), &["--prompt", "Create hello.txt"]);
    cmd.env("CODECOURIER_SETUP_TIMEOUT", "3s");
    let (code, r, stderr) = run(cmd).await;
    assert_eq!(code, 1, "{r:#}\n{stderr}");
    assert_eq!(r["failed_phase"], "setup");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("ran past the setup's limit of 3s")
            && error.contains("waiting for the database"),
        "{error}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
