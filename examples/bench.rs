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
//! 5. The mirror cache: launch → agent started for a GitHub repository of 500, 5,000 and 50,000
//!    files served over smart HTTP behind a token (the tests' git host, `git http-backend`), on a
//!    first launch (the mirror made) and a second (the mirror warm), against a bare `git clone` of
//!    the same URL (ratios). Needs the `codecourier` binary too.
//!
//! Needs bubblewrap and git, like the local sandbox itself.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use codecourier::agent::{claude, codex, opencode, pi, AgentStream};
use codecourier::catalog::{Catalog, LaunchInput};
use codecourier::config::Config;
use codecourier::ids::SandboxId;
use codecourier::model::Phase;
use codecourier::pipeline::{LaunchOrigin, Launcher, ProgressEvent, ProgressSink, ProjectChoice};
use codecourier::sandbox::{run_captured, Exec, SandboxSpec};
use codecourier::store::Store;
use tokio_util::sync::CancellationToken;

#[path = "../tests/support/npm_registry.rs"]
#[allow(dead_code)]
mod npm_registry;

#[path = "../tests/support/git_http.rs"]
#[allow(dead_code)]
mod git_http;

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
    let launcher = Launcher::new(&config, store, provider.clone(), catalog.clone());
    let origin_text = origin.to_str().unwrap().to_string();

    let mut launches = Vec::new();
    for _ in 0..RUNS {
        launches.push(timed_launch(&launcher, &catalog, &origin_text).await.0);
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
            let (took, phases) = timed_launch(&launcher, &catalog, origin.to_str().unwrap()).await;
            let provision = phases.iter().find(|p| p.phase == Phase::Provision);
            let detail = provision.and_then(|p| p.detail.as_deref()).unwrap_or("");
            let own = detail.contains("network: its own (loopback only");
            assert_eq!(own, egress == "list", "{detail}");
            starts.push(took);
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

/// The token the benchmark's git host wants.
const BENCH_TOKEN: &str = "ghp_bench0123456789abcdefghijklmnopqrstu";
const MIRROR_RUNS: usize = 3;

/// A small xorshift generator: file contents that compress like source, not like one repeated line.
struct Words(u64);

impl Words {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A file of about 1.5 KB.
    fn file(&mut self, n: usize) -> String {
        let mut text = format!("// module {n}\n");
        for line in 0..40 {
            let v = self.next();
            text.push_str(&format!(
                "pub fn f{line}_{:x}(x: u64) -> u64 {{ x ^ {} }}\n",
                v % 4096,
                v >> 20
            ));
        }
        text
    }
}

/// A bare repository `name.git` with `files` files over five commits, and a sixth that changes
/// a tenth of them (some history to deltify), written with `git fast-import`.
fn make_large_repo(root: &Path, name: &str, files: usize) -> std::path::PathBuf {
    use std::io::Write;
    let bare = root.join(format!("{name}.git"));
    git(
        root,
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            bare.to_str().unwrap(),
        ],
    );
    let mut import = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(&bare)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("git fast-import");
    let mut stream = std::io::BufWriter::new(import.stdin.take().unwrap());
    let mut words = Words(0x9E37_79B9_7F4A_7C15 ^ files as u64);
    let per_commit = files / 5;
    for commit in 0..6 {
        let message = format!("commit {commit}");
        write!(
            stream,
            "commit refs/heads/main\ncommitter b <b@example.com> {} +0000\ndata {}\n{message}\n",
            1_700_000_000 + commit,
            message.len()
        )
        .unwrap();
        let changed: Vec<usize> = if commit < 5 {
            (commit * per_commit..(commit + 1) * per_commit).collect()
        } else {
            (0..files).step_by(10).collect()
        };
        for n in changed {
            let text = words.file(n);
            write!(
                stream,
                "M 100644 inline src/d{}/f{n}.rs\ndata {}\n{text}\n",
                n / 500,
                text.len()
            )
            .unwrap();
        }
    }
    stream.flush().unwrap();
    drop(stream);
    assert!(import.wait().unwrap().success(), "git fast-import");
    git(&bare, &["repack", "--quiet", "-a", "-d"]);
    bare
}

/// The size of a directory's files, in MB.
fn megabytes(dir: &Path) -> f64 {
    fn bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let meta = e.metadata().unwrap();
                if meta.is_dir() {
                    bytes(&e.path())
                } else {
                    meta.len()
                }
            })
            .sum()
    }
    bytes(dir) as f64 / 1_000_000.0
}

/// A GitHub API for `acme/<name>` on each repository served: the repository, its branch heads,
/// the branch made, compare.
async fn github_api(
    git_host: &git_http::GitHost,
    repos: &[(String, std::path::PathBuf)],
) -> wiremock::MockServer {
    use wiremock::matchers::{method, path, path_regex};
    use wiremock::{Mock, ResponseTemplate};
    let server = wiremock::MockServer::start().await;
    for (name, bare) in repos {
        let full = format!("acme/{name}");
        let out = Command::new("git")
            .args(["rev-parse", "main"])
            .current_dir(bare)
            .output()
            .unwrap();
        let sha = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let size_kb = (megabytes(bare) * 1000.0) as u64;
        let repo = serde_json::json!({"full_name": full, "default_branch": "main", "clone_url": git_host.clone_url(&full), "html_url": format!("https://github.com/{full}"), "permissions": {"push": true}, "size": size_kb});
        Mock::given(method("GET"))
            .and(path(format!("/repos/{full}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(repo))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(format!("^/repos/{full}/branches/.+")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"name": "main", "commit": {"sha": sha}})),
            )
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("/repos/{full}/git/refs")))
            .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({})))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(format!("^/repos/{full}/compare/.+")))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"ahead_by": 1, "files": [], "html_url": "https://github.com/x"}),
            ))
            .mount(&server)
            .await;
    }
    server
}

/// A launcher of its own (a fresh data directory: no mirror yet) against the mock GitHub.
async fn github_launcher(data: &Path, api: &str) -> (Launcher, Catalog) {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bin");
    let vars = [
        ("CODECOURIER_DATA_DIR", data.to_str().unwrap().to_string()),
        ("CODECOURIER_TOOLS_DIR", tools.to_str().unwrap().to_string()),
        ("ANTHROPIC_API_KEY", "sk-ant-bench-0000000000".to_string()),
        ("GITHUB_API_URL", api.to_string()),
        ("GITHUB_TOKEN", BENCH_TOKEN.to_string()),
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
    (
        Launcher::new(&config, store, provider, catalog.clone()),
        catalog,
    )
}

/// One launch of `repo` to its end: launch → agent started, and its phases.
async fn timed_launch(
    launcher: &Launcher,
    catalog: &Catalog,
    repo: &str,
) -> (Duration, Vec<codecourier::store::PhaseRecord>) {
    let request = LaunchInput {
        prompt: Some("Benchmark".into()),
        repo: Some(repo.to_string()),
        env: vec!["FAKE_CLAUDE=create".into()],
        pr: Some("none".into()),
        ..Default::default()
    }
    .validate(catalog, true)
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
    let agent_started = sink.0.lock().unwrap().expect("agent started");
    (agent_started - started, record.phases)
}

/// A bare `git clone` of `url` with the token, as git would make it against GitHub.
fn bare_clone(url: &str, into: &Path) -> Duration {
    use base64::Engine;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{BENCH_TOKEN}"));
    let started = Instant::now();
    let status = Command::new("git")
        .args(["clone", "--quiet", url, into.to_str().unwrap()])
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
        .env(
            "GIT_CONFIG_VALUE_0",
            format!("Authorization: Basic {basic}"),
        )
        .env("GIT_TERMINAL_PROMPT", "0")
        .status()
        .expect("git");
    assert!(status.success(), "git clone {url}");
    started.elapsed()
}

async fn bench_mirror() {
    let root = tempfile::tempdir().unwrap();
    // BENCH_MIRROR_FILES=500,5000 runs those sizes only.
    let sizes: Vec<usize> = std::env::var("BENCH_MIRROR_FILES")
        .unwrap_or_else(|_| "500,5000,50000".into())
        .split(',')
        .map(|n| n.trim().parse().expect("BENCH_MIRROR_FILES: numbers"))
        .collect();
    let repos: Vec<(String, std::path::PathBuf)> = sizes
        .iter()
        .map(|&files| {
            let name = format!("repo{files}");
            let bare = make_large_repo(root.path(), &name, files);
            (name, bare)
        })
        .collect();
    let names: Vec<String> = repos.iter().map(|(n, _)| format!("acme/{n}")).collect();
    let host_repos: Vec<(&str, &Path)> = names
        .iter()
        .zip(&repos)
        .map(|(full, (_, bare))| (full.as_str(), bare.as_path()))
        .collect();
    let git_host = git_http::GitHost::start(BENCH_TOKEN, &host_repos).await;
    let api = github_api(&git_host, &repos).await;
    println!(
        "mirror cache (launch → agent process started, against a bare `git clone` of the same URL over smart HTTP behind a token; median of {MIRROR_RUNS}):"
    );
    println!(
        "  {:>7} {:>8}  {:>10}  {:>18}  {:>18}",
        "files", "history", "git clone", "first launch", "second launch"
    );
    let mut run = 0;
    for ((files, (_, bare)), full) in sizes.iter().zip(&repos).zip(&names) {
        let (mut clones, mut firsts, mut seconds) = (Vec::new(), Vec::new(), Vec::new());
        let mut phases = (Vec::new(), Vec::new());
        for _ in 0..MIRROR_RUNS {
            run += 1;
            let into = root.path().join(format!("clone-{run}"));
            clones.push(bare_clone(&git_host.clone_url(full), &into));
            std::fs::remove_dir_all(&into).unwrap();
            let data = root.path().join(format!("data-{run}"));
            let (launcher, catalog) = github_launcher(&data, &api.uri()).await;
            let (first, first_phases) = timed_launch(&launcher, &catalog, full).await;
            let (second, second_phases) = timed_launch(&launcher, &catalog, full).await;
            firsts.push(first);
            seconds.push(second);
            phases = (first_phases, second_phases);
            drop(launcher);
            let _ = std::fs::remove_dir_all(&data);
        }
        let (clone, first, second) = (median(clones), median(firsts), median(seconds));
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let ratio = |d: Duration| d.as_secs_f64() / clone.as_secs_f64();
        println!(
            "  {files:>7} {:>5.1} MB  {:>7.0} ms  {:>7.0} ms {:>6.2}x  {:>7.0} ms {:>6.2}x",
            megabytes(&bare.join("objects")),
            ms(clone),
            ms(first),
            ratio(first),
            ms(second),
            ratio(second),
        );
        for (which, phases) in [("first", &phases.0), ("second", &phases.1)] {
            let clone = phases.iter().find(|p| p.phase == Phase::Clone);
            println!(
                "          {which:<6} clone phase: {}",
                clone.and_then(|p| p.detail.as_deref()).unwrap_or("")
            );
            // Where the time to the agent goes: each phase before it, in ms.
            let before_agent: Vec<String> = phases
                .iter()
                .take_while(|p| p.phase != Phase::Agent)
                .map(|p| format!("{} {}", p.phase.as_str(), p.duration_ms().unwrap_or(0)))
                .collect();
            println!(
                "          {which:<6} phases (ms): {}",
                before_agent.join(" · ")
            );
        }
    }
}

/// All parts, or only those named on the command line (`parsing`, `launch`, `cache`, `network`,
/// `mirror`).
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
    if runs("mirror") {
        bench_mirror().await;
    }
}
