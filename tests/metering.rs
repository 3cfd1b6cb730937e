//! Metering and budgets: the gateway counts each model response's usage as the provider sent it
//! (each API shape, streamed and not), a launch's record keeps both the metered and the CLI's
//! figures, and a budget stops the launch at the response that reached it, its work still pushed.

mod support;

use std::time::Duration;

use codecourier::catalog::{Budget, Catalog};
use codecourier::gateway::{
    EgressPolicy, Gateway, GatewaySettings, Grant, Meter, MeteredResponse, ModelApi, ModelGrant,
    ModelKey, Upstreams,
};
use codecourier::secret::Secret;
use serde_json::{json, Value};
use support::agent_cli::{record, run};
use support::{fake_anthropic, fake_openai_chat, fake_openai_responses, World};
use url::Url;

const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The gateway against the fake model APIs

/// A gateway whose upstreams are the given fakes' base URLs.
async fn gateway(anthropic: &str, openai: &str, openrouter: &str) -> Gateway {
    let url = |u: &str| Url::parse(u).unwrap();
    Gateway::start(GatewaySettings {
        upstreams: Upstreams {
            anthropic: url(anthropic),
            openai: url(openai),
            openrouter: url(openrouter),
        },
        egress: EgressPolicy::registries_and(&[], false),
    })
    .await
    .unwrap()
}

/// Sends one request for `api` through a metered grant and returns what the meter recorded of
/// it, after reading the whole answer as the CLI would.
async fn metered(gateway: &Gateway, api: ModelApi, path: &str, body: Value) -> MeteredResponse {
    let (meter, mut recorded) = Meter::new(Catalog::built_in().prices, Budget::default());
    let guard = gateway.grant(Grant {
        label: "metering".into(),
        models: vec![ModelGrant::new(
            api,
            ModelKey::ApiKey(Secret::new("sk-real")),
        )],
        traffic: Some(std::sync::Arc::new(meter)),
        ..Grant::default()
    });
    let base = gateway.reach_on_host().model_base_url(api);
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{base}{path}"))
        .bearer_auth(guard.placeholder().expose())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let record = tokio::time::timeout(WAIT, recorded.recv())
        .await
        .expect("the meter recorded nothing within the wait")
        .expect("the meter is gone");
    assert!(
        recorded.try_recv().is_err(),
        "one response, one record: {text}"
    );
    record
}

fn tokens(r: &MeteredResponse) -> (u64, u64, u64, u64) {
    let u = &r.usage;
    (
        u.input_tokens,
        u.cache_read_tokens,
        u.cache_write_tokens,
        u.output_tokens,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_usage_is_metered_as_the_fake_sent_it_streamed_or_not() {
    let api = fake_anthropic::start(fake_anthropic::Mode::Works {
        extra_text: String::new(),
    })
    .await;
    let gateway = gateway(&api.uri(), "http://127.0.0.1:9", "http://127.0.0.1:9").await;
    for stream in [true, false] {
        let body = json!({"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]});
        let r = metered(&gateway, ModelApi::Anthropic, "/v1/messages", body).await;
        assert_eq!(r.model, "claude-sonnet-4-6", "stream {stream}");
        assert_eq!(
            tokens(&r),
            (
                fake_anthropic::INPUT_TOKENS,
                0,
                0,
                fake_anthropic::OUTPUT_TOKENS
            ),
            "stream {stream}"
        );
        assert_eq!(r.usage.requests, 1);
        // Sonnet at $3 in and $15 out per million.
        let cost = r.usage.cost_usd.unwrap();
        assert!((cost - 0.0006).abs() < 1e-12, "stream {stream}: {cost}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_responses_usage_is_metered_with_cached_input_counted_once() {
    use fake_openai_responses as fake;
    let api = fake::start(fake::Mode::Works).await;
    let openai = format!("{}/v1", api.uri());
    let gateway = gateway("http://127.0.0.1:9", &openai, "http://127.0.0.1:9").await;
    for stream in [true, false] {
        let body = json!({"model": "gpt-5.4", "stream": stream, "input": "hi"});
        let r = metered(&gateway, ModelApi::OpenAi, "/responses", body).await;
        assert_eq!(r.model, "gpt-5.4", "stream {stream}");
        assert_eq!(
            tokens(&r),
            (
                fake::INPUT_TOKENS - fake::CACHED_TOKENS,
                fake::CACHED_TOKENS,
                0,
                fake::OUTPUT_TOKENS
            ),
            "stream {stream}"
        );
        // The catalog has no price for it: tokens only.
        assert_eq!(r.usage.cost_usd, None);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_completions_usage_through_openrouter_is_metered_streamed_or_not() {
    use fake_openai_chat as fake;
    let api = fake::start(fake::Mode::Works).await;
    let gateway = gateway(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        &fake::base_url(&api),
    )
    .await;
    for stream in [true, false] {
        let body = json!({"model": "google/gemini-2.5-pro", "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]});
        let r = metered(&gateway, ModelApi::OpenRouter, "/chat/completions", body).await;
        assert_eq!(r.model, "google/gemini-2.5-pro", "stream {stream}");
        assert_eq!(
            tokens(&r),
            (
                fake::PROMPT_TOKENS - fake::CACHED_TOKENS,
                fake::CACHED_TOKENS,
                0,
                fake::COMPLETION_TOKENS
            ),
            "stream {stream}"
        );
        let cost = r.usage.cost_usd.unwrap();
        let expected = 70.0 * 1.25e-6 + 30.0 * 0.125e-6 + 20.0 * 10e-6;
        assert!((cost - expected).abs() < 1e-12, "stream {stream}: {cost}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn past_its_budget_a_grant_s_requests_get_an_error_in_the_api_s_shape_and_stay_here() {
    let api = fake_anthropic::start(fake_anthropic::Mode::Works {
        extra_text: String::new(),
    })
    .await;
    let gateway = gateway(&api.uri(), "http://127.0.0.1:9", "http://127.0.0.1:9").await;
    let budget = Budget {
        max_cost_usd: None,
        max_tokens: Some(100),
    };
    let (meter, _recorded) = Meter::new(Catalog::built_in().prices, budget);
    let reached = meter.reached();
    let guard = gateway.grant(Grant {
        label: "budgeted".into(),
        models: vec![ModelGrant::new(
            ModelApi::Anthropic,
            ModelKey::ApiKey(Secret::new("sk-real")),
        )],
        traffic: Some(std::sync::Arc::new(meter)),
        ..Grant::default()
    });
    let base = gateway.reach_on_host().model_base_url(ModelApi::Anthropic);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let send = || {
        client
            .post(format!("{base}/v1/messages"))
            .header("x-api-key", guard.placeholder().expose())
            .json(
                &json!({"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
            )
            .send()
    };
    // A call the meter cannot read is refused while a budget holds: a batch would bill later.
    let batch = client
        .post(format!("{base}/v1/messages/batches"))
        .header("x-api-key", guard.placeholder().expose())
        .json(&json!({"requests": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 400);
    let error: Value = batch.json().await.unwrap();
    assert_eq!(
        error["error"]["message"],
        "/v1/messages/batches is not an endpoint CodeCourier's gateway can meter, so a launch with a budget may not call it"
    );
    assert_eq!(requests_received(&api).await, 0);

    let first = send().await.unwrap();
    assert_eq!(first.status(), 200);
    first.text().await.unwrap();
    tokio::time::timeout(WAIT, reached.cancelled())
        .await
        .expect("the answer's 120 tokens reach the budget of 100");
    let refused = send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(
        error["error"]["message"],
        "budget of 100 tokens reached after 120: CodeCourier's gateway sends no more model requests for this launch"
    );
    assert_eq!(
        requests_received(&api).await,
        1,
        "the refused request stayed here"
    );
}

// ---------------------------------------------------------------------------------------------
// Launches: a stand-in agent that calls the fake Messages API through the gateway

/// `codecourier launch` of the stand-in agent in `model` mode, its Messages API the fake's.
fn model_launch(world: &World, api: &wiremock::MockServer, args: &[&str]) -> std::process::Command {
    let mut cmd = world.launch_std(&["--prompt", "Keep calling the model"]);
    cmd.args(["--env", "FAKE_CLAUDE=model"])
        .args(["--env", &format!("ANTHROPIC_BASE_URL={}", api.uri())])
        .args(args);
    cmd
}

async fn requests_received(api: &wiremock::MockServer) -> usize {
    api.received_requests().await.unwrap_or_default().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_that_reaches_its_budget_is_stopped_at_that_response_and_its_commits_are_pushed() {
    let world = World::new();
    let api = fake_anthropic::start(fake_anthropic::Mode::Works {
        extra_text: String::new(),
    })
    .await;
    // Each answer costs $0.0006 at Sonnet's price: the fourth reaches $0.002.
    let (code, r, stderr) = run(model_launch(&world, &api, &["--max-cost-usd", "0.002"])).await;
    assert_eq!(code, 1, "{r:#}\n{stderr}");
    assert_eq!(r["status"], "stopped", "{r:#}");
    assert_eq!(r["failed_phase"], "agent");
    assert_eq!(
        r["error"], "budget of $0.0020 reached after $0.0024",
        "{r:#}"
    );
    assert_eq!(
        requests_received(&api).await,
        4,
        "the fake saw a request after the one that reached the budget"
    );
    assert_eq!(r["metered"]["requests"], 4, "{r:#}");
    assert_eq!(r["budget"]["max_cost_usd"], 0.002);
    // Stopped when that answer ended, not refused at its next call.
    let agent = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "agent")
        .unwrap();
    assert_eq!(
        agent["detail"], "Claude Code was stopped: budget of $0.0020 reached after $0.0024",
        "{agent:#}"
    );
    // The work so far: the commit the agent made, and the calls it noted (committed for it).
    assert_eq!(r["pushed"], true, "{r:#}");
    let branch = r["branch"].as_str().unwrap();
    assert_eq!(world.file_on_branch(branch, "first.txt"), "first\n");
    assert!(world
        .file_on_branch(branch, "calls.txt")
        .starts_with("1\n2\n3\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_budget_stops_the_launch_at_its_count_and_the_terminal_shows_the_spend_grow() {
    let world = World::new();
    let api = fake_anthropic::start(fake_anthropic::Mode::Works {
        extra_text: String::new(),
    })
    .await;
    let mut cmd = world.std_cmd();
    cmd.args(["launch", "--prompt", "Keep calling the model", "--repo"])
        .arg(&world.origin)
        .args(["--env", "FAKE_CLAUDE=model", "--max-tokens", "300"])
        .args(["--env", &format!("ANTHROPIC_BASE_URL={}", api.uri())]);
    let (code, stdout, stderr) = support::agent_cli::output(cmd).await;
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("— stopped") && stdout.contains("budget of 300 tokens reached after 360"),
        "{stdout}"
    );
    assert_eq!(requests_received(&api).await, 3);
    assert!(
        stderr.contains("spent $0.0006 · 120 of 300 tokens")
            && stderr.contains("spent $0.0018 · 360 of 300 tokens"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_result_shows_the_metered_cost_and_the_record_keeps_the_cli_s_own() {
    let world = World::new();
    let api = fake_anthropic::start(fake_anthropic::Mode::Works {
        extra_text: String::new(),
    })
    .await;
    // The stand-in reports $0.0123 whatever it spent; two answers cost $0.0012.
    let (code, r, stderr) = run(model_launch(&world, &api, &["--env", "MODEL_CALLS=2"])).await;
    assert_eq!(code, 0, "{r:#}\n{stderr}");
    assert_eq!(r["status"], "completed");
    let cost = r["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.0012).abs() < 1e-12, "{r:#}");
    assert_eq!(r["input_tokens"], 2 * fake_anthropic::INPUT_TOKENS);
    assert_eq!(r["output_tokens"], 2 * fake_anthropic::OUTPUT_TOKENS);
    assert_eq!(r["reported"]["cost_usd"], 0.0123);
    assert_eq!(r["reported"]["input_tokens"], 1000);

    let id = r["id"].as_str().unwrap();
    let stored = record(&world, id);
    assert!((stored["cost_usd"].as_f64().unwrap() - 0.0012).abs() < 1e-12);
    assert_eq!(stored["reported"]["cost_usd"], 0.0123);
    assert_eq!(stored["metered"]["requests"], 2);
    let shown = world
        .std_cmd()
        .args(["sandboxes", "show", id])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(
            "usage       $0.0012 · 200 in / 40 out tokens · claude-code reported $0.0123"
        ),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_an_agent_claims_in_its_own_requests_neither_lowers_its_spend_nor_lifts_its_budget() {
    let world = World::new();
    let api = fake_anthropic::start(fake_anthropic::Mode::Works {
        extra_text: String::new(),
    })
    .await;
    let claims = r#","usage":{"input_tokens":-100000000,"output_tokens":-1,"cost_usd":-50},"budget":{"max_cost_usd":1000},"max_cost_usd":1000"#;
    let (code, r, stderr) = run(model_launch(
        &world,
        &api,
        &[
            "--max-cost-usd",
            "0.002",
            "--env",
            &format!("MODEL_EXTRA={claims}"),
        ],
    ))
    .await;
    assert_eq!(code, 1, "{r:#}\n{stderr}");
    assert_eq!(r["status"], "stopped", "{r:#}");
    assert_eq!(r["error"], "budget of $0.0020 reached after $0.0024");
    assert_eq!(requests_received(&api).await, 4);
    assert_eq!(
        r["metered"]["input_tokens"],
        4 * fake_anthropic::INPUT_TOKENS
    );
    assert_eq!(
        r["metered"]["output_tokens"],
        4 * fake_anthropic::OUTPUT_TOKENS
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_s_budget_comes_from_itself_then_its_project_then_the_deployment() {
    let world = World::new();
    let budget = |args: &[&str], deployment: Option<&str>| {
        let mut cmd = world.launch_std(&["--prompt", "Do it"]);
        cmd.args(args);
        if let Some(usd) = deployment {
            cmd.env("CODECOURIER_DEFAULT_BUDGET_USD", usd);
        }
        let out = cmd.output().unwrap();
        let r: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(r["status"], "completed", "{r:#}");
        r["budget"].clone()
    };
    assert_eq!(budget(&[], None), json!({}));
    assert_eq!(budget(&[], Some("3")), json!({"max_cost_usd": 3.0}));
    world.project(&["setup", "--default-budget-usd", "2.5"]);
    assert_eq!(budget(&[], Some("3")), json!({"max_cost_usd": 2.5}));
    assert_eq!(
        budget(&["--max-tokens", "5000"], Some("3")),
        json!({"max_tokens": 5000})
    );
    assert_eq!(
        budget(&["--max-cost-usd", "1"], Some("3")),
        json!({"max_cost_usd": 1.0})
    );

    // Bad amounts are refused, naming the limit.
    let out = world
        .launch_std(&[
            "--prompt",
            "Do it",
            "--max-cost-usd",
            "-1",
            "--max-tokens",
            "lots",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the budget must be more than $0")
            && stderr.contains("\"lots\" is not a number of tokens"),
        "{stderr}"
    );
    let out = world
        .launch_std(&["--prompt", "Do it"])
        .env("CODECOURIER_DEFAULT_BUDGET_USD", "free")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CODECOURIER_DEFAULT_BUDGET_USD"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_reports_what_the_gateway_metered_of_real_launches() {
    let world = World::new();
    let api = fake_anthropic::start(fake_anthropic::Mode::Works {
        extra_text: String::new(),
    })
    .await;
    let mut records = Vec::new();
    for calls in ["2", "3"] {
        let launch = model_launch(&world, &api, &["--env", &format!("MODEL_CALLS={calls}")]);
        let (code, r, stderr) = run(launch).await;
        assert_eq!(code, 0, "{r:#}\n{stderr}");
        records.push(r);
    }
    let sum = |field: &str| -> f64 {
        records
            .iter()
            .map(|r| r["metered"][field].as_f64().unwrap())
            .sum()
    };
    for by in ["person", "model", "tool"] {
        let out = world
            .std_cmd()
            .args(["usage", "--json", "--by", by])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let total = &report["total"];
        assert_eq!(total["requests"], 5, "{report:#}");
        for field in ["input_tokens", "output_tokens", "cache_read_tokens"] {
            assert_eq!(
                total[field].as_f64().unwrap(),
                sum(field),
                "{field}: {report:#}"
            );
        }
        assert!(
            (total["metered_cost_usd"].as_f64().unwrap() - sum("cost_usd")).abs() < 1e-9,
            "{report:#}"
        );
        let rows = report["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "one person, one model, one tool: {report:#}");
        assert_eq!(rows[0]["launches"], 2);
    }
    assert!((sum("cost_usd") - 5.0 * 0.0006).abs() < 1e-12);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_fired_at_once_under_a_budget_pass_it_by_at_most_the_answers_in_flight() {
    let api = fake_anthropic::start(fake_anthropic::Mode::Works {
        extra_text: String::new(),
    })
    .await;
    let gateway = gateway(&api.uri(), "http://127.0.0.1:9", "http://127.0.0.1:9").await;
    let budget = Budget {
        max_cost_usd: Some(0.001),
        max_tokens: None,
    };
    let (meter, _recorded) = Meter::new(Catalog::built_in().prices, budget);
    let guard = gateway.grant(Grant {
        label: "fired at once".into(),
        models: vec![ModelGrant::new(
            ModelApi::Anthropic,
            ModelKey::ApiKey(Secret::new("sk-real")),
        )],
        traffic: Some(std::sync::Arc::new(meter.clone())),
        ..Grant::default()
    });
    let url = format!(
        "{}/v1/messages",
        gateway.reach_on_host().model_base_url(ModelApi::Anthropic)
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    // Thirty answers at $0.0006 each, asked for all at once against a $0.001 budget.
    let asked: Vec<_> = (0..30)
        .map(|_| {
            let request = client
                .post(&url)
                .header("x-api-key", guard.placeholder().expose())
                .json(
                    &json!({"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": true,
                    "messages": [{"role": "user", "content": "hi"}]}),
                );
            tokio::spawn(async move {
                let answer = request.send().await.unwrap();
                let status = answer.status();
                answer.text().await.unwrap();
                status
            })
        })
        .collect();
    let mut answered = 0;
    for asked in asked {
        match tokio::time::timeout(WAIT, asked)
            .await
            .unwrap()
            .unwrap()
            .as_u16()
        {
            200 => answered += 1,
            status => assert_eq!(status, 400),
        }
    }
    // Two answers reach the budget; at most three are ever in flight together, so when the second
    // ends at most two others are still running: four answers at most, not thirty.
    assert!((2..=4).contains(&answered), "{answered} answered");
    assert_eq!(requests_received(&api).await, answered);
    assert!(meter.spend().cost_usd <= 4.0 * 0.0006 + 1e-9);
    assert!(meter.reached().is_cancelled());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dollar_budget_for_a_model_without_a_price_is_refused_before_a_sandbox_starts() {
    let world = World::new();
    // Codex's models have no price in the built-in catalog: every call would be refused.
    let mut cmd = world.launch_std(&["--prompt", "Tidy up", "--tool", "codex"]);
    cmd.env("OPENAI_API_KEY", "sk-openai-test")
        .env("CODECOURIER_DEFAULT_BUDGET_USD", "2");
    let (code, stdout, stderr) = support::agent_cli::output(cmd).await;
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("CODECOURIER_DEFAULT_BUDGET_USD's budget of $2.00 is in dollars, but the catalog has no price for gpt-5.4")
            && stderr.contains("give a budget in tokens (--max-tokens)"),
        "{stderr}"
    );
    // A budget in tokens holds for any model; a priced model takes a dollar budget.
    let mut cmd = world.launch_std(&[
        "--prompt",
        "Tidy up",
        "--tool",
        "codex",
        "--max-tokens",
        "1000",
        "--dry-run",
    ]);
    cmd.env("OPENAI_API_KEY", "sk-openai-test");
    let (code, stdout, stderr) = support::agent_cli::output(cmd).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let listed = world
        .std_cmd()
        .args(["sandboxes", "list", "--json"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");
}
