//! What the credential gateway adds to a streamed model answer: `cargo run --release --example
//! gateway_bench`.
//!
//! A fake Anthropic Messages API on loopback streams an SSE answer (one event a chunk, with its
//! usage in `message_start` and `message_delta`); the same client asks it directly, through the
//! gateway (placeholder in, real key out), and through the gateway with the grant metered (each
//! response's usage read and priced), in turn, over kept-alive connections. Printed: the medians
//! of the time to the first byte and to the end of the answer, the gateway's addition and the
//! ratios; then metering's own cost per response (the observer fed the same events in a loop)
//! against the unmetered gateway's time per answer.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::Response;
use axum::serve::ListenerExt;
use codecourier::catalog::{Budget, Catalog};
use codecourier::config::{GatewayConfig, OPENAI_BASE_URL, OPENROUTER_BASE_URL};
use codecourier::gateway::{
    Gateway, GatewaySettings, Grant, Meter, ModelApi, ModelGrant, ModelKey, ModelRequest,
    ModelTraffic,
};
use codecourier::secret::Secret;
use http::{Method, StatusCode};

const RUNS: usize = 300;
const EVENTS: usize = 40;
const REQUEST: &str = r#"{"model":"claude-sonnet-4-6","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"Write a haiku."}]}"#;

/// One text delta event of Anthropic's stream, about 200 bytes.
fn delta_event(i: usize) -> Bytes {
    Bytes::from(format!(
        "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"token {i:04} of the answer, padded to a realistic size ....\"}}}}\n\n"
    ))
}

/// The whole answer: `message_start` with the input's usage, `EVENTS` deltas, `message_delta`
/// with the output's, `message_stop`.
fn answer_events() -> Vec<Bytes> {
    let mut events = vec![Bytes::from_static(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-6\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":1200,\"output_tokens\":1,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":800}}}\n\n")];
    events.extend((0..EVENTS).map(delta_event));
    events.push(Bytes::from_static(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":320}}\n\n"));
    events.push(Bytes::from_static(
        b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ));
    events
}

/// Streams the answer's events, each its own chunk, as fast as the connection takes them.
async fn fake_anthropic() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async {
        let events = answer_events();
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(events.len());
        tokio::spawn(async move {
            for event in events {
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(futures_util::stream::poll_fn(
                move |cx| rx.poll_recv(cx),
            )))
            .unwrap()
    });
    // Without Nagle's delay, as an API server answers; else every run waits for a delayed ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// (time to the first chunk, time to the end) of one streamed answer.
async fn one_answer(client: &reqwest::Client, base: &str, key: &str) -> (Duration, Duration) {
    let started = Instant::now();
    let mut response = client
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .body(REQUEST)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut first = None;
    let mut bytes = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        first.get_or_insert_with(|| started.elapsed());
        bytes += chunk.len();
    }
    assert!(bytes > EVENTS * 100);
    (first.unwrap(), started.elapsed())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let upstream = fake_anthropic().await;
    let gateway = Gateway::start(GatewaySettings::from_config(&GatewayConfig {
        anthropic_base_url: upstream.clone(),
        openai_base_url: OPENAI_BASE_URL.into(),
        openrouter_base_url: OPENROUTER_BASE_URL.into(),
        egress_allow: Vec::new(),
        egress_open: false,
    }))
    .await
    .unwrap();
    let real_key = "sk-ant-bench-real-key";
    let grant = gateway.grant(Grant {
        label: "bench".into(),
        models: vec![ModelGrant::new(
            ModelApi::Anthropic,
            ModelKey::ApiKey(Secret::new(real_key)),
        )],
        ..Grant::default()
    });
    let (meter, mut recorded) = Meter::new(Catalog::built_in().prices, Budget::default());
    tokio::spawn(async move { while recorded.recv().await.is_some() {} });
    let metered_grant = gateway.grant(Grant {
        label: "bench-metered".into(),
        models: vec![ModelGrant::new(
            ModelApi::Anthropic,
            ModelKey::ApiKey(Secret::new(real_key)),
        )],
        traffic: Some(std::sync::Arc::new(meter.clone())),
        ..Grant::default()
    });
    let through = gateway.reach_on_host().model_base_url(ModelApi::Anthropic);
    let placeholder = grant.placeholder().expose().to_string();
    let metered_placeholder = metered_grant.placeholder().expose().to_string();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    // Warm every path's connections and code before measuring.
    for _ in 0..20 {
        one_answer(&client, &upstream, real_key).await;
        one_answer(&client, &through, &placeholder).await;
        one_answer(&client, &through, &metered_placeholder).await;
    }
    let (mut direct_first, mut direct_total) = (Vec::new(), Vec::new());
    let (mut gateway_first, mut gateway_total) = (Vec::new(), Vec::new());
    let (mut metered_first, mut metered_total) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let (first, total) = one_answer(&client, &upstream, real_key).await;
        direct_first.push(first);
        direct_total.push(total);
        let (first, total) = one_answer(&client, &through, &placeholder).await;
        gateway_first.push(first);
        gateway_total.push(total);
        let (first, total) = one_answer(&client, &through, &metered_placeholder).await;
        metered_first.push(first);
        metered_total.push(total);
    }
    assert_eq!(
        meter.spend().requests,
        (20 + RUNS) as u64,
        "every answer metered"
    );
    let (df, dt) = (median(direct_first), median(direct_total));
    let (gf, gt) = (median(gateway_first), median(gateway_total));
    let (mf, mt) = (median(metered_first), median(metered_total));
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "A streamed model answer ({EVENTS} SSE events, about {} KiB), median of {RUNS} runs each, loopback:",
        EVENTS * delta_event(0).len() / 1024
    );
    println!("{:<14}{:>14}{:>14}", "", "first byte", "total");
    println!("{:<14}{:>14}{:>14}", "direct", ms(df), ms(dt));
    println!("{:<14}{:>14}{:>14}", "via gateway", ms(gf), ms(gt));
    println!("{:<14}{:>14}{:>14}", "  metered", ms(mf), ms(mt));
    println!(
        "{:<14}{:>14}{:>14}",
        "added",
        ms(gf.saturating_sub(df)),
        ms(gt.saturating_sub(dt))
    );
    println!(
        "{:<14}{:>13.2}x{:>13.2}x",
        "ratio",
        ratio(gf, df),
        ratio(gt, dt)
    );
    println!(
        "{:<14}{:>13.2}x{:>13.2}x",
        "metered/not",
        ratio(mf, gf),
        ratio(mt, gt)
    );

    // Metering's own work per response: the observer fed the answer's events, as the gateway
    // feeds it, many times over.
    let events = answer_events();
    let body = Bytes::from_static(REQUEST.as_bytes());
    let post = Method::POST;
    let request = ModelRequest {
        api: ModelApi::Anthropic,
        method: &post,
        path: "/v1/messages",
        body: &body,
    };
    let (meter, mut recorded) = Meter::new(Catalog::built_in().prices, Budget::default());
    let responses = 20_000;
    let started = Instant::now();
    for _ in 0..responses {
        let mut observer = meter.observe(&request, StatusCode::OK).expect("observed");
        for event in &events {
            observer.chunk(event);
        }
        observer.end(true);
        while recorded.try_recv().is_ok() {}
    }
    let per_response = started.elapsed() / responses;
    println!(
        "metering's own work: {:.1} µs per streamed response ({} events), {:.2}% of the unmetered gateway's median answer ({})",
        per_response.as_secs_f64() * 1e6,
        events.len(),
        100.0 * ratio(per_response, gt),
        ms(gt)
    );
}
