//! The GitHub module through its real HTTP client against a wiremock server answering with
//! GitHub-shaped JSON (tests/data/github/). Each test checks what we sent and what the user is told.

use std::path::Path;
use std::time::{Duration, Instant};

use codecourier::config::{AppKey, GithubApp, GithubConfig};
use codecourier::github::{connect, GithubError, RepoClient};
use codecourier::secret::Secret;
use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "ghp_plantedTOKEN0123456789abcdefghijklmnop";

fn data(name: &str) -> Value {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/github")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

fn config(server: &MockServer) -> GithubConfig {
    GithubConfig {
        token: Some(Secret::new(TOKEN)),
        app: None,
        api_url: server.uri(),
    }
}

async fn client(server: &MockServer) -> RepoClient {
    connect(&config(server), "acme", "widgets").await.unwrap()
}

fn json_response(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

/// No error a user sees, and no debug print, may carry the token.
fn assert_no_token(text: &str) {
    assert!(!text.contains("plantedTOKEN"), "token leaked: {text}");
}

#[tokio::test]
async fn repository_lookup_sends_the_token_and_reads_what_the_launch_needs() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(json_response(200, data("repo.json")))
        .expect(1)
        .mount(&server)
        .await;
    let repo = client(&server).await.repository().await.unwrap();
    assert_eq!(repo.full_name, "acme/widgets");
    assert_eq!(repo.default_branch, "main");
    assert_eq!(repo.clone_url, "https://github.com/acme/widgets.git");
    assert_eq!(repo.can_push, Some(true));
    assert_no_token(&format!("{:?}", client(&server).await));
}

#[tokio::test]
async fn not_found_and_forbidden_say_the_token_cannot_see_the_repository() {
    for status in [404, 403] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/repos/acme/widgets"))
            .respond_with(json_response(status, json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest/repos/repos#get-a-repository", "status": status.to_string()})))
            .mount(&server)
            .await;
        let err = client(&server).await.repository().await.unwrap_err();
        assert_eq!(
            err,
            GithubError::NotFound {
                repo: "acme/widgets".into()
            }
        );
        let text = err.to_string();
        assert!(
            text.starts_with("the GitHub token cannot see acme/widgets"),
            "{text}"
        );
        assert_no_token(&text);
    }
}

#[tokio::test]
async fn bad_credentials_name_the_variable_to_check() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(json_response(401, json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})))
        .mount(&server)
        .await;
    let err = client(&server).await.repository().await.unwrap_err();
    assert!(err.to_string().contains("check GITHUB_TOKEN"), "{err}");
    assert_no_token(&err.to_string());
}

#[tokio::test]
async fn branch_lookup_finds_the_head_or_names_the_missing_branch() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets/branches/main"))
        .respond_with(json_response(200, data("branch.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets/branches/develop"))
        .respond_with(json_response(404, json!({"message": "Branch not found"})))
        .mount(&server)
        .await;
    let github = client(&server).await;
    assert_eq!(
        github.branch_head("main").await.unwrap(),
        "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d"
    );
    let err = github.branch_head("develop").await.unwrap_err();
    assert_eq!(err.to_string(), "acme/widgets has no branch develop; name an existing base branch or leave it out to use the default branch");
}

#[tokio::test]
async fn a_taken_branch_name_gets_a_numbered_suffix() {
    let server = MockServer::start().await;
    let sha = "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d";
    Mock::given(method("POST"))
        .and(path("/repos/acme/widgets/git/refs"))
        .and(body_partial_json(json!({"ref": "refs/heads/codecourier/abc-fix", "sha": sha})))
        .respond_with(json_response(422, json!({"message": "Reference already exists", "documentation_url": "https://docs.github.com/rest/git/refs#create-a-reference", "status": "422"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/widgets/git/refs"))
        .and(body_partial_json(
            json!({"ref": "refs/heads/codecourier/abc-fix-2", "sha": sha}),
        ))
        .respond_with(json_response(201, data("ref.json")))
        .expect(1)
        .mount(&server)
        .await;
    let name = client(&server)
        .await
        .create_branch("codecourier/abc-fix", sha)
        .await
        .unwrap();
    assert_eq!(name, "codecourier/abc-fix-2");
}

#[tokio::test]
async fn creating_a_branch_without_push_rights_says_so() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/widgets/git/refs"))
        .respond_with(json_response(
            403,
            json!({"message": "Resource not accessible by personal access token"}),
        ))
        .mount(&server)
        .await;
    let err = client(&server)
        .await
        .create_branch("b", "sha")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the GitHub token cannot push to acme/widgets"),
        "{err}"
    );
}

#[tokio::test]
async fn compare_sums_the_files() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(
            "/repos/acme/widgets/compare/main...codecourier/abc-fix",
        ))
        .respond_with(json_response(200, data("compare.json")))
        .mount(&server)
        .await;
    let c = client(&server)
        .await
        .compare("main", "codecourier/abc-fix")
        .await
        .unwrap();
    assert_eq!(
        (c.ahead_by, c.files_changed, c.additions, c.deletions),
        (2, 2, 11, 3)
    );
    assert_eq!(
        c.html_url,
        "https://github.com/acme/widgets/compare/main...BRANCH"
    );
}

#[tokio::test]
async fn a_draft_pull_request_is_opened_and_an_existing_one_reused() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/widgets/pulls"))
        .and(body_partial_json(
            json!({"head": "feature-a", "base": "main", "draft": true, "title": "Add hello"}),
        ))
        .respond_with(json_response(201, data("pull.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/widgets/pulls"))
        .and(body_partial_json(json!({"head": "feature-b"})))
        .respond_with(json_response(422, json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom", "message": "A pull request already exists for acme:feature-b."}], "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request", "status": "422"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets/pulls"))
        .and(query_param("head", "acme:feature-b"))
        .and(query_param("state", "open"))
        .respond_with(json_response(200, json!([data("pull.json")])))
        .expect(1)
        .mount(&server)
        .await;
    let github = client(&server).await;
    let pr = github
        .open_pull_request("feature-a", "main", "Add hello", "body", true)
        .await
        .unwrap();
    assert_eq!((pr.number, pr.reused), (1347, false));
    assert_eq!(pr.html_url, "https://github.com/acme/widgets/pull/1347");
    let again = github
        .open_pull_request("feature-b", "main", "Add hello", "body", true)
        .await
        .unwrap();
    assert_eq!((again.number, again.reused), (1347, true));
}

#[tokio::test]
async fn issues_are_created_with_labels_unless_the_same_title_is_open() {
    let server = MockServer::start().await;
    let existing = json!({"total_count": 1, "incomplete_results": false, "items": [
        {"number": 7, "title": "SQL built by string concatenation", "html_url": "https://github.com/acme/widgets/issues/7", "state": "open"}
    ]});
    Mock::given(method("GET"))
        .and(path("/search/issues"))
        .and(query_param(
            "q",
            "repo:acme/widgets is:issue is:open in:title \"SQL built by string concatenation\"",
        ))
        .respond_with(json_response(200, existing))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/search/issues"))
        .and(query_param(
            "q",
            "repo:acme/widgets is:issue is:open in:title \"Flaky test\"",
        ))
        .respond_with(json_response(
            200,
            json!({"total_count": 0, "incomplete_results": false, "items": []}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/widgets/issues"))
        .and(body_partial_json(
            json!({"title": "Flaky test", "labels": ["codecourier", "tests"]}),
        ))
        .respond_with(json_response(201, data("issue.json")))
        .expect(1)
        .mount(&server)
        .await;
    let github = client(&server).await;
    let found = github
        .create_issue("SQL built by string concatenation", "b", &[])
        .await
        .unwrap();
    assert_eq!((found.number, found.existed), (7, true));
    let made = github
        .create_issue(
            "Flaky test",
            "It fails one run in ten.",
            &["codecourier".into(), "tests".into()],
        )
        .await
        .unwrap();
    assert_eq!((made.number, made.existed), (42, false));
    assert_eq!(made.html_url, "https://github.com/acme/widgets/issues/42");
}

#[tokio::test]
async fn a_github_app_mints_an_installation_token_scoped_to_the_repository() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets/installation"))
        .respond_with(json_response(200, data("installation.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/app/installations/42/access_tokens"))
        .and(body_partial_json(json!({"repositories": ["widgets"], "permissions": {"contents": "write", "pull_requests": "write"}})))
        .respond_with(json_response(201, data("access_token.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets"))
        .and(header(
            "authorization",
            "Bearer ghs_16C7e42F292c6912E7710c838347Ae178B4a",
        ))
        .respond_with(json_response(200, data("repo.json")))
        .expect(1)
        .mount(&server)
        .await;
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/github/test-app-key.pem");
    let config = GithubConfig {
        token: None,
        app: Some(GithubApp {
            app_id: 777,
            private_key: AppKey::Path(key),
        }),
        api_url: server.uri(),
    };
    let github = connect(&config, "acme", "widgets").await.unwrap();
    assert_eq!(
        github.git_token.expose(),
        "ghs_16C7e42F292c6912E7710c838347Ae178B4a"
    );
    github.repository().await.unwrap();
    // The installation lookup was signed with the App's JWT, not a token.
    let requests = server.received_requests().await.unwrap();
    let auth = requests[0]
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(auth.starts_with("Bearer ey"), "{auth}");
}

#[tokio::test]
async fn an_app_not_installed_on_the_repository_says_where_to_install_it() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets/installation"))
        .respond_with(json_response(404, json!({"message": "Not Found"})))
        .mount(&server)
        .await;
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/github/test-app-key.pem");
    let config = GithubConfig {
        token: None,
        app: Some(GithubApp {
            app_id: 777,
            private_key: AppKey::Path(key),
        }),
        api_url: server.uri(),
    };
    let err = connect(&config, "acme", "widgets").await.unwrap_err();
    assert_eq!(err.to_string(), "the GitHub App is not installed on acme/widgets; install it on the repository in the App's settings");
}

#[tokio::test]
async fn server_errors_are_retried_until_github_answers() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets"))
        .respond_with(json_response(502, json!({"message": "Server Error"})))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets"))
        .respond_with(json_response(200, data("repo.json")))
        .with_priority(2)
        .mount(&server)
        .await;
    client(&server).await.repository().await.unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn an_outage_ends_in_a_clear_error_after_bounded_retries() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(json_response(
            503,
            json!({"message": "Service Unavailable"}),
        ))
        .mount(&server)
        .await;
    let err = client(&server).await.repository().await.unwrap_err();
    assert_eq!(err, GithubError::Unavailable { status: 503 });
    assert!(err.to_string().contains("try again later"));
    assert_eq!(server.received_requests().await.unwrap().len(), 4);
}

#[tokio::test]
async fn a_secondary_rate_limit_is_waited_out_as_github_asks() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets"))
        .respond_with(
            json_response(403, json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.", "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}))
                .insert_header("retry-after", "1"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/widgets"))
        .respond_with(json_response(200, data("repo.json")))
        .with_priority(2)
        .mount(&server)
        .await;
    let started = Instant::now();
    client(&server).await.repository().await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_long_rate_limit_is_reported_not_slept_through() {
    let server = MockServer::start().await;
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    Mock::given(method("GET"))
        .respond_with(
            json_response(
                403,
                json!({"message": "API rate limit exceeded for user ID 1."}),
            )
            .insert_header("x-ratelimit-remaining", "0")
            .insert_header("x-ratelimit-reset", reset.to_string().as_str()),
        )
        .mount(&server)
        .await;
    let err = client(&server).await.repository().await.unwrap_err();
    assert!(
        matches!(err, GithubError::RateLimited { wait_secs } if wait_secs > 3500),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .starts_with("GitHub's rate limit is used up; it resets in"));
}
