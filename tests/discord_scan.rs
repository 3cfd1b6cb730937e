//! Issue sessions from Discord, end to end: the real serenity/poise bot against the fake Discord,
//! the real Claude Code CLI (pinned) in local sandboxes against a fake Anthropic API that answers
//! through structured output, and a mock GitHub (wiremock) for the repository and its issues. Each
//! test reads everything the bot posted (`bot.finish()` checks).

mod support;

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
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
async fn github(world: &World) -> mock_github::Github {
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
async fn start(answers: Vec<Option<Value>>) -> (Bot, MockServer, mock_github::Github) {
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
    bind_project_to(&bot, "acme/widgets", &[("ANTHROPIC_BASE_URL", &api.uri())]).await;
    (bot, api, github)
}

/// `/scan run repo:acme/widgets` plus `options`, by Alice: the scan's thread.
async fn scan(bot: &Bot, options: &[(&str, Value)]) -> RunThread {
    let mut all = vec![("repo", "acme/widgets".into())];
    all.extend_from_slice(options);
    let run = bot.slash(alice(), "scan run", &all);
    let summary = bot.public_reply(&run).await;
    assert!(
        summary.starts_with("🔎 **Scan of acme/widgets**"),
        "{summary}"
    );
    bot.run_thread().await
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
    let thread = scan(&bot, &[("focus", "security".into())]).await;
    let result = bot.next_message(thread.id).await;
    let text = content(&result);
    assert!(
        text.starts_with(&format!("{} **✅ completed scan**", alice().mention())),
        "{text}"
    );
    assert!(
        text.contains("12 issues: 3 critical · 3 high · 3 medium · 3 low"),
        "{text}"
    );
    assert!(text.contains("**Issues 1–10 of 12** (page 1/2)"), "{text}");
    assert_eq!(positions_on(text), (1..=10).collect::<Vec<_>>());
    let select = select_offering(&result, &["1"]);
    assert_eq!(select["options"].as_array().unwrap().len(), 10);
    assert_eq!(select["max_values"], 10);
    assert_eq!(
        button(&result, "◀ Previous")["disabled"],
        true,
        "no previous page"
    );
    assert_eq!(button(&result, "Next ▶")["disabled"], false);
    // `/scan run` offers the catalog's tools as choices, like `/launch`.
    let commands = bot.fake.registered_commands(Some(GUILD_ID));
    let scan_command = commands.iter().find(|c| c["name"] == "scan").unwrap();
    let run = scan_command["options"]
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
    let status = bot.final_status(&thread).await;
    assert!(
        content(&status).contains("read-only scan") && content(&status).contains("✅"),
        "{}",
        content(&status)
    );

    // Next page: the message is edited in place.
    let next = bot.press(alice(), &result, "Next ▶");
    let page2 = bot.updated_message(&next).await;
    assert!(
        content(&page2).contains("**Issues 11–12 of 12** (page 2/2)"),
        "{}",
        content(&page2)
    );
    assert_eq!(positions_on(content(&page2)), [11, 12]);

    // Choose two and file them: both are new on GitHub.
    let pick = bot.choose(alice(), &page2, &["11", "12"]);
    let chosen = bot.reply(&pick).await;
    assert!(chosen.is_ephemeral(), "{:#}", chosen.request.body);
    let chosen = chosen.message().clone();
    let file = bot.press(alice(), &chosen, "Create GitHub issues");
    let answer_text = bot.deferred_answer(&file).await;
    assert!(
        answer_text.contains("created #100 https://github.com/acme/widgets/issues/100")
            && answer_text.contains("created #101 https://github.com/acme/widgets/issues/101"),
        "{answer_text}"
    );
    // The links are posted in the thread for everyone.
    let links = bot.next_message(thread.id).await;
    assert!(
        content(&links).starts_with("📝 GitHub issues for scan")
            && content(&links).contains("#101"),
        "{}",
        content(&links)
    );

    // The duplicate (position 3, on page 1) is linked to the open issue, not filed again.
    let back = bot.press(alice(), &page2, "◀ Previous");
    let page1 = bot.updated_message(&back).await;
    let pick3 = bot.choose(alice(), &page1, &["3"]);
    let chosen3 = bot.reply(&pick3).await.message().clone();
    let file3 = bot.press(alice(), &chosen3, "Create GitHub issues");
    let answer_text = bot.deferred_answer(&file3).await;
    assert!(
        answer_text.contains(
            "already open on GitHub, linked: #5 https://github.com/acme/widgets/issues/5"
        ),
        "{answer_text}"
    );
    let links = bot.next_message(thread.id).await;
    assert!(content(&links).contains("#5"), "{}", content(&links));
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

    // Launch fixes for issues 11 and 12: launches linked to the session, each announced in the
    // channel and run in its own thread.
    let fix = bot.press(alice(), &chosen, "Launch 2 fixes");
    let text = bot.deferred_answer(&fix).await;
    assert!(text.contains("launched"), "{text}");
    let mut fix_threads = Vec::new();
    for issue in ["Issue 11", "Issue 12"] {
        let announced = bot.next_message(CHANNEL_ID).await;
        assert!(
            content(&announced).starts_with("🔧 Fix for issue")
                && content(&announced).contains(issue),
            "{}",
            content(&announced)
        );
        fix_threads.push(bot.run_thread().await);
    }
    for fix_thread in &fix_threads {
        let fix_result = bot.next_message(fix_thread.id).await;
        assert!(
            content(&fix_result).contains("✅ completed"),
            "{}",
            content(&fix_result)
        );
    }
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
    let history = bot.slash(alice(), "scan history", &[]);
    let text = bot.ephemeral_reply(&history).await;
    assert!(
        text.contains(&session_id[..8])
            && text.contains("12 issues (3 on GitHub)")
            && text.contains(&format!("<#{}>", thread.id)),
        "{text}"
    );
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_issues_page_through_with_every_issue_reachable() {
    let (bot, _api, _github) = start(vec![Some(answer(60))]).await;
    let thread = scan(&bot, &[("max_issues", 60.into())]).await;
    let mut message = bot.next_message(thread.id).await;
    let mut seen = Vec::new();
    for page in 1..=6 {
        let text = content(&message).to_string();
        assert!(text.chars().count() <= 2000);
        assert!(text.contains(&format!("(page {page}/6)")), "{text}");
        let positions = positions_on(&text);
        assert_eq!(positions.len(), 10, "{text}");
        let first = positions[0].to_string();
        let values: Vec<u32> = select_offering(&message, &[&first])["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["value"].as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(values, positions, "the select offers what the page shows");
        seen.extend(positions);
        assert_eq!(button(&message, "Next ▶")["disabled"], page == 6);
        if page < 6 {
            let next = bot.press(alice(), &message, "Next ▶");
            message = bot.updated_message(&next).await;
        }
    }
    assert_eq!(
        seen,
        (1..=60).collect::<Vec<_>>(),
        "every issue once, in order"
    );
    // And back again.
    let previous = bot.press(alice(), &message, "◀ Previous");
    let back = bot.updated_message(&previous).await;
    assert!(content(&back).contains("(page 5/6)"), "{}", content(&back));
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_answer_fails_the_scan_with_the_answer_attached() {
    let (bot, api, _github) = start(vec![None]).await;
    let thread = scan(&bot, &[]).await;
    let result = bot.next_message(thread.id).await;
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
    let post = bot.post_of(&result);
    assert!(
        post.is_multipart(),
        "the result carries the answer as a file"
    );
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
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_that_finds_nothing_says_so_and_bad_options_are_refused() {
    let (bot, _api, _github) = start(vec![Some(json!({"issues": []}))]).await;
    let thread = scan(&bot, &[("focus", "tests".into())]).await;
    let result = bot.next_message(thread.id).await;
    assert!(
        content(&result).contains("Nothing found: the scan reported no issues for this focus."),
        "{}",
        content(&result)
    );

    // Out of range: refused, ephemeral, nothing recorded (the refusal comes before any record).
    let before = bot
        .cli(&["scan", "history", "--json"])
        .as_array()
        .unwrap()
        .len();
    let bad = bot.slash(
        alice(),
        "scan run",
        &[
            ("repo", "acme/widgets".into()),
            ("max_issues", 500.into()),
            ("tool", "cursor".into()),
        ],
    );
    let text = bot.ephemeral_reply(&bad).await;
    assert!(
        text.starts_with("That scan is not valid")
            && text.contains("**max_issues**: is 500; it must be between 1 and 100")
            && text.contains("**tool**"),
        "{text}"
    );
    assert_eq!(
        bot.cli(&["scan", "history", "--json"])
            .as_array()
            .unwrap()
            .len(),
        before
    );
    bot.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scan_model_autocomplete_follows_the_chosen_tool() {
    let bot = start_bot(&[]).await;
    let typing = bot.autocomplete(
        alice(),
        "scan run",
        &[("tool", "codex".into())],
        ("model", "mini"),
    );
    assert_eq!(bot.choices(&typing).await, ["gpt-5.4-mini"]);
    bot.finish().await;
}
