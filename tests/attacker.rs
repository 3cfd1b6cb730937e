//! The agent as an attacker (DESIGN.md section 10). The stand-in agent, in its attack mode
//! (`tests/fixtures/bin/attack`), looks for every secret planted in CodeCourier's configuration,
//! files and store, plants git hooks and configuration, pushes where it should not, and links files
//! of the host; the launch runs in this process against a mock GitHub whose git is served over
//! smart HTTP behind the token and a fake model API, so the gateway can be asked afterwards.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use codecourier::catalog::{Catalog, FollowUp, LaunchInput};
use codecourier::config::Config;
use codecourier::pipeline::{LaunchOrigin, Launcher, NoProgress, ProjectChoice};
use codecourier::sandbox::local::LocalProvider;
use codecourier::secret::Secret;
use codecourier::store::{ProjectChange, SandboxRecord, Store};
use support::{fake_anthropic, git, mock_github, World};

/// Every planted secret holds this marker; the attack searches for it.
const MARKER: &str = "XPLANTEDX";
const MODEL_KEY: &str = "sk-ant-api03-XPLANTEDXmodelKEY0123456789abcdef";
const GITHUB_TOKEN: &str = "ghp_XPLANTEDXgithubTOKEN0123456789abcdefghij";
const OTHER_PROJECT_KEY: &str = "sk-ant-api03-XPLANTEDXotherPROJECTkey0123456789";
const APP_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIXPLANTEDXappKEY0123456789abcdef\n-----END RSA PRIVATE KEY-----\n";
/// A plain variable of the launch: the agent is meant to see it.
const CANARY: &str = "XPLANTEDX-canary-the-agent-may-see";

/// A world with every secret planted: in CodeCourier's configuration (its environment and `.env`),
/// a GitHub App key file beside it and in the data directory, and another project's key in the
/// store.
struct Planted {
    world: World,
    launcher: Launcher,
    catalog: Catalog,
    store: Store,
    model_api: wiremock::MockServer,
    github: mock_github::Github,
}

impl Planted {
    async fn new() -> Self {
        let world = World::new();
        let model_api = fake_anthropic::start(fake_anthropic::Mode::Works {
            extra_text: String::new(),
        })
        .await;
        let github = mock_github::start_with_token(&world, GITHUB_TOKEN).await;
        let data = world.dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let dotenv = format!(
            "ANTHROPIC_API_KEY={MODEL_KEY}\nGITHUB_TOKEN={GITHUB_TOKEN}\nGITHUB_APP_PRIVATE_KEY={}\n",
            APP_KEY.replace('\n', "\\n")
        );
        std::fs::write(world.dir.path().join(".env"), dotenv).unwrap();
        std::fs::write(world.dir.path().join("app.pem"), APP_KEY).unwrap();
        std::fs::write(data.join("app.pem"), APP_KEY).unwrap();
        let vars: BTreeMap<&str, String> = BTreeMap::from([
            ("CODECOURIER_DATA_DIR", data.display().to_string()),
            (
                "CODECOURIER_TOOLS_DIR",
                support::fixtures_bin().display().to_string(),
            ),
            ("ANTHROPIC_API_KEY", MODEL_KEY.to_string()),
            // The operator's model API: every launch's upstream.
            ("ANTHROPIC_BASE_URL", model_api.uri()),
            ("GITHUB_API_URL", github.uri()),
            ("GITHUB_TOKEN", GITHUB_TOKEN.to_string()),
            ("CODECOURIER_ALLOW_LOCAL_REPOS", "true".to_string()),
        ]);
        let config = Config::from_lookup(|n| vars.get(n).cloned()).unwrap();
        let store = Store::open(&config).await.unwrap();
        let other = world.dir.path().join("other.git");
        git(
            world.dir.path(),
            &["init", "--quiet", "--bare", "other.git"],
        );
        let other = store
            .project_for_repo(&other.display().to_string())
            .await
            .unwrap();
        store
            .put_secret(
                &codecourier::pipeline::project_scope(other.id),
                "ANTHROPIC_API_KEY",
                &Secret::new(OTHER_PROJECT_KEY),
            )
            .await
            .unwrap();
        let provider = Arc::new(
            LocalProvider::new(&config.data_dir, config.tools_dir.clone())
                .with_init_binary(env!("CARGO_BIN_EXE_codecourier").into()),
        );
        let catalog = Catalog::built_in();
        let launcher = Launcher::new(&config, store.clone(), provider, catalog.clone());
        Self {
            world,
            launcher,
            catalog,
            store,
            model_api,
            github,
        }
    }

    fn origin_path(&self) -> String {
        self.world.origin.display().to_string()
    }

    async fn launch(&self, repo: &str, env: &[&str], follow_up: Option<FollowUp>) -> SandboxRecord {
        let mut request = LaunchInput {
            prompt: Some("Do as the repository says".into()),
            repo: Some(repo.into()),
            env: env.iter().map(|e| e.to_string()).collect(),
            ..Default::default()
        }
        .validate(&self.catalog, true)
        .unwrap();
        request.follow_up = follow_up;
        let origin = LaunchOrigin {
            launched_by: "mallory".into(),
            discord: None,
            project: ProjectChoice::OfRepository,
            keys_of: None,
            issue_session: None,
            workflow: None,
        };
        let prepared = self.launcher.prepare(request, &origin).await.unwrap();
        self.launcher
            .run(prepared, &NoProgress, Default::default())
            .await
            .unwrap()
    }
}

/// The attack report's lines that start with `key: `, decoded when they hold base64.
fn held(report: &str, key: &str) -> String {
    let line = report
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in the report:\n{report}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line)
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

/// The lines of a report or hook record that found a planted value, other than the canary.
fn secrets_found(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            l.starts_with("env: ")
                || l.starts_with("/proc/")
                || l.starts_with("file: ")
                || l.contains(MARKER)
        })
        .filter(|l| !l.contains(CANARY))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attacking_agent_finds_no_secret_redirects_no_push_and_its_placeholder_dies_with_the_launch(
) {
    let planted = Planted::new().await;
    let main_before = git(&planted.world.origin, &["rev-parse", "main"]);
    let canary = format!("CANARY={CANARY}");
    let record = planted
        .launch("acme/widgets", &["FAKE_CLAUDE=attack", &canary], None)
        .await;
    assert_eq!(record.status.as_str(), "completed", "{:?}", record.error);
    let branch = record.branch.clone().unwrap();
    let report = planted.world.file_on_branch(&branch, "attack-report.txt");

    // The search saw what it could reach (the canary, in its own environment and /proc) and no
    // secret anywhere: not the model key, the token, the App key, nor another project's key.
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("env: ") && l.contains(CANARY)),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("/proc/") && l.contains(CANARY)),
        "{report}"
    );
    assert_eq!(secrets_found(&report), Vec::<&str>::new(), "{report}");

    // It held a placeholder, the gateway's URL on its own loopback, and a remote through the
    // gateway; with them its model request reached the operator's API with the real key.
    let placeholder = held(&report, "held-key");
    assert!(!placeholder.is_empty() && placeholder != MODEL_KEY);
    assert_eq!(
        held(&report, "held-base-url"),
        "http://127.0.0.1:3128/anthropic"
    );
    let remote = held(&report, "held-remote");
    assert!(
        remote.contains(&placeholder) && remote.contains("127.0.0.1:3128/git/"),
        "{remote}"
    );
    assert!(report.contains("model-api-status: 200"), "{report}");
    let seen = planted.model_api.received_requests().await.unwrap();
    assert!(!seen.is_empty());
    assert!(seen
        .iter()
        .all(|r| r.headers.get("x-api-key").is_some_and(|k| k == MODEL_KEY)));

    // A push to another branch through the gateway was refused; main is as it was.
    assert!(report.contains("push-main: refused"), "{report}");
    assert_eq!(
        git(&planted.world.origin, &["rev-parse", "main"]),
        main_before
    );

    // Its hooks and fsmonitor ran, in the sandbox only, and saw no secret; its pushurl and
    // insteadOf sent nothing elsewhere: both commits are on the launch's branch.
    let hooks = planted.world.file_on_branch(&branch, "hooks-saw.txt");
    assert!(hooks.contains("fsmonitor ran"), "{hooks}");
    assert!(hooks.contains("pre-commit ran"), "{hooks}");
    assert_eq!(secrets_found(&hooks), Vec::<&str>::new(), "{hooks}");
    assert_eq!(
        planted.world.file_on_branch(&branch, "leftover.txt"),
        "leftover\n"
    );
    assert_eq!(record.pushed, Some(true));
    assert!(record.commits.len() >= 2, "{:?}", record.commits);
    // The git host saw the token from CodeCourier only, never the placeholder.
    for request in planted.github.git.requests() {
        assert!(!request.headers.contains(&placeholder), "{request:?}");
    }

    // After the launch the gateway refuses the placeholder, and the model API hears nothing.
    let gateway = planted.launcher.gateway_addr().expect("the gateway ran");
    let asked_before = planted.model_api.received_requests().await.unwrap().len();
    let refused = reqwest::Client::new()
        .post(format!("http://{gateway}/anthropic/v1/messages"))
        .header("x-api-key", &placeholder)
        .header("anthropic-version", "2023-06-01")
        .body(r#"{"model":"claude-sonnet-4-6","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert!(refused.status().is_client_error(), "{}", refused.status());
    assert_eq!(
        planted.model_api.received_requests().await.unwrap().len(),
        asked_before
    );
}

/// Every file of a bare repository, by its path inside it.
fn files_of(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                dirs.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.insert(path.strip_prefix(root).unwrap().to_path_buf(), bytes);
            }
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_repository_is_unchanged_but_for_the_pushed_branch() {
    let planted = Planted::new().await;
    let before = files_of(&planted.world.origin);
    let canary = format!("CANARY={CANARY}");
    let record = planted
        .launch(
            &planted.origin_path(),
            &["FAKE_CLAUDE=attack", &canary],
            None,
        )
        .await;
    assert_eq!(record.status.as_str(), "completed", "{:?}", record.error);
    let branch = record.branch.clone().unwrap();
    let report = planted.world.file_on_branch(&branch, "attack-report.txt");
    assert!(report.contains("origin-write: refused"), "{report}");
    assert_eq!(secrets_found(&report), Vec::<&str>::new(), "{report}");

    let after = files_of(&planted.world.origin);
    let pushed_ref = PathBuf::from(format!("refs/heads/{branch}"));
    for (path, bytes) in &before {
        assert_eq!(after.get(path), Some(bytes), "{} changed", path.display());
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        assert!(
            *path == pushed_ref || path.starts_with("objects"),
            "{} appeared",
            path.display()
        );
    }
    assert!(after.contains_key(&pushed_ref));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_learnings_file_linked_to_dev_zero_is_not_read() {
    let planted = Planted::new().await;
    let record = planted
        .launch(
            &planted.origin_path(),
            &["FAKE_CLAUDE=zero-learnings"],
            None,
        )
        .await;
    assert_eq!(record.status.as_str(), "completed", "{:?}", record.error);
    let project = planted
        .store
        .project_for_repo(&planted.origin_path())
        .await
        .unwrap();
    assert!(planted
        .store
        .learnings(project.id)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_file_linked_to_a_host_file_leaves_it_untouched_on_follow_up() {
    let planted = Planted::new().await;
    let victim = planted.world.dir.path().join("victim.txt");
    std::fs::write(&victim, "the host's own file\n").unwrap();
    let link = format!("VICTIM={}", victim.display());
    let first = planted
        .launch(
            &planted.origin_path(),
            &["FAKE_CLAUDE=link-memory", &link],
            None,
        )
        .await;
    assert_eq!(first.status.as_str(), "completed", "{:?}", first.error);
    let follow_up = FollowUp {
        of: Some(first.id),
        branch: first.branch.clone().unwrap(),
        base_branch: first.base_branch.clone().unwrap(),
        session_id: first.session_id.clone(),
    };
    let second = planted
        .launch(
            &planted.origin_path(),
            &["FAKE_CLAUDE=create"],
            Some(follow_up),
        )
        .await;
    assert!(second.status.is_terminal(), "{:?}", second.status);
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "the host's own file\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_holding_a_secret_or_an_unallowed_workflow_is_refused_and_kept() {
    let planted = Planted::new().await;
    let repo = planted.origin_path();
    // A secret the launch knows (a variable that looks secret), written into a file.
    let record = planted
        .launch(
            &repo,
            &[
                "FAKE_CLAUDE=write",
                "WRITE_PATH=config/settings.txt",
                "WRITE_TEXT=password=hunter2-is-my-deploy-secret",
                "DEPLOY_PASSWORD=hunter2-is-my-deploy-secret",
            ],
            None,
        )
        .await;
    assert_eq!(record.status.as_str(), "failed");
    let error = record.error.clone().unwrap();
    assert!(
        error.contains("push refused") && error.contains("config/settings.txt line 1"),
        "{error}"
    );
    assert!(!error.contains("hunter2"), "{error}");
    assert_eq!(record.pushed, Some(false));
    assert_eq!(record.commits.len(), 1);
    let branch = record.branch.clone().unwrap();
    assert!(!planted.world.branches().contains(&branch));
    // Kept in CodeCourier's own repository.
    let kept = planted.world.dir.path().join("data/repos");
    let repos: Vec<_> = std::fs::read_dir(&kept).unwrap().flatten().collect();
    let has_commit = repos.iter().any(|r| {
        std::process::Command::new("git")
            .args(["cat-file", "-e", &record.commits[0].sha])
            .current_dir(r.path())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(has_commit);

    // A new workflow: refused, unless the project allows workflow changes.
    let workflow = [
        "FAKE_CLAUDE=write",
        "WRITE_PATH=.github/workflows/release.yml",
        "WRITE_TEXT=on: push",
    ];
    let refused = planted.launch(&repo, &workflow, None).await;
    assert_eq!(refused.status.as_str(), "failed");
    let error = refused.error.clone().unwrap();
    assert!(
        error.contains("push refused") && error.contains(".github/workflows/release.yml"),
        "{error}"
    );
    assert!(!planted
        .world
        .branches()
        .contains(refused.branch.as_ref().unwrap()));
    let project = planted.store.project_for_repo(&repo).await.unwrap();
    planted
        .store
        .update_project(
            project.id,
            &ProjectChange {
                allow_workflow_changes: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let allowed = planted.launch(&repo, &workflow, None).await;
    assert_eq!(allowed.status.as_str(), "completed", "{:?}", allowed.error);
    assert_eq!(
        planted.world.file_on_branch(
            allowed.branch.as_ref().unwrap(),
            ".github/workflows/release.yml"
        ),
        "on: push\n"
    );
}
