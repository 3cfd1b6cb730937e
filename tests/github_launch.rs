//! A launch against a GitHub repository: the GitHub client talks to a wiremock GitHub, and a bare
//! repository on disk, served over smart HTTP behind the token, stands in for the git remote (the
//! mock's `clone_url` points at it).

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::git_http::GitHost;
use support::{git, World};
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "ghp_plantedGITHUBtoken0123456789abcdefghij";

fn data(name: &str) -> Value {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/github")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

/// A GitHub for acme/widgets whose git remote is the world's bare repository, behind the token.
async fn github(world: &World) -> support::mock_github::Github {
    let server = MockServer::start().await;
    let git_host = GitHost::start(TOKEN, &[("acme/widgets", &world.origin)]).await;
    let mut repo = data("repo.json");
    repo["clone_url"] = json!(git_host.clone_url("acme/widgets"));
    let mut branch = data("branch.json");
    branch["commit"]["sha"] = json!(git(&world.origin, &["rev-parse", "main"]).trim());
    let auth = format!("Bearer {TOKEN}");
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets"))
        .and(header("authorization", auth.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(repo))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets/branches/main"))
        .respond_with(ResponseTemplate::new(200).set_body_json(branch))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/widgets/git/refs"))
        .respond_with(ResponseTemplate::new(201).set_body_json(data("ref.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/repos/acme/widgets/compare/main\\.\\.\\..+"))
        .respond_with(ResponseTemplate::new(200).set_body_json(data("compare.json")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/widgets/pulls"))
        .respond_with(ResponseTemplate::new(201).set_body_json(data("pull.json")))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path_regex("^/repos/acme/widgets/git/refs/heads/.+"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    support::mock_github::Github {
        api: server,
        git: git_host,
    }
}

async fn launch(world: &World, api: &MockServer, args: &[&str]) -> (i32, Value, String) {
    let mut cmd = world.std_cmd();
    // Every crate's most detailed logs, to prove none of them carries the token.
    cmd.env("GITHUB_API_URL", api.uri())
        .env("GITHUB_TOKEN", TOKEN)
        .env("RUST_LOG", "trace")
        .args(["launch", "--json", "--repo", "acme/widgets"])
        .args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stdout.contains("plantedGITHUB") && !stderr.contains("plantedGITHUB"),
        "token leaked:\n{stdout}\n{stderr}"
    );
    let record =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (out.status.code().unwrap_or(-1), record, stderr)
}

fn requests_to<'a>(requests: &'a [Request], verb: &str, prefix: &str) -> Vec<&'a Request> {
    requests
        .iter()
        .filter(|r| r.method.as_str() == verb && r.url.path().starts_with(prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_branch_is_created_before_provisioning_and_a_draft_pull_request_after_the_run() {
    let world = World::new();
    let api = github(&world).await;
    let (code, r, stderr) = launch(
        &world,
        &api,
        &[
            "--prompt",
            "Save the prompt for later",
            "--env",
            "FAKE_CLAUDE=create",
        ],
    )
    .await;
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["pr_url"], "https://github.com/acme/widgets/pull/1347");
    assert_eq!(
        r["compare_url"],
        "https://github.com/acme/widgets/compare/main...BRANCH"
    );
    let branch = r["branch"].as_str().unwrap();
    assert_eq!(
        world.file_on_branch(branch, "prompt.txt"),
        "Save the prompt for later"
    );
    // Clone and push took GitHub's path: smart HTTP behind the token, which git only ever sent
    // from the host (the sandbox's clone went through the gateway).
    let git_requests = api.git.requests();
    assert!(
        git_requests
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/git-receive-pack") && r.authorized),
        "{git_requests:#?}"
    );
    assert!(git_requests
        .iter()
        .all(|r| r.authorized || r.method == "GET"));

    let requests = api.received_requests().await.unwrap();
    let refs = requests_to(&requests, "POST", "/repos/acme/widgets/git/refs");
    assert_eq!(refs.len(), 1);
    let ref_body: Value = serde_json::from_slice(&refs[0].body).unwrap();
    assert_eq!(ref_body["ref"], format!("refs/heads/{branch}"));
    assert_eq!(
        ref_body["sha"],
        git(&world.origin, &["rev-parse", "main"]).trim()
    );

    let phases = r["phases"].as_array().unwrap();
    let phase = |name: &str| phases.iter().find(|p| p["phase"] == name).unwrap().clone();
    let prepared = phase("prepare");
    assert_eq!(prepared["outcome"], "ok");
    assert!(
        prepared["ended_at"].as_str().unwrap()
            <= phase("provision")["started_at"].as_str().unwrap()
    );
    assert!(prepared["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("branch {branch} created")));

    let pulls = requests_to(&requests, "POST", "/repos/acme/widgets/pulls");
    assert_eq!(pulls.len(), 1);
    let pr: Value = serde_json::from_slice(&pulls[0].body).unwrap();
    assert_eq!(
        (
            pr["head"].as_str(),
            pr["base"].as_str(),
            pr["draft"].as_bool()
        ),
        (Some(branch), Some("main"), Some(true))
    );
    assert_eq!(pr["title"], "Save the prompt for later");
    let body = pr["body"].as_str().unwrap();
    assert!(
        body.contains("> Save the prompt for later")
            && body.contains("Saved the prompt to prompt.txt."),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "via CodeCourier · sandbox `{}`",
            r["id"].as_str().unwrap()
        )),
        "{body}"
    );
    assert!(body.contains("cost $0.0123"), "{body}");
    assert!(!body.contains("discord"), "{body}");
    for request in &requests {
        assert_eq!(
            request
                .headers
                .get("authorization")
                .unwrap()
                .to_str()
                .unwrap(),
            format!("Bearer {TOKEN}")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pr_none_gives_the_compare_link_only() {
    let world = World::new();
    let api = github(&world).await;
    let (code, r, _) = launch(
        &world,
        &api,
        &[
            "--prompt",
            "Add one",
            "--pr",
            "none",
            "--env",
            "FAKE_CLAUDE=commit",
        ],
    )
    .await;
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["pr_url"], Value::Null);
    assert_eq!(
        r["compare_url"],
        "https://github.com/acme/widgets/compare/main...BRANCH"
    );
    let requests = api.received_requests().await.unwrap();
    assert!(requests_to(&requests, "POST", "/repos/acme/widgets/pulls").is_empty());
    let finish = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "finish")
        .unwrap()
        .clone();
    assert!(
        finish["detail"]
            .as_str()
            .unwrap()
            .contains("2 files changed, +11 −3"),
        "{finish:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_without_changes_removes_its_empty_branch() {
    let world = World::new();
    let api = github(&world).await;
    let (code, r, _) = launch(
        &world,
        &api,
        &["--prompt", "Look around", "--env", "FAKE_CLAUDE=recall"],
    )
    .await;
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["pr_url"], Value::Null);
    let requests = api.received_requests().await.unwrap();
    let deletes = requests_to(&requests, "DELETE", "/repos/acme/widgets/git/refs/heads/");
    assert_eq!(deletes.len(), 1);
    assert!(deletes[0]
        .url
        .path()
        .ends_with(r["branch"].as_str().unwrap()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repository_the_token_cannot_see_fails_before_any_sandbox_exists() {
    let world = World::new();
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"})))
        .mount(&api)
        .await;
    let (code, r, _) = launch(&world, &api, &["--prompt", "Do it"]).await;
    assert_eq!(code, 1);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["failed_phase"], "prepare");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .starts_with("the GitHub token cannot see acme/widgets"),
        "{r:#}"
    );
    assert!(r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["phase"] != "provision"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_base_branch_is_named() {
    let world = World::new();
    let api = github(&world).await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets/branches/release"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(json!({"message": "Branch not found"})),
        )
        .mount(&api)
        .await;
    let (code, r, _) = launch(
        &world,
        &api,
        &["--prompt", "Do it", "--base-branch", "release"],
    )
    .await;
    assert_eq!(code, 1);
    assert_eq!(r["failed_phase"], "prepare");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("acme/widgets has no branch release"),
        "{r:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follow_up_continues_the_github_branch_without_creating_another() {
    use codecourier::catalog::{Catalog, FollowUp, LaunchInput};
    use codecourier::config::Config;
    use codecourier::pipeline::{LaunchOrigin, Launcher, NoProgress, ProjectChoice};
    use codecourier::sandbox::local::LocalProvider;
    use codecourier::store::Store;
    use std::sync::Arc;

    let world = World::new();
    let api = github(&world).await;
    let vars = [
        (
            "CODECOURIER_DATA_DIR",
            world.dir.path().join("data").display().to_string(),
        ),
        (
            "CODECOURIER_TOOLS_DIR",
            support::fixtures_bin().display().to_string(),
        ),
        ("ANTHROPIC_API_KEY", support::API_KEY.to_string()),
        ("GITHUB_API_URL", api.uri()),
        ("GITHUB_TOKEN", TOKEN.to_string()),
    ];
    let config =
        Config::from_lookup(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()))
            .unwrap();
    let store = Store::open(&config).await.unwrap();
    let provider = Arc::new(
        LocalProvider::new(&config.data_dir, config.tools_dir.clone())
            .with_init_binary(env!("CARGO_BIN_EXE_codecourier").into()),
    );
    let catalog = Catalog::built_in();
    let launcher = Launcher::new(&config, store, provider, catalog.clone());
    let origin = LaunchOrigin {
        launched_by: "alice".into(),
        discord: None,
        project: ProjectChoice::OfRepository,
        keys_of: None,
        issue_session: None,
        workflow: None,
    };
    let input = |prompt: &str| LaunchInput {
        prompt: Some(prompt.into()),
        repo: Some("acme/widgets".into()),
        env: vec!["FAKE_CLAUDE=create".into()],
        ..Default::default()
    };

    let first_request = input("First part").validate(&catalog, false).unwrap();
    let prepared = launcher.prepare(first_request, &origin).await.unwrap();
    let first = launcher
        .run(prepared, &NoProgress, Default::default())
        .await
        .unwrap();
    assert_eq!(first.status.as_str(), "completed", "{:?}", first.error);

    // GitHub now knows the pushed branch.
    let pushed = support::git(
        &world.origin,
        &["rev-parse", first.branch.as_deref().unwrap()],
    );
    Mock::given(method("GET"))
        .and(path_regex("^/repos/acme/widgets/branches/codecourier/.+"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"name": first.branch, "commit": {"sha": pushed.trim()}})),
        )
        .mount(&api)
        .await;
    let mut second_request = input("Second part").validate(&catalog, false).unwrap();
    second_request.follow_up = Some(FollowUp {
        of: Some(first.id),
        branch: first.branch.clone().unwrap(),
        base_branch: first.base_branch.clone().unwrap(),
        session_id: first.session_id.clone(),
    });
    let prepared = launcher.prepare(second_request, &origin).await.unwrap();
    let second = launcher
        .run(prepared, &NoProgress, Default::default())
        .await
        .unwrap();
    assert_eq!(second.status.as_str(), "completed", "{:?}", second.error);
    assert_eq!(second.branch, first.branch);
    assert_eq!(second.base_branch.as_deref(), Some("main"));
    let branch = second.branch.clone().unwrap();
    assert_eq!(world.file_on_branch(&branch, "prompt.txt"), "Second part");
    assert_eq!(second.commits.len(), 1);

    let requests = api.received_requests().await.unwrap();
    assert_eq!(
        requests_to(&requests, "POST", "/repos/acme/widgets/git/refs").len(),
        1,
        "the follow-up made no new branch"
    );
    assert_eq!(
        requests_to(
            &requests,
            "GET",
            &format!("/repos/acme/widgets/branches/{branch}")
        )
        .len(),
        1,
        "it checked the branch exists"
    );
}
