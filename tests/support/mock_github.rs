//! A mock GitHub for `acme/widgets`: its API (wiremock, real-shaped JSON) and its git, the test
//! world's bare repository served over smart HTTP behind Basic auth with the token
//! (`git_http`), as GitHub serves a private repository. The API answers the repository (with that
//! `clone_url`), its branches (refs created through the API are made real in the bare repository),
//! compare, and pull requests (number 9). Tests mount what else they need (issues, search) on the
//! same server.

use std::path::PathBuf;

use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::git_http::GitHost;
use super::{git, World};

pub const TOKEN: &str = "ghp_test0123456789abcdefghijklmnopqrstu";
pub const PULL_REQUEST: &str = "https://github.com/acme/widgets/pull/9";

/// GitHub's ref creation, made real in the bare repository.
struct CreateRef(PathBuf);

impl Respond for CreateRef {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        git(
            &self.0,
            &[
                "update-ref",
                body["ref"].as_str().unwrap(),
                body["sha"].as_str().unwrap(),
            ],
        );
        ResponseTemplate::new(201).set_body_json(json!({"ref": body["ref"]}))
    }
}

/// The mock's API server (what a test mounts more on) and its git host.
pub struct Github {
    pub api: MockServer,
    pub git: GitHost,
}

impl std::ops::Deref for Github {
    type Target = MockServer;

    fn deref(&self) -> &MockServer {
        &self.api
    }
}

/// The world's bare repository served as `acme/widgets` behind [`TOKEN`].
pub async fn serve_git(world: &World) -> GitHost {
    GitHost::start(TOKEN, &[("acme/widgets", &world.origin)]).await
}

pub async fn start(world: &World) -> Github {
    start_with_token(world, TOKEN).await
}

/// The mock, its git behind `token`.
pub async fn start_with_token(world: &World, token: &str) -> Github {
    let server = MockServer::start().await;
    let git_host = GitHost::start(token, &[("acme/widgets", &world.origin)]).await;
    let sha = git(&world.origin, &["rev-parse", "main"]);
    let repo = json!({"full_name": "acme/widgets", "default_branch": "main", "clone_url": git_host.clone_url("acme/widgets"), "html_url": "https://github.com/acme/widgets", "permissions": {"push": true}});
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(repo))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/repos/acme/widgets/branches/.+"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"name": "main", "commit": {"sha": sha.trim()}})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/widgets/git/refs"))
        .respond_with(CreateRef(world.origin.clone()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/repos/acme/widgets/compare/.+"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ahead_by": 1, "files": [], "html_url": "https://github.com/acme/widgets/compare/x"})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/widgets/pulls"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"number": 9, "html_url": PULL_REQUEST})),
        )
        .mount(&server)
        .await;
    Github {
        api: server,
        git: git_host,
    }
}

/// The bodies of the pull requests opened.
pub async fn pull_requests(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/repos/acme/widgets/pulls")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}
