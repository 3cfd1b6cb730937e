//! Issue sessions from Discord, end to end: the real serenity/poise bot against the fake Discord,
//! the real Claude Code CLI (pinned) in local sandboxes against a fake Anthropic API that answers
//! through structured output, and a mock GitHub (wiremock) for the repository and its issues.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use support::discord_bot::*;
use support::fake_anthropic::{self, Mode, SCAN_TEXT_ANSWER};
use support::fake_discord::*;
use support::{mock_github, World};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const DUPLICATE: &str = "Issue 3: hard-coded credentials";

/// Issue `n` of `count`: severities in four equal blocks, most severe first, so that after the
/// scan's ordering position n is still issue n.
fn issue(n: usize, count: usize) -> Value {
    let severity = ["critical", "high", "medium", "low"][((n - 1) * 4 / count).min(3)];
    let title = if n == 3 {
        DUPLICATE.to_string()
    } else {
        format!("Issue {n}: something to fix")
    };
    json!({
        "title": title,
        "description": format!("Problem number {n}."),
        "severity": severity,
        "category": "bug",
        "files": [{"path": format!("src/m{n}.rs"), "start_line": n, "end_line": n + 2}],
        "evidence": "seen in the code",
        "suggested_fix": "fix it",
        "effort": "small"
    })
}

fn answer(count: usize) -> Value {
    json!({ "issues": (1..=count).map(|n| issue(n, count)).collect::<Vec<_>>() })
}

/// GitHub's issue search: only the duplicate's title is already open.
struct Search;

impl Respond for Search {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let query: String = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "q")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let items = if query.contains(DUPLICATE) {
            json!([{"number": 5, "title": DUPLICATE, "html_url": "https://github.com/acme/widgets/issues/5"}])
        } else {
            json!([])
        };
        ResponseTemplate::new(200)
            .set_body_json(json!({"total_count": items.as_array().unwrap().len(), "items": items}))
    }
}

/// New issues get numbers from 100 up.
struct NewIssue(AtomicU64);

impl Respond for NewIssue {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(201).set_body_json(
            json!({"number": n, "html_url": format!("https://github.com/acme/widgets/issues/{n}")}),
        )
    }
}

/// The mock GitHub with issue search and creation.
async fn github(world: &World) -> MockServer {
    let server = mock_github::start(world).await;
    Mock::given(method("GET"))
        .and(path("/search/issues"))
        .respond_with(Search)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/widgets/issues"))
        .respond_with(NewIssue(AtomicU64::new(100)))
        .mount(&server)
        .await;
    server
}

/// The bot with the real Claude Code CLI, the fake model API answering `answers` to scans, and a
/// mock GitHub.
async fn start(answers: Vec<Option<Value>>) -> (Bot, MockServer, MockServer) {
    let world = World::new();
    let github = github(&world).await;
    let tools = support::claude_code_tools_dir().display().to_string();
    let uri = github.uri();
    let bot = start_bot_in(
        world,
        FakeDiscord::start().await,
        &[
            ("CODECOURIER_TOOLS_DIR", tools.as_str()),
            ("GITHUB_API_URL", uri.as_str()),
            ("GITHUB_TOKEN", mock_github::TOKEN),
        ],
    )
    .await;
    let api = fake_anthropic::start(Mode::Scan { answers }).await;
    bind_project(&bot, &[("ANTHROPIC_BASE_URL", &api.uri())]).await;
    (bot, api, github)
}

impl Bot {
    /// `/scan run repo:acme/widgets` plus `options`; returns the scan's thread.
    async fn scan(&self, token: &str, options: &[Value]) -> u64 {
        let mut all = vec![json!({"name": "repo", "type": 3, "value": "acme/widgets"})];
        all.extend_from_slice(options);
        self.fake.dispatch(
            "INTERACTION_CREATE",
            subcommand(
                self.fake.snowflake(),
                token,
                "scan",
                "run",
                Value::Array(all),
                ALICE,
            ),
        );
        let reply = self.fake.wait_for("POST", callback(token), T).await;
        assert_eq!(reply.body["type"], 4, "{:#}", reply.body);
        assert!(
            reply.body["data"]["content"]
                .as_str()
                .unwrap()
                .starts_with("🔎 **Scan of acme/widgets**"),
            "{:#}",
            reply.body
        );
        thread_of_launch(self).await
    }

    async fn scan_result(&self, thread: u64) -> Value {
        self.wait_thread_message(thread, "scan result", |m| {
            content(m).contains("scan** · session")
        })
        .await
    }

    /// Presses a component of `message` as Alice and returns the interaction callback's body.
    async fn press(&self, token: &str, message: &Value, custom_id: &str, values: &[&str]) -> Value {
        let kind = if values.is_empty() { 2 } else { 3 };
        self.fake.dispatch(
            "INTERACTION_CREATE",
            component(
                self.fake.snowflake(),
                token,
                custom_id,
                kind,
                values,
                message.clone(),
                ALICE,
            ),
        );
        self.fake.wait_for("POST", callback(token), T).await.body
    }
}

fn custom_ids(components: &Value) -> Vec<String> {
    components
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .map(|c| c["custom_id"].as_str().unwrap().to_string())
        .collect()
}

fn find_id(components: &Value, prefix: &str) -> String {
    custom_ids(components)
        .into_iter()
        .find(|id| id.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {components:#}"))
}

/// The positions listed on a page (the `` `n` `` that starts each entry).
fn positions_on(text: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|l| l.strip_prefix('`')?.split('`').next()?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn scan_pages_files_github_issues_and_launches_a_fix() {
    let (bot, api, github) = start(vec![Some(answer(12))]).await;
    let thread = bot
        .scan(
            "tok-scan",
            &[json!({"name": "focus", "type": 3, "value": "security"})],
        )
        .await;
    let result = bot.scan_result(thread).await;
    let text = content(&result);
    assert!(
        text.starts_with(&format!("<@{ALICE}> **✅ completed scan**")),
        "{text}"
    );
    assert!(
        text.contains("12 issues: 3 critical · 3 high · 3 medium · 3 low"),
        "{text}"
    );
    assert!(text.contains("**Issues 1–10 of 12** (page 1/2)"), "{text}");
    assert_eq!(positions_on(text), (1..=10).collect::<Vec<_>>());
    let select = &result["components"][0]["components"][0];
    assert_eq!(select["options"].as_array().unwrap().len(), 10);
    assert_eq!(select["max_values"], 10);
    let buttons = &result["components"][1]["components"];
    assert_eq!(buttons[0]["disabled"], true, "no previous page");
    assert_eq!(buttons[1]["disabled"], false);
    // `/scan run` offers the catalog's tools as choices, like `/launch`.
    let commands = bot.fake.registered_commands(Some(GUILD_ID));
    let scan = commands.iter().find(|c| c["name"] == "scan").unwrap();
    let run = scan["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "run")
        .unwrap();
    let tool = run["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "tool")
        .unwrap();
    assert_eq!(tool["choices"].as_array().unwrap().len(), 4, "{tool:#}");
    // The status message showed the phases like a launch, read-only.
    let status = bot
        .wait_thread_message(thread, "status", |m| content(m).contains("read-only scan"))
        .await;
    assert!(content(&status).contains("✅"), "{}", content(&status));

    // Next page: the message is edited in place.
    let next = buttons[1]["custom_id"].as_str().unwrap().to_string();
    let update = bot.press("tok-next", &result, &next, &[]).await;
    assert_eq!(update["type"], 7, "{update:#}");
    let page2 = bot
        .fake
        .message(result["id"].as_str().unwrap().parse().unwrap())
        .unwrap();
    assert!(
        content(&page2).contains("**Issues 11–12 of 12** (page 2/2)"),
        "{}",
        content(&page2)
    );
    assert_eq!(positions_on(content(&page2)), [11, 12]);

    // Choose two and file them: both are new on GitHub.
    let pick = find_id(&page2["components"], "cc:scan:pick:");
    let chosen = bot.press("tok-pick", &page2, &pick, &["11", "12"]).await;
    assert_eq!(chosen["data"]["flags"], 64, "ephemeral");
    let chosen_message = bot.fake.original_response("tok-pick").unwrap();
    let file = find_id(&chosen_message["components"], "cc:scan:gh:");
    let fix = find_id(&chosen_message["components"], "cc:scan:fix:");
    let deferred = bot.press("tok-gh", &chosen_message, &file, &[]).await;
    assert_eq!(deferred["type"], 5, "acknowledged before calling GitHub");
    let answered = bot.fake.wait_for("PATCH", "/webhooks/*", T).await;
    let answer_text = answered.body["content"].as_str().unwrap();
    assert!(
        answer_text.contains("created #100 https://github.com/acme/widgets/issues/100")
            && answer_text.contains("created #101 https://github.com/acme/widgets/issues/101"),
        "{answer_text}"
    );
    // The links are posted in the thread for everyone.
    bot.wait_thread_message(thread, "GitHub links", |m| {
        content(m).starts_with("📝 GitHub issues for scan") && content(m).contains("#101")
    })
    .await;

    // The duplicate (position 3, on page 1) is linked to the open issue, not filed again.
    let pick1 = find_id(&result["components"], "cc:scan:pick:");
    bot.press("tok-pick3", &result, &pick1, &["3"]).await;
    let chosen3 = bot.fake.original_response("tok-pick3").unwrap();
    bot.press(
        "tok-gh3",
        &chosen3,
        &find_id(&chosen3["components"], "cc:scan:gh:"),
        &[],
    )
    .await;
    let answered = bot.fake.wait_for("PATCH", "/webhooks/*", T).await;
    assert!(
        answered.body["content"].as_str().unwrap().contains(
            "already open on GitHub, linked: #5 https://github.com/acme/widgets/issues/5"
        ),
        "{:#}",
        answered.body
    );
    let created = github
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/repos/acme/widgets/issues")
        .count();
    assert_eq!(created, 2, "two issues created, the duplicate only linked");

    // The records hold the GitHub numbers.
    let history = bot.cli(&["scan", "history", "--json"]);
    let session_id = history[0]["id"].as_str().unwrap().to_string();
    let shown = bot.cli(&["scan", "show", "--json", &session_id]);
    let numbers: Vec<Value> = shown["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["github_issue_number"].clone())
        .collect();
    assert_eq!(numbers[2], 5);
    assert_eq!(numbers[10], 100);
    assert_eq!(numbers[11], 101);
    assert!(numbers[0].is_null());

    // Launch fix for issue 11: a launch linked to the session, in its own thread.
    let deferred = bot.press("tok-fix", &chosen_message, &fix, &[]).await;
    assert_eq!(deferred["type"], 5);
    let answered = bot.fake.wait_for("PATCH", "/webhooks/*", T).await;
    let text = answered.body["content"].as_str().unwrap();
    assert!(text.contains("launched"), "{text}");
    let fix_thread = thread_of_launch(&bot).await;
    let fix_result = bot
        .wait_thread_message(fix_thread, "fix result", |m| {
            content(m).contains("sandbox `") && !content(m).contains("⏳")
        })
        .await;
    assert!(
        content(&fix_result).contains("✅ completed"),
        "{}",
        content(&fix_result)
    );
    let sandboxes = bot.cli(&["sandboxes", "list", "--json"]);
    let fixes: Vec<&Value> = sandboxes
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["request"]["scan"].is_null())
        .collect();
    assert_eq!(fixes.len(), 2, "one fix per chosen issue: {sandboxes:#}");
    for f in &fixes {
        assert_eq!(f["issue_session_id"], session_id.as_str());
        assert_eq!(f["status"], "completed");
    }
    let prompts = fake_anthropic::prompts_received(&api).await;
    assert!(
        prompts.iter().any(|p| p.contains(
            "Fix: Issue 11: something to fix\n\nA scan of the repository found this issue."
        )),
        "{prompts:?}"
    );
    assert!(prompts[0].contains("focusing on: security"));

    // /scan history lists the session with its thread.
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        subcommand(
            bot.fake.snowflake(),
            "tok-hist",
            "scan",
            "history",
            json!([]),
            ALICE,
        ),
    );
    let history = bot.fake.wait_for("POST", callback("tok-hist"), T).await;
    let text = history.body["data"]["content"].as_str().unwrap();
    assert!(
        text.contains(&session_id[..8])
            && text.contains("12 issues (3 on GitHub)")
            && text.contains(&format!("<#{thread}>")),
        "{text}"
    );
    bot.probe.assert_none();
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_issues_page_through_with_every_issue_reachable() {
    let (bot, _api, _github) = start(vec![Some(answer(60))]).await;
    let thread = bot
        .scan(
            "tok-60",
            &[json!({"name": "max_issues", "type": 4, "value": 60})],
        )
        .await;
    let mut message = bot.scan_result(thread).await;
    let id: u64 = message["id"].as_str().unwrap().parse().unwrap();
    let mut seen = Vec::new();
    for page in 1..=6 {
        let text = content(&message).to_string();
        assert!(text.chars().count() <= 2000);
        assert!(text.contains(&format!("(page {page}/6)")), "{text}");
        let positions = positions_on(&text);
        assert_eq!(positions.len(), 10, "{text}");
        let options = message["components"][0]["components"][0]["options"]
            .as_array()
            .unwrap();
        let values: Vec<u32> = options
            .iter()
            .map(|o| o["value"].as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(values, positions, "the select offers what the page shows");
        seen.extend(positions);
        let buttons = &message["components"][1]["components"];
        assert_eq!(buttons[1]["disabled"], page == 6);
        if page < 6 {
            let next = buttons[1]["custom_id"].as_str().unwrap().to_string();
            bot.press(&format!("tok-page{page}"), &message, &next, &[])
                .await;
            message = bot.fake.message(id).unwrap();
        }
    }
    assert_eq!(
        seen,
        (1..=60).collect::<Vec<_>>(),
        "every issue once, in order"
    );
    // And back again.
    let previous = message["components"][1]["components"][0]["custom_id"]
        .as_str()
        .unwrap()
        .to_string();
    bot.press("tok-back", &message, &previous, &[]).await;
    let back = bot.fake.message(id).unwrap();
    assert!(content(&back).contains("(page 5/6)"), "{}", content(&back));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_answer_fails_the_scan_with_the_answer_attached() {
    let (bot, api, _github) = start(vec![None]).await;
    let thread = bot.scan("tok-bad", &[]).await;
    let result = bot.scan_result(thread).await;
    let text = content(&result);
    assert!(text.contains("**❌ failed scan**"), "{text}");
    assert!(text.contains("even after one repair request"), "{text}");
    assert!(
        text.contains("the agent's answer, as given, is attached"),
        "{text}"
    );
    assert!(
        result["components"].as_array().is_none_or(|c| c.is_empty()),
        "no list to act on"
    );
    let post = bot
        .fake
        .requests()
        .into_iter()
        .find(|r| {
            r.method == "POST"
                && r.path == format!("/channels/{thread}/messages")
                && r.is_multipart()
        })
        .expect("the result carries the answer as a file");
    let file = &post.files[0];
    assert!(
        file.filename.starts_with("scan-answer-"),
        "{}",
        file.filename
    );
    let raw = String::from_utf8_lossy(&file.bytes);
    assert_eq!(raw.matches(SCAN_TEXT_ANSWER).count(), 2, "{raw}");
    assert_eq!(
        api.received_requests().await.unwrap().len(),
        4,
        "one repair, no more"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_that_finds_nothing_says_so_and_bad_options_are_refused() {
    let (bot, _api, _github) = start(vec![Some(json!({"issues": []}))]).await;
    let thread = bot
        .scan(
            "tok-none",
            &[json!({"name": "focus", "type": 3, "value": "tests"})],
        )
        .await;
    let result = bot.scan_result(thread).await;
    assert!(
        content(&result).contains("Nothing found: the scan reported no issues for this focus."),
        "{}",
        content(&result)
    );

    // Out of range: refused, ephemeral, nothing recorded.
    let before = bot
        .cli(&["scan", "history", "--json"])
        .as_array()
        .unwrap()
        .len();
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        subcommand(
            bot.fake.snowflake(),
            "tok-range",
            "scan",
            "run",
            json!([{"name": "repo", "type": 3, "value": "acme/widgets"}, {"name": "max_issues", "type": 4, "value": 500}, {"name": "tool", "type": 3, "value": "cursor"}]),
            ALICE,
        ),
    );
    let refusal = bot.fake.wait_for("POST", callback("tok-range"), T).await;
    assert_eq!(refusal.body["data"]["flags"], 64);
    let text = refusal.body["data"]["content"].as_str().unwrap();
    assert!(
        text.starts_with("That scan is not valid")
            && text.contains("**max_issues**: is 500; it must be between 1 and 100")
            && text.contains("**tool**"),
        "{text}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        bot.cli(&["scan", "history", "--json"])
            .as_array()
            .unwrap()
            .len(),
        before
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scan_model_autocomplete_follows_the_chosen_tool() {
    let bot = start_bot(&[]).await;
    let mut payload = subcommand(
        bot.fake.snowflake(),
        "tok-ac",
        "scan",
        "run",
        json!([
            {"name": "tool", "type": 3, "value": "codex"},
            {"name": "model", "type": 3, "value": "mini", "focused": true}
        ]),
        ALICE,
    );
    payload["type"] = json!(4);
    bot.fake.dispatch("INTERACTION_CREATE", payload);
    let answer = bot.fake.wait_for("POST", callback("tok-ac"), T).await;
    assert_eq!(answer.body["type"], 8, "{:#}", answer.body);
    let names: Vec<&str> = answer.body["data"]["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gpt-5.4-mini"]);
}
