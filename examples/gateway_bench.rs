//! What the credential gateway adds to a streamed model answer: `cargo run --release --example
//! gateway_bench`.
//!
//! A fake Anthropic Messages API on loopback streams an SSE answer (one event a chunk); the same
//! client asks it directly and through the gateway (placeholder in, real key out), alternating,
//! over kept-alive connections. Printed: the medians of the time to the first byte and to the
//! end of the answer, the gateway's addition and the ratio.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::Response;
use axum::serve::ListenerExt;
use codecourier::config::{GatewayConfig, OPENAI_BASE_URL, OPENROUTER_BASE_URL};
use codecourier::gateway::{Gateway, GatewaySettings, Grant, ModelApi, ModelGrant, ModelKey};
use codecourier::secret::Secret;

const RUNS: usize = 300;
const EVENTS: usize = 40;
const REQUEST: &str = r#"{"model":"claude-sonnet-4-6","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"Write a haiku."}]}"#;

/// One text delta event of Anthropic's stream, about 200 bytes.
fn delta_event(i: usize) -> Bytes {
    Bytes::from(format!(
        "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"token {i:04} of the answer, padded to a realistic size ....\"}}}}\n\n"
    ))
}

/// Streams `EVENTS` events, each its own chunk, as fast as the connection takes them.
async fn fake_anthropic() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(EVENTS);
        tokio::spawn(async move {
            for i in 0..EVENTS {
                if tx.send(Ok(delta_event(i))).await.is_err() {
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
    let through = gateway.reach_on_host().model_base_url(ModelApi::Anthropic);
    let placeholder = grant.placeholder().expose().to_string();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    // Warm both paths' connections and code before measuring.
    for _ in 0..20 {
        one_answer(&client, &upstream, real_key).await;
        one_answer(&client, &through, &placeholder).await;
    }
    let (mut direct_first, mut direct_total) = (Vec::new(), Vec::new());
    let (mut gateway_first, mut gateway_total) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let (first, total) = one_answer(&client, &upstream, real_key).await;
        direct_first.push(first);
        direct_total.push(total);
        let (first, total) = one_answer(&client, &through, &placeholder).await;
        gateway_first.push(first);
        gateway_total.push(total);
    }
    let (df, dt) = (median(direct_first), median(direct_total));
    let (gf, gt) = (median(gateway_first), median(gateway_total));
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "A streamed model answer ({EVENTS} SSE events, about {} KiB), median of {RUNS} runs each, loopback:",
        EVENTS * delta_event(0).len() / 1024
    );
    println!("{:<14}{:>14}{:>14}", "", "first byte", "total");
    println!("{:<14}{:>14}{:>14}", "direct", ms(df), ms(dt));
    println!("{:<14}{:>14}{:>14}", "via gateway", ms(gf), ms(gt));
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
}
