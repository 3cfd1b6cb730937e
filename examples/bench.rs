//! Figures for the README: `cargo build --release && cargo run --release --example bench` (or name
//! parts to run: `-- parsing launch cache network`).
//!
//! 1. Stream parsing: each CLI's output format (Claude Code, Codex, OpenCode, Pi) through our
//!    parser against plain `serde_json::Value` parsing of the same lines (throughput and ratio).
//! 2. Launch overhead: from the start of a launch to the agent process starting, against a bare
//!    `git clone` of the same repository plus an empty sandbox start (ratio).
//! 3. Dependency caches: the setup phase (`npm ci` from a stand-in registry on loopback) of a
//!    project's second launch, with its npm cache warm, against its first (ratio).
//! 4. A network of its own: a launch's start (to the agent process starting) with the sandbox in
//!    its own network namespace bridged to the gateway, against sharing the host's network
//!    (`CODECOURIER_EGRESS=open`) (ratio). Needs the `codecourier` binary built beside the example
//!    (`cargo build --release` first).
//!
//! Needs bubblewrap and git, like the local sandbox itself.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use codecourier::agent::{claude, codex, opencode, pi, AgentStream};
use codecourier::catalog::{Catalog, LaunchInput};
use codecourier::config::Config;
use codecourier::ids::SandboxId;
use codecourier::model::Phase;
use codecourier::pipeline::{LaunchOrigin, Launcher, ProgressEvent, ProgressSink, ProjectChoice};
use codecourier::sandbox::local::LocalProvider;
use codecourier::sandbox::{run_captured, Exec, SandboxProvider, SandboxSpec};
use codecourier::store::Store;
use tokio_util::sync::CancellationToken;

#[path = "../tests/support/npm_registry.rs"]
#[allow(dead_code)]
mod npm_registry;

const RUNS: usize = 7;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// A long run in one CLI's format: its recorded stream repeated, plus large tool outputs.
fn stream_lines(recorded: &str, big_line: String) -> Vec<String> {
    let mut lines = Vec::new();
    for _ in 0..2_000 {
        lines.extend(
            recorded
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
    }
    for _ in 0..50 {
        lines.push(big_line.clone());
    }
    lines
}

fn bench_format(name: &str, lines: &[String], parser: impl Fn() -> Box<dyn AgentStream>) {
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let mut ours = Vec::new();
    let mut plain = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let mut p = parser();
        let mut events = 0usize;
        for line in lines {
            events += p.line(line).len();
        }
        std::hint::black_box(events);
        ours.push(started.elapsed());

        let started = Instant::now();
        let mut values = 0usize;
        for line in lines {
            if serde_json::from_str::<serde_json::Value>(line).is_ok() {
                values += 1;
            }
        }
        std::hint::black_box(values);
        plain.push(started.elapsed());
    }
    let (ours, plain) = (median(ours), median(plain));
    let mb = bytes as f64 / 1_000_000.0;
    println!(
        "  {name:<9} {:>6} lines {mb:>5.1} MB   ours {:>7.1} MB/s   Value {:>7.1} MB/s   ratio {:>5.2}x",
        lines.len(),
        mb / ours.as_secs_f64(),
        mb / plain.as_secs_f64(),
        plain.as_secs_f64() / ours.as_secs_f64()
    );
}

fn bench_parsing() {
    let big = "x".repeat(200_000);
    println!("stream parsing, each CLI's recorded output (median of {RUNS}; ratio > 1: ours is faster than serde_json::Value):");
    let claude_big = serde_json::json!({"type": "user", "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "is_error": false, "content": big}]}, "session_id": "s"}).to_string();
    bench_format(
        "claude",
        &stream_lines(
            include_str!("../tests/data/claude/success.jsonl"),
            claude_big,
        ),
        || Box::new(claude::StreamParser::new()),
    );
    let codex_big = serde_json::json!({"type": "item.completed", "item": {"id": "item_9", "type": "command_execution", "command": "cat big", "aggregated_output": big, "exit_code": 0, "status": "completed"}}).to_string();
    bench_format(
        "codex",
        &stream_lines(include_str!("../tests/data/codex/success.jsonl"), codex_big),
        || Box::new(codex::StreamParser::new()),
    );
    let opencode_big = serde_json::json!({"type": "tool_use", "timestamp": 1, "sessionID": "ses", "part": {"type": "tool", "tool": "bash", "state": {"status": "completed", "input": {"command": "cat big"}, "output": big}}}).to_string();
    bench_format(
        "opencode",
        &stream_lines(
            include_str!("../tests/data/opencode/success.jsonl"),
            opencode_big,
        ),
        || {
            Box::new(opencode::StreamParser::new(
                "openrouter/google/gemini-2.5-pro",
            ))
        },
    );
    let pi_big = serde_json::json!({"type": "tool_execution_end", "toolCallId": "c", "toolName": "bash", "result": {"content": [{"type": "text", "text": big}]}, "isError": false}).to_string();
    bench_format(
        "pi",
        &stream_lines(include_str!("../tests/data/pi/success.jsonl"), pi_big),
        || Box::new(pi::StreamParser::new("openrouter/google/gemini-2.5-pro")),
    );
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "b")
        .env("GIT_AUTHOR_EMAIL", "b@example.com")
        .env("GIT_COMMITTER_NAME", "b")
        .env("GIT_COMMITTER_EMAIL", "b@example.com")
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

/// A bare repository with 500 files over 5 commits.
fn make_repo(root: &Path) -> std::path::PathBuf {
    let origin = root.join("origin.git");
    git(
        root,
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            "origin.git",
        ],
    );
    git(root, &["init", "--quiet", "--initial-branch=main", "seed"]);
    let seed = root.join("seed");
    for commit in 0..5 {
        for file in 0..100 {
            let dir = seed.join(format!("src/mod{commit}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join(format!("f{file}.rs")),
                format!("// file {file}\n{}", "fn x() {}\n".repeat(50)),
            )
            .unwrap();
        }
        git(&seed, &["add", "."]);
        git(
            &seed,
            &["commit", "--quiet", "-m", &format!("commit {commit}")],
        );
    }
    git(
        &seed,
        &["push", "--quiet", origin.to_str().unwrap(), "HEAD:main"],
    );
    origin
}

/// Notes when the agent's first output arrives: its process has started.
struct FirstAgentEvent(Mutex<Option<Instant>>);

impl ProgressSink for FirstAgentEvent {
    fn emit(&self, _: SandboxId, event: &ProgressEvent) {
        if matches!(event, ProgressEvent::Agent { .. }) {
            self.0.lock().unwrap().get_or_insert_with(Instant::now);
        }
    }
}

async fn bench_launch() {
    let root = tempfile::tempdir().unwrap();
    let origin = make_repo(root.path());
    let data = root.path().join("data");
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bin");
    let vars = [
        ("CODECOURIER_DATA_DIR", data.to_str().unwrap().to_string()),
        ("CODECOURIER_TOOLS_DIR", tools.to_str().unwrap().to_string()),
        ("ANTHROPIC_API_KEY", "sk-ant-bench-0000000000".to_string()),
    ];
    let config = Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    let store = Store::open(&config).await.unwrap();
    let provider: Arc<dyn SandboxProvider> = Arc::new(LocalProvider::new(
        &config.data_dir,
        config.tools_dir.clone(),
    ));
    let catalog = Catalog::built_in();
    let launcher = Launcher::new(&config, store, provider.clone(), catalog.clone());
    let origin_text = origin.to_str().unwrap().to_string();

    let mut launches = Vec::new();
    for _ in 0..RUNS {
        let request = LaunchInput {
            prompt: Some("Benchmark".into()),
            repo: Some(origin_text.clone()),
            env: vec!["FAKE_CLAUDE=create".into()],
            ..Default::default()
        }
        .validate(&catalog, true)
        .unwrap();
        let sink = FirstAgentEvent(Mutex::new(None));
        let started = Instant::now();
        let prepared = launcher
            .prepare(
                request,
                &LaunchOrigin {
                    launched_by: "bench".into(),
                    discord: None,
                    project: ProjectChoice::OfRepository,
                    keys_of: None,
                    issue_session: None,
                    workflow: None,
                },
            )
            .await
            .unwrap();
        let record = launcher
            .run(prepared, &sink, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(record.status.as_str(), "completed", "{:?}", record.error);
        launches.push(sink.0.lock().unwrap().expect("agent started") - started);
    }

    let spec = SandboxSpec {
        template: codecourier::catalog::build_custom_tag("base").unwrap(),
        resources: codecourier::catalog::Resources {
            memory_mb: 1024,
            cpus: 2,
            timeout_ms: 60_000,
        },
        env: Vec::new(),
        metadata: Default::default(),
        mounts: Vec::new(),
        host_tools: Vec::new(),
        network: None,
    };
    let mut baselines = Vec::new();
    for i in 0..RUNS {
        let target = root.path().join(format!("clone-{i}"));
        let started = Instant::now();
        git(
            root.path(),
            &[
                "clone",
                "--quiet",
                &format!("file://{origin_text}"),
                target.to_str().unwrap(),
            ],
        );
        let sandbox = provider
            .create(&spec, Duration::from_secs(60))
            .await
            .unwrap();
        let out = run_captured(
            provider.as_ref(),
            &sandbox,
            &Exec {
                argv: vec!["true".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(out.status.success());
        baselines.push(started.elapsed());
        provider.kill(&sandbox.provider_id).await.unwrap();
    }
    let (launch, baseline) = (median(launches), median(baselines));
    println!("launch overhead (500-file repository, median of {RUNS}):");
    println!(
        "  launch → agent process started     {:>7.1} ms",
        launch.as_secs_f64() * 1000.0
    );
    println!(
        "  git clone + empty sandbox start    {:>7.1} ms",
        baseline.as_secs_f64() * 1000.0
    );
    println!(
        "  ratio                              {:>7.2}x",
        launch.as_secs_f64() / baseline.as_secs_f64()
    );
}

/// The `codecourier` binary built beside this example: the bridge inside a sandbox's network.
fn bridge_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("codecourier"))
        .unwrap();
    assert!(
        binary.is_file(),
        "{} is missing: build it first (cargo build, with the same profile)",
        binary.display()
    );
    binary
}

/// Launch → agent process started, with the sandbox in a network of its own and with the host's.
async fn bench_network() {
    let root = tempfile::tempdir().unwrap();
    let origin = make_repo(root.path());
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bin");
    let mut medians = Vec::new();
    for egress in ["list", "open"] {
        let data = root.path().join(format!("data-{egress}"));
        let vars = [
            ("CODECOURIER_DATA_DIR", data.to_str().unwrap().to_string()),
            ("CODECOURIER_TOOLS_DIR", tools.to_str().unwrap().to_string()),
            ("ANTHROPIC_API_KEY", "sk-ant-bench-0000000000".to_string()),
            ("CODECOURIER_EGRESS", egress.to_string()),
            (
                "CODECOURIER_BRIDGE_BINARY",
                bridge_binary().to_str().unwrap().to_string(),
            ),
        ];
        let config = Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap();
        let store = Store::open(&config).await.unwrap();
        let provider = codecourier::sandbox::provider_for(&config).unwrap();
        let catalog = Catalog::built_in();
        let launcher = Launcher::new(&config, store, provider, catalog.clone());
        let mut starts = Vec::new();
        for _ in 0..RUNS {
            let request = LaunchInput {
                prompt: Some("Benchmark".into()),
                repo: Some(origin.to_str().unwrap().to_string()),
                env: vec!["FAKE_CLAUDE=create".into()],
                ..Default::default()
            }
            .validate(&catalog, true)
            .unwrap();
            let sink = FirstAgentEvent(Mutex::new(None));
            let started = Instant::now();
            let prepared = launcher
                .prepare(
                    request,
                    &LaunchOrigin {
                        launched_by: "bench".into(),
                        discord: None,
                        project: ProjectChoice::OfRepository,
                        keys_of: None,
                        issue_session: None,
                        workflow: None,
                    },
                )
                .await
                .unwrap();
            let record = launcher
                .run(prepared, &sink, CancellationToken::new())
                .await
                .unwrap();
            assert_eq!(record.status.as_str(), "completed", "{:?}", record.error);
            let provision = record.phases.iter().find(|p| p.phase == Phase::Provision);
            let detail = provision.and_then(|p| p.detail.as_deref()).unwrap_or("");
            let own = detail.contains("network: its own (loopback only");
            assert_eq!(own, egress == "list", "{detail}");
            starts.push(sink.0.lock().unwrap().expect("agent started") - started);
        }
        medians.push(median(starts));
    }
    let (own, open) = (medians[0], medians[1]);
    println!("a network of its own (launch → agent process started, median of {RUNS}):");
    println!(
        "  own network namespace + bridge     {:>7.1} ms",
        own.as_secs_f64() * 1000.0
    );
    println!(
        "  host's network (egress open)       {:>7.1} ms",
        open.as_secs_f64() * 1000.0
    );
    println!(
        "  ratio (own / host's)               {:>7.2}x",
        own.as_secs_f64() / open.as_secs_f64()
    );
}

/// Notes how long the setup phase took.
struct SetupDuration(Mutex<Option<Duration>>);

impl ProgressSink for SetupDuration {
    fn emit(&self, _: SandboxId, event: &ProgressEvent) {
        if let ProgressEvent::PhaseFinished {
            phase: Phase::Setup,
            duration_ms,
            ..
        } = event
        {
            *self.0.lock().unwrap() = Some(Duration::from_millis(*duration_ms as u64));
        }
    }
}

/// Packages the benchmark's repositories depend on, and the round trip the stand-in registry
/// adds to each answer (a registry across the internet, not one on loopback).
const PACKAGES: usize = 20;
const REGISTRY_LATENCY: Duration = Duration::from_millis(50);
const CACHE_RUNS: usize = 3;

async fn bench_dependency_cache() {
    let names: Vec<(String, String)> = (0..PACKAGES)
        .map(|i| (format!("bench-dep-{i:02}"), "1.0.0".to_string()))
        .collect();
    let packages: Vec<(&str, &str)> = names
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let registry = npm_registry::NpmRegistry::start_with_latency(&packages, REGISTRY_LATENCY).await;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bin");
    let vars = [
        ("CODECOURIER_DATA_DIR", data.to_str().unwrap().to_string()),
        ("CODECOURIER_TOOLS_DIR", tools.to_str().unwrap().to_string()),
        ("ANTHROPIC_API_KEY", "sk-ant-bench-0000000000".to_string()),
        ("CODECOURIER_EGRESS_ALLOW", registry.host_port.clone()),
        // The sandbox reaches the gateway through CodeCourier's own binary, built beside this one.
        (
            "CODECOURIER_BRIDGE_BINARY",
            bridge_binary().display().to_string(),
        ),
    ];
    let config = Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    let store = Store::open(&config).await.unwrap();
    // As `codecourier` makes it: the registry is reached through what the provider allows.
    let provider = codecourier::sandbox::provider_for(&config).unwrap();
    let catalog = Catalog::built_in();
    let launcher = Launcher::new(&config, store, provider, catalog.clone());
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for run in 0..CACHE_RUNS {
        // A repository (so a project, with caches of its own) per run.
        let dir = root.path().join(format!("project-{run}"));
        std::fs::create_dir_all(&dir).unwrap();
        git(
            &dir,
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                "origin.git",
            ],
        );
        git(&dir, &["init", "--quiet", "--initial-branch=main", "seed"]);
        let seed = dir.join("seed");
        registry.write_project(&seed, "bench");
        git(&seed, &["add", "."]);
        git(&seed, &["commit", "--quiet", "-m", "dependencies"]);
        let origin = dir.join("origin.git");
        git(
            &seed,
            &["push", "--quiet", origin.to_str().unwrap(), "HEAD:main"],
        );
        for samples in [&mut cold, &mut warm] {
            let request = LaunchInput {
                prompt: Some("Benchmark".into()),
                repo: Some(origin.to_str().unwrap().to_string()),
                env: vec!["FAKE_CLAUDE=create".into()],
                ..Default::default()
            }
            .validate(&catalog, true)
            .unwrap();
            let prepared = launcher
                .prepare(
                    request,
                    &LaunchOrigin {
                        launched_by: "bench".into(),
                        discord: None,
                        project: ProjectChoice::OfRepository,
                        keys_of: None,
                        issue_session: None,
                        workflow: None,
                    },
                )
                .await
                .unwrap();
            let sink = SetupDuration(Mutex::new(None));
            let record = launcher
                .run(prepared, &sink, CancellationToken::new())
                .await
                .unwrap();
            assert_eq!(record.status.as_str(), "completed", "{:?}", record.error);
            let setup = record.phases.iter().find(|p| p.phase == Phase::Setup);
            let detail = setup.and_then(|p| p.detail.as_deref()).unwrap_or("");
            assert!(
                detail.contains("ran npm ci"),
                "setup did not install: {detail}"
            );
            samples.push(sink.0.lock().unwrap().expect("a setup phase"));
        }
    }
    assert_eq!(
        registry.tarballs_served(),
        PACKAGES * CACHE_RUNS,
        "a warm launch downloaded again"
    );
    let (cold, warm) = (median(cold), median(warm));
    println!(
        "dependency cache ({PACKAGES} npm packages, registry round trip {} ms, median of {CACHE_RUNS}):",
        REGISTRY_LATENCY.as_millis()
    );
    println!(
        "  setup phase, first launch (cold)   {:>7.1} ms",
        cold.as_secs_f64() * 1000.0
    );
    println!(
        "  setup phase, second launch (warm)  {:>7.1} ms",
        warm.as_secs_f64() * 1000.0
    );
    println!(
        "  ratio (cold / warm)                {:>7.2}x",
        cold.as_secs_f64() / warm.as_secs_f64()
    );
}

/// All parts, or only those named on the command line (`parsing`, `launch`, `cache`, `network`).
#[tokio::main]
async fn main() {
    let chosen: Vec<String> = std::env::args().skip(1).collect();
    let runs = |part: &str| chosen.is_empty() || chosen.iter().any(|c| c == part);
    if runs("parsing") {
        bench_parsing();
    }
    if runs("launch") {
        bench_launch().await;
    }
    if runs("cache") {
        bench_dependency_cache().await;
    }
    if runs("network") {
        bench_network().await;
    }
}
