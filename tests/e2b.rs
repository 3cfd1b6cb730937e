//! The E2B provider against a fake control plane and envd on loopback (tests/support/fake_e2b.rs),
//! with every control-plane request body validated against E2B's published OpenAPI spec.

mod support;

use base64::Engine;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use codecourier::catalog::{build_custom_tag, Resources};
use codecourier::config::E2bConfig;
use codecourier::sandbox::e2b::E2bProvider;
use codecourier::sandbox::{run_captured, Exec, SandboxError, SandboxProvider, SandboxSpec};
use codecourier::secret::Secret;
use serde_json::{json, Value};
use support::fake_e2b::{self, Running, API_KEY};
use support::openapi::Spec;
use support::{fixtures_bin, git, World};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn provider(fake: &Running) -> E2bProvider {
    E2bProvider::new(&E2bConfig {
        api_key: Some(Secret::new(API_KEY)),
        api_url: fake.url.clone(),
        domain: "e2b.app".into(),
        sandbox_url: Some(fake.url.clone()),
    })
    .unwrap()
}

fn spec(cpus: u32, memory_mb: u32, template: &str) -> SandboxSpec {
    SandboxSpec {
        template: build_custom_tag(template).unwrap(),
        resources: Resources {
            memory_mb,
            cpus,
            timeout_ms: 60_000,
        },
        env: vec![("FROM_SPEC".into(), Secret::new("yes"))],
        metadata: BTreeMap::from([("codecourier_sandbox_id".into(), "test".into())]),
        mounts: Vec::new(),
        host_tools: Vec::new(),
        network: None,
    }
}

fn sh(script: &str) -> Exec {
    Exec {
        argv: vec!["bash".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

/// Every control-plane body the client sent conforms to its schema in the spec.
fn assert_requests_follow_the_spec(fake: &Running) {
    let spec = Spec::e2b();
    let requests = fake.fake.requests.lock().unwrap().clone();
    assert!(!requests.is_empty());
    for (verb, route, body) in requests {
        if body.is_null() {
            continue;
        }
        let schema = spec.request_schema(&verb, &route);
        let violations = spec.violations(&schema, &body, &format!("{verb} {route}"));
        assert!(violations.is_empty(), "{violations:#?}\n{body:#}");
    }
}

#[test]
fn the_spec_check_catches_a_mistyped_field() {
    let spec = Spec::e2b();
    let schema = spec.request_schema("POST", "/sandboxes");
    assert!(spec
        .violations(&schema, &json!({"templateID": "base", "timeout": 60}), "")
        .is_empty());
    let wrong = spec.violations(
        &schema,
        &json!({"templateId": "base", "timeout": "60", "metadata": {"a": 1}}),
        "",
    );
    assert_eq!(wrong.len(), 4, "{wrong:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_run_with_stdin_env_and_exit_codes_and_files_arrive() {
    let data = tempfile::tempdir().unwrap();
    let fake = fake_e2b::start(data.path().to_path_buf(), fixtures_bin(), Vec::new()).await;
    fake.fake.switches.envd_not_ready.store(3, Ordering::SeqCst);
    let e2b = provider(&fake);
    let sandbox = e2b
        .create(
            &spec(2, 1024, "codecourier-claude-code"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(
        sandbox.limits_report.contains("2 CPUs / 1024 MB as asked"),
        "{}",
        sandbox.limits_report
    );

    let exec = Exec {
        stdin: Some(b"-a prompt on stdin".to_vec()),
        env: vec![("PER_COMMAND".into(), Secret::new("here"))],
        ..sh("cat; echo; echo $FROM_SPEC $PER_COMMAND; echo oops >&2; exit 7")
    };
    let out = run_captured(&e2b, &sandbox, &exec).await.unwrap();
    assert_eq!(out.status.code, Some(7));
    assert_eq!(out.stdout, "-a prompt on stdin\nyes here\n");
    assert_eq!(out.stderr, "oops\n");
    assert_eq!(
        run_captured(&e2b, &sandbox, &sh("true"))
            .await
            .unwrap()
            .status
            .code,
        Some(0)
    );

    e2b.write_file(&sandbox, "/home/user/.config/key", b"secret", 0o600)
        .await
        .unwrap();
    let out = run_captured(
        &e2b,
        &sandbox,
        &sh("stat -c %a ~/.config/key; cat ~/.config/key"),
    )
    .await
    .unwrap();
    assert_eq!(out.stdout, "600\nsecret");

    e2b.kill(&sandbox.provider_id).await.unwrap();
    assert_eq!(fake.fake.vm_count(), 0);
    assert_requests_follow_the_spec(&fake);
    let create = &fake.fake.requests.lock().unwrap()[0].2.clone();
    assert_eq!(
        create["timeout"], 60,
        "the timeout is always sent, in seconds"
    );
    assert_eq!(create["secure"], true);
    assert_eq!(create["templateID"], "codecourier-claude-code");
    assert_eq!(create["metadata"]["owner"], "codecourier");
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_failures_are_reported_not_mistaken_for_exits() {
    let data = tempfile::tempdir().unwrap();
    let fake = fake_e2b::start(data.path().to_path_buf(), fixtures_bin(), Vec::new()).await;
    let e2b = provider(&fake);
    let sandbox = e2b
        .create(&spec(2, 1024, "base"), Duration::from_secs(60))
        .await
        .unwrap();

    fake.fake
        .switches
        .error_in_final_envelope
        .store(true, Ordering::SeqCst);
    let err = run_captured(&e2b, &sandbox, &sh("echo hi"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("envd ended the command with internal: process exploded"),
        "{err}"
    );

    fake.fake.switches.cut_stream.store(true, Ordering::SeqCst);
    let err = run_captured(&e2b, &sandbox, &sh("echo hi"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cut in the middle"), "{err}");

    fake.fake
        .switches
        .envd_unauthorized
        .store(true, Ordering::SeqCst);
    let err = run_captured(&e2b, &sandbox, &sh("echo hi"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("envd refused the sandbox's access token"),
        "{err}"
    );
    fake.fake
        .switches
        .envd_unauthorized
        .store(false, Ordering::SeqCst);
    e2b.kill(&sandbox.provider_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn create_failures_become_sentences_and_resource_mismatches_a_warning() {
    let data = tempfile::tempdir().unwrap();
    let fake = fake_e2b::start(data.path().to_path_buf(), fixtures_bin(), Vec::new()).await;
    let e2b = provider(&fake);
    let err = e2b
        .create(&spec(2, 1024, "missing-template"), Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("choose another with --template"),
        "{err}"
    );
    let err = e2b
        .create(&spec(2, 1024, "base"), Duration::from_secs(4 * 3600))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Timeout cannot be greater than 1 hours")
            && err.to_string().contains("shorter --timeout"),
        "{err}"
    );
    let bad_key = E2bProvider::new(&E2bConfig {
        api_key: Some(Secret::new("e2b_wrong")),
        api_url: fake.url.clone(),
        domain: "e2b.app".into(),
        sandbox_url: Some(fake.url.clone()),
    })
    .unwrap();
    let err = bad_key
        .create(&spec(2, 1024, "base"), Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("E2B refused E2B_API_KEY"), "{err}");
    assert!(!err.to_string().contains("e2b_wrong"));

    let sandbox = e2b
        .create(&spec(4, 2048, "base"), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        sandbox
            .limits_report
            .contains("⚠️ asked for 4 CPUs / 2048 MB, but template base provides 2 CPUs / 1024 MB"),
        "{}",
        sandbox.limits_report
    );
    e2b.kill(&sandbox.provider_id).await.unwrap();
    assert_requests_follow_the_spec(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_kill_and_extend() {
    let data = tempfile::tempdir().unwrap();
    let fake = fake_e2b::start(data.path().to_path_buf(), fixtures_bin(), Vec::new()).await;
    let e2b = std::sync::Arc::new(provider(&fake));

    let short = e2b
        .create(&spec(2, 1024, "base"), Duration::from_secs(2))
        .await
        .unwrap();
    let started = Instant::now();
    let err = run_captured(e2b.as_ref(), &short, &sh("sleep 60"))
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Expired), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));

    let extended = e2b
        .create(&spec(2, 1024, "base"), Duration::from_secs(2))
        .await
        .unwrap();
    e2b.set_timeout(&extended, Duration::from_secs(30))
        .await
        .unwrap();
    let out = run_captured(e2b.as_ref(), &extended, &sh("sleep 3; echo still here"))
        .await
        .unwrap();
    assert_eq!(out.stdout, "still here\n");

    let running = tokio::spawn({
        let (e2b, extended) = (e2b.clone(), extended.clone());
        async move { run_captured(e2b.as_ref(), &extended, &sh("sleep 60")).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    e2b.kill(&extended.provider_id).await.unwrap();
    let err = running.await.unwrap().unwrap_err();
    assert!(matches!(err, SandboxError::Killed), "{err:?}");
    assert_requests_follow_the_spec(&fake);
    let timeouts: Vec<Value> = fake
        .fake
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.1.ends_with("/timeout"))
        .map(|r| r.2.clone())
        .collect();
    assert_eq!(timeouts, [json!({"timeout": 30})]);
}

/// A GitHub for acme/widgets whose git is the world's bare repository behind the token.
async fn github(world: &World) -> support::mock_github::Github {
    let server = MockServer::start().await;
    let git_host = support::mock_github::serve_git(world).await;
    let repo = json!({"full_name": "acme/widgets", "default_branch": "main", "clone_url": git_host.clone_url("acme/widgets"),
        "html_url": "https://github.com/acme/widgets", "permissions": {"push": true}});
    let sha = git(&world.origin, &["rev-parse", "main"]);
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(repo))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets/branches/main"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"name": "main", "commit": {"sha": sha.trim()}})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/widgets/git/refs"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({})))
        .mount(&server)
        .await;
    Mock::given(method("GET")).and(path_regex("^/repos/acme/widgets/compare/.+"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ahead_by": 1, "files": [], "html_url": "https://github.com/acme/widgets/compare/x"}))).mount(&server).await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/widgets/pulls"))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({"number": 5, "html_url": "https://github.com/acme/widgets/pull/5"}),
        ))
        .mount(&server)
        .await;
    support::mock_github::Github {
        api: server,
        git: git_host,
    }
}

fn e2b_launch(
    world: &World,
    fake: &Running,
    api: &MockServer,
    args: &[&str],
) -> std::process::Command {
    let mut cmd = world.std_cmd();
    cmd.env("SANDBOX_PROVIDER", "e2b")
        .env("E2B_API_KEY", API_KEY)
        .env("E2B_API_URL", &fake.url)
        .env("E2B_SANDBOX_URL", &fake.url)
        .env("GITHUB_API_URL", api.uri())
        .env("GITHUB_TOKEN", support::mock_github::TOKEN)
        .args(["launch", "--json", "--repo", "acme/widgets"])
        .args(args);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_launch_sequence_runs_on_e2b() {
    let world = World::new();
    let vms = world.dir.path().join("vms");
    let fake = fake_e2b::start(vms, fixtures_bin(), Vec::new()).await;
    fake.fake.switches.envd_not_ready.store(2, Ordering::SeqCst);
    let api = github(&world).await;
    let mut cmd = e2b_launch(
        &world,
        &fake,
        &api,
        &["--prompt", "Save the prompt", "--env", "FAKE_CLAUDE=create"],
    );
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{r:#}");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["result"], "Saved the prompt to prompt.txt.");
    assert_eq!(r["pr_url"], "https://github.com/acme/widgets/pull/5");
    assert_eq!(
        world.file_on_branch(r["branch"].as_str().unwrap(), "prompt.txt"),
        "Save the prompt"
    );
    let provision = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "provision")
        .unwrap()
        .clone();
    assert!(
        provision["detail"]
            .as_str()
            .unwrap()
            .contains("E2B micro-VM (codecourier-claude-code): 2 CPUs / 1024 MB as asked"),
        "{provision:#}"
    );
    assert_eq!(fake.fake.vm_count(), 0, "the sandbox is killed at the end");
    assert_requests_follow_the_spec(&fake);

    // E2B's egress adds the credentials; the VM holds placeholders and reaches only what the
    // launch needs.
    let requests = fake.fake.requests.lock().unwrap().clone();
    let create = &requests.iter().find(|r| r.1 == "/sandboxes").unwrap().2;
    let network = &create["network"];
    let git_host = url::Url::parse(&api.git.clone_url("acme/widgets")).unwrap();
    let host = git_host.host_str().unwrap();
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("x-access-token:{}", support::mock_github::TOKEN));
    assert_eq!(
        network["rules"][host][0]["transform"]["headers"]["Authorization"],
        format!("Basic {basic}"),
        "{network:#}"
    );
    assert!(network["allowOut"]
        .as_array()
        .unwrap()
        .contains(&json!(host)));
    assert!(network["allowOut"]
        .as_array()
        .unwrap()
        .contains(&json!("api.anthropic.com")));
    assert_eq!(network["denyOut"], json!(["0.0.0.0/0"]));
    assert_eq!(
        network["rules"]["api.anthropic.com"][0]["transform"]["headers"]["x-api-key"],
        support::API_KEY
    );
    let secrets = [
        support::API_KEY,
        support::mock_github::TOKEN,
        basic.as_str(),
    ];
    let env = create["envVars"].to_string();
    let uploads = fake.fake.uploads.lock().unwrap().clone();
    let starts = fake.fake.process_starts.lock().unwrap().clone();
    assert!(!uploads.is_empty() && !starts.is_empty());
    for secret in secrets {
        assert!(!env.contains(secret), "a key in envVars: {env}");
        for (path, contents) in &uploads {
            assert!(
                !String::from_utf8_lossy(contents).contains(secret),
                "a key written to {path}"
            );
        }
        for start in &starts {
            assert!(!start.to_string().contains(secret), "a key in {start}");
        }
    }
    let provision = provision["detail"].as_str().unwrap();
    assert!(
        provision.contains("pushes are not limited to the branch"),
        "{provision}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_crash_the_next_command_ends_the_orphaned_e2b_sandbox() {
    let world = World::new();
    let vms = world.dir.path().join("vms");
    let fake = fake_e2b::start(vms, fixtures_bin(), Vec::new()).await;
    let api = github(&world).await;
    let mut child = e2b_launch(
        &world,
        &fake,
        &api,
        &["--prompt", "Hang", "--env", "FAKE_CLAUDE=hang"],
    )
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let out = world
            .std_cmd()
            .env("SANDBOX_PROVIDER", "e2b")
            .env("E2B_API_KEY", API_KEY)
            .env("E2B_API_URL", &fake.url)
            .args(["sandboxes", "list", "--json"])
            .output()
            .unwrap();
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if let Some(r) = list
            .as_array()
            .and_then(|l| l.iter().find(|r| r["status"] == "running"))
        {
            break r["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "never running: {list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let mut show = world.std_cmd();
    show.env("SANDBOX_PROVIDER", "e2b")
        .env("E2B_API_KEY", API_KEY)
        .env("E2B_API_URL", &fake.url)
        .args(["sandboxes", "show", "--json", &id]);
    let out = tokio::task::spawn_blocking(move || show.output().unwrap())
        .await
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["status"], "failed");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("CodeCourier restarted during the run (while running"),
        "{r:#}"
    );
    assert_eq!(fake.fake.vm_count(), 0, "the orphaned sandbox was killed");
}

#[test]
fn the_templates_build_the_cli_versions_the_code_and_tests_pin() {
    let catalog = codecourier::catalog::Catalog::built_in();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for tool in &catalog.tools {
        let package = codecourier::agent::packages::of_tool(&tool.id)
            .unwrap_or_else(|| panic!("no pinned package for {}", tool.id));
        let path = root.join(format!("templates/{}/e2b.Dockerfile", tool.id));
        let dockerfile =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let installs: Vec<&str> = dockerfile
            .lines()
            .filter(|l| l.contains("npm install"))
            .collect();
        assert_eq!(
            installs.len(),
            1,
            "{}: one npm install line",
            path.display()
        );
        let spec = package.spec();
        assert!(
            installs[0].split_whitespace().any(|word| word == spec),
            "{} installs `{}`, the code pins {spec}",
            path.display(),
            installs[0].trim()
        );
        assert!(
            dockerfile.starts_with("# ") && dockerfile.contains("\nFROM e2bdev/base"),
            "{}",
            path.display()
        );
        // The command the file and the launch's advice give builds it under the catalog's name.
        let build = codecourier::sandbox::e2b::templates::build_command(tool, &catalog.limits);
        assert!(dockerfile.contains(&build), "{}: {build}", path.display());
    }
    assert_eq!(
        support::CLAUDE_CODE_VERSION,
        codecourier::agent::packages::CLAUDE_CODE.version
    );
}

/// The stand-in registry with Claude Code at its pinned version, whose `claude` is the tests'
/// stand-in CLI.
async fn registry_with_claude_code() -> support::npm_registry::Registry {
    let package = codecourier::agent::packages::CLAUDE_CODE;
    support::npm_registry::serve(vec![support::npm_registry::Package {
        name: package.name.into(),
        version: package.version.into(),
        bin: vec![(package.command.into(), fixtures_bin().join("claude"))],
    }])
    .await
}

fn phase_detail(record: &Value, phase: &str) -> String {
    record["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == phase)
        .unwrap_or_else(|| panic!("no {phase} phase: {record:#}"))["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn templates_created(fake: &Running) -> Vec<String> {
    fake.fake
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.0 == "POST" && r.1 == "/sandboxes")
        .map(|r| r.2["templateID"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_whose_template_is_missing_starts_from_base_and_installs_the_cli() {
    let world = World::new();
    let vms = world.dir.path().join("vms");
    // The VMs have no tools directory: the CLI exists only in the registry.
    let empty = world.dir.path().join("no-tools");
    std::fs::create_dir(&empty).unwrap();
    let fake = fake_e2b::start(vms, empty, Vec::new()).await;
    fake.fake
        .team_templates
        .lock()
        .unwrap()
        .retain(|t| t != "codecourier-claude-code");
    let registry = registry_with_claude_code().await;
    *fake.fake.npm_registry.lock().unwrap() = Some(registry.url.clone());
    let api = github(&world).await;
    let mut cmd = e2b_launch(
        &world,
        &fake,
        &api,
        &["--prompt", "Save the prompt", "--env", "FAKE_CLAUDE=create"],
    );
    cmd.env("CODECOURIER_EGRESS_ALLOW", "127.0.0.1");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{r:#}");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["result"], "Saved the prompt to prompt.txt.");
    assert_eq!(
        world.file_on_branch(r["branch"].as_str().unwrap(), "prompt.txt"),
        "Save the prompt"
    );
    assert_eq!(
        templates_created(&fake),
        ["codecourier-claude-code", "base"],
        "the tool's own template first, then E2B's base"
    );

    let spec = codecourier::agent::packages::CLAUDE_CODE.spec();
    let build = "e2b template create codecourier-claude-code --path templates/claude-code --dockerfile e2b.Dockerfile --cpu-count 2 --memory-mb 1024";
    let provision = phase_detail(&r, "provision");
    assert!(
        provision.contains("E2B micro-VM (base)")
            && provision.contains("template codecourier-claude-code is not in this E2B team")
            && provision.contains(&format!("tool setup installs {spec}"))
            && provision.contains(build),
        "{provision}"
    );
    let tool_setup = phase_detail(&r, "tool_setup");
    assert!(
        tool_setup.contains(&format!("installed {spec} from npm in "))
            && tool_setup.contains(" s (template codecourier-claude-code is missing")
            && tool_setup.contains(build),
        "{tool_setup}"
    );
    // The install fetched the pinned version from the registry through the VM's egress, and
    // the agent ran from where it went.
    let fetched = registry.requests.lock().unwrap().clone();
    assert!(
        fetched.iter().any(|p| p.contains("claude-code"))
            && fetched.iter().any(|p| p.ends_with(".tgz")),
        "{fetched:?}"
    );
    let starts = fake.fake.process_starts.lock().unwrap().clone();
    assert!(
        starts
            .iter()
            .any(|s| s["process"]["cmd"] == "/home/user/.local/bin/claude"),
        "the agent runs the installed CLI by its path"
    );
    assert_eq!(fake.fake.vm_count(), 0, "the sandbox is killed at the end");
    assert_requests_follow_the_spec(&fake);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_explicit_template_the_team_lacks_fails_naming_it() {
    let world = World::new();
    let vms = world.dir.path().join("vms");
    let fake = fake_e2b::start(vms, fixtures_bin(), Vec::new()).await;
    let api = github(&world).await;
    let mut cmd = e2b_launch(
        &world,
        &fake,
        &api,
        &["--prompt", "Do it", "--template", "acme/widgets-env:v2"],
    );
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(1), "{r:#}");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["failed_phase"], "provision");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("E2B has no template acme/widgets-env:v2 in this team"),
        "{error}"
    );
    assert_eq!(
        templates_created(&fake),
        ["acme/widgets-env:v2"],
        "a template named explicitly never falls back"
    );
    assert_eq!(fake.fake.vm_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_lists_the_team_templates_and_how_to_build_the_missing_ones() {
    let world = World::new();
    let fake = fake_e2b::start(world.dir.path().join("vms"), fixtures_bin(), Vec::new()).await;
    *fake.fake.team_templates.lock().unwrap() = vec![
        "codecourier-claude-code".into(),
        "acme-data-env".into(),
        "codecourier-codex".into(),
    ];
    let mut cmd = world.std_cmd();
    cmd.env("SANDBOX_PROVIDER", "e2b")
        .env("E2B_API_KEY", API_KEY)
        .env("E2B_API_URL", &fake.url)
        .arg("doctor");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "✓ E2B templates: the team has 3: codecourier-claude-code, acme-data-env, codecourier-codex",
        "✓ Claude Code template: codecourier-claude-code exists",
        "✓ Codex template: codecourier-codex exists",
        "! OpenCode template: codecourier-opencode is missing: launches start from E2B's base template and install opencode-ai@1.18.33 each time; build it: `e2b template create codecourier-opencode --path templates/opencode --dockerfile e2b.Dockerfile --cpu-count 2 --memory-mb 1024`",
        "! Pi template: codecourier-pi is missing",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    let listed = fake
        .fake
        .requests
        .lock()
        .unwrap()
        .iter()
        .any(|r| r.0 == "GET" && r.1 == "/templates");
    assert!(listed, "doctor asked E2B for the template list");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cli_install_that_fails_on_e2b_says_to_build_the_template() {
    let world = World::new();
    let empty = world.dir.path().join("no-tools");
    std::fs::create_dir(&empty).unwrap();
    let fake = fake_e2b::start(world.dir.path().join("vms"), empty, Vec::new()).await;
    fake.fake
        .team_templates
        .lock()
        .unwrap()
        .retain(|t| t != "codecourier-claude-code");
    // A registry without the package: npm's install fails at once.
    let registry = support::npm_registry::serve(Vec::new()).await;
    *fake.fake.npm_registry.lock().unwrap() = Some(registry.url.clone());
    let api = github(&world).await;
    let mut cmd = e2b_launch(&world, &fake, &api, &["--prompt", "Do it"]);
    cmd.env("CODECOURIER_EGRESS_ALLOW", "127.0.0.1");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(r["status"], "failed", "{r:#}");
    assert_eq!(r["failed_phase"], "tool_setup");
    let error = r["error"].as_str().unwrap();
    let spec = codecourier::agent::packages::CLAUDE_CODE.spec();
    assert!(
        error.contains(&format!("installing {spec} failed"))
            && error.contains("build the template codecourier-claude-code with the CLI in it (`e2b template create codecourier-claude-code --path templates/claude-code")
            && !error.contains("CODECOURIER_TOOLS_DIR")
            && !error.contains("on this machine"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_budget_is_refused_on_e2b_whose_egress_the_metering_gateway_does_not_see() {
    let world = World::new();
    let fake = fake_e2b::start(world.dir.path().join("vms"), fixtures_bin(), Vec::new()).await;
    let api = github(&world).await;
    let own = e2b_launch(
        &world,
        &fake,
        &api,
        &["--prompt", "Do it", "--max-cost-usd", "2"],
    );
    let mut deployment = e2b_launch(&world, &fake, &api, &["--prompt", "Do it"]);
    deployment.env("CODECOURIER_DEFAULT_BUDGET_USD", "5");
    for (mut cmd, says) in [
        (
            own,
            "the launch's budget of $2.00 cannot be enforced on e2b sandboxes",
        ),
        (
            deployment,
            "CODECOURIER_DEFAULT_BUDGET_USD: cannot be enforced on E2B sandboxes",
        ),
    ] {
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
    assert_eq!(fake.fake.vm_count(), 0, "nothing was started");
}
