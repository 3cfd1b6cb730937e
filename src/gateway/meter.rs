//! A launch's meter: its model traffic counted from the providers' own usage (never from anything
//! the agent says), priced from the catalog, held against its budget. Each response adds to the
//! spend as it ends; once the budget is reached the next request is refused and `reached` fires,
//! so the launch can stop its agent at once.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::sync::CancellationToken;

use super::model::{ModelApi, ModelRequest, ModelTraffic, Refusal, ResponseObserver};
use super::usage::{Read, UsageReader, Wire};
use crate::catalog::{usd, Budget, Prices};
use crate::store::ModelUsage;

/// The model name of responses whose usage could not be read: counted as requests, without
/// tokens or a price.
pub const UNMETERED: &str = "unmetered";

/// What a launch has spent so far, as metered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spend {
    pub requests: u64,
    /// The priced responses' cost.
    pub cost_usd: f64,
    /// Every kind of token: input, output, cache reads and writes.
    pub tokens: u64,
    /// Models called that have no price: their tokens are counted, not their cost.
    pub unpriced: Vec<String>,
    /// Responses whose usage could not be read.
    pub unmetered: u64,
}

/// One response's usage, for the record.
#[derive(Debug, Clone, PartialEq)]
pub struct MeteredResponse {
    pub api: ModelApi,
    pub model: String,
    pub usage: ModelUsage,
}

/// A launch's meter, shared by the gateway (as the grant's `ModelTraffic`) and the launch.
#[derive(Clone)]
pub struct Meter(Arc<Inner>);

struct Inner {
    prices: Prices,
    budget: Budget,
    spend: watch::Sender<Spend>,
    /// Each response's usage as it ends, for the store.
    records: mpsc::UnboundedSender<MeteredResponse>,
    /// Cancelled when the budget is reached.
    reached: CancellationToken,
    /// Under a budget, the answers that may be in flight at once.
    turns: Arc<Semaphore>,
}

/// Under a budget, how many model answers may be in flight at once: a budget is passed by at most
/// the answers already running when it is reached. Enough for a CLI's side calls and a few
/// subagents; more wait their turn.
pub const IN_FLIGHT_UNDER_BUDGET: usize = 3;

impl Meter {
    /// A meter and the receiver of each response's usage as it ends.
    pub fn new(prices: Prices, budget: Budget) -> (Self, mpsc::UnboundedReceiver<MeteredResponse>) {
        let (records, receiver) = mpsc::unbounded_channel();
        let meter = Self(Arc::new(Inner {
            prices,
            budget,
            spend: watch::Sender::new(Spend::default()),
            records,
            reached: CancellationToken::new(),
            turns: Arc::new(Semaphore::new(IN_FLIGHT_UNDER_BUDGET)),
        }));
        (meter, receiver)
    }

    pub fn budget(&self) -> Budget {
        self.0.budget
    }

    pub fn spend(&self) -> Spend {
        self.0.spend.borrow().clone()
    }

    /// Changes whenever a response adds to the spend.
    pub fn watch(&self) -> watch::Receiver<Spend> {
        self.0.spend.subscribe()
    }

    /// Cancelled once the spend reaches the budget.
    pub fn reached(&self) -> CancellationToken {
        self.0.reached.clone()
    }

    /// "budget of $2.00 reached after $2.13" once the budget is reached.
    pub fn reached_words(&self) -> Option<String> {
        if !self.0.reached.is_cancelled() {
            return None;
        }
        let spend = self.spend();
        let budget = self.0.budget;
        Some(match (budget.max_cost_usd, budget.max_tokens) {
            (Some(max), _) if spend.cost_usd >= max => format!(
                "budget of {} reached after {}",
                usd(max),
                usd(spend.cost_usd)
            ),
            (_, Some(max)) if spend.tokens >= max => {
                format!("budget of {max} tokens reached after {}", spend.tokens)
            }
            // The only other way the budget is reached.
            _ => format!(
                "budget of {} cannot be held after {}: a model response ended with no usage CodeCourier's gateway could read",
                budget.describe(),
                usd(spend.cost_usd)
            ),
        })
    }

    /// Adds one response; `complete` when it ended whole (or its last event was read).
    fn add(
        &self,
        api: ModelApi,
        request_model: Option<String>,
        read: Option<Read>,
        complete: bool,
    ) {
        let inner = &self.0;
        let (model, mut usage, web_searches) = match read {
            Some(read) => (
                read.model
                    .or_else(|| request_model.clone())
                    .unwrap_or_else(|| "unknown".into()),
                read.usage,
                read.web_searches,
            ),
            None => (UNMETERED.to_string(), ModelUsage::default(), 0),
        };
        usage.requests = 1;
        // The response's model's price, else that of the model the launch asked for — and the
        // response is recorded under the model it was priced as, so a model's row is priced
        // throughout or not at all.
        let mut model = model;
        let price = match inner.prices.of(&model) {
            Some(price) => Some(price),
            None if model == UNMETERED => None,
            None => match request_model
                .as_deref()
                .and_then(|m| Some((m, inner.prices.of(m)?)))
            {
                Some((priced_as, price)) => {
                    model = priced_as.to_string();
                    Some(price)
                }
                None => None,
            },
        };
        usage.cost_usd = price.map(|price| price.cost(&usage, web_searches));
        // One addition at a time (the watch's lock), so the check against the budget sees each.
        inner.spend.send_modify(|spend| {
            spend.requests += 1;
            spend.cost_usd += usage.cost_usd.unwrap_or(0.0);
            spend.tokens = spend.tokens.saturating_add(usage.tokens());
            if model == UNMETERED {
                spend.unmetered += 1;
            } else if usage.cost_usd.is_none() && !spend.unpriced.contains(&model) {
                spend.unpriced.push(model.clone());
            }
            let budget = inner.budget;
            // A whole answer without usage (a chat stream asked without it, a background
            // response) was billed for what the meter cannot see: the budget cannot be held.
            let blind = model == UNMETERED && complete && budget.is_set();
            if blind
                || budget.max_cost_usd.is_some_and(|max| spend.cost_usd >= max)
                || budget.max_tokens.is_some_and(|max| spend.tokens >= max)
            {
                inner.reached.cancel();
            }
        });
        // The launch may have ended and dropped the receiver: nothing is left to record then.
        let _ = inner.records.send(MeteredResponse { api, model, usage });
    }
}

impl ModelTraffic for Meter {
    fn turns(&self, request: &ModelRequest<'_>) -> Option<Arc<Semaphore>> {
        let generates = *request.method == Method::POST && Wire::of(request.path).is_some();
        (self.0.budget.is_set() && generates).then(|| self.0.turns.clone())
    }

    fn admit(&self, request: &ModelRequest<'_>) -> Result<(), Refusal> {
        if let Some(words) = self.reached_words() {
            return Err(Refusal {
                status: REFUSED,
                message: format!(
                    "{words}: CodeCourier's gateway sends no more model requests for this launch"
                ),
            });
        }
        let post = *request.method == Method::POST;
        // A call the meter cannot read (a batch, an embedding) would spend past any budget.
        if self.0.budget.is_set()
            && post
            && Wire::of(request.path).is_none()
            && !Wire::is_free(request.path)
        {
            return Err(Refusal {
                status: REFUSED,
                message: format!(
                    "{} is not an endpoint CodeCourier's gateway can meter, so a launch with a budget may not call it",
                    request.path
                ),
            });
        }
        // A background response goes on being billed where the meter never sees it, even after
        // the launch ends.
        if self.0.budget.is_set()
            && post
            && Wire::of(request.path) == Some(Wire::Responses)
            && !in_foreground(request.body)
        {
            return Err(Refusal {
                status: REFUSED,
                message: "a launch with a budget may not run a response in the background: CodeCourier's gateway meters only the answers it forwards".to_string(),
            });
        }
        if self.0.budget.max_cost_usd.is_some() && post {
            let model = requested_model(request.body);
            // Unread (two `model` keys, none), it could be any model upstream takes.
            if model.is_none() && Wire::of(request.path).is_some() {
                return Err(Refusal {
                    status: REFUSED,
                    message: "a launch with a budget in dollars may send only requests that name one model, as a JSON string, so that CodeCourier's gateway can price it".to_string(),
                });
            }
            if let Some(model) = model {
                if self.0.prices.of(&model).is_none() {
                    return Err(Refusal {
                        status: REFUSED,
                        message: format!(
                            "{model} has no price in CodeCourier's catalog, so a launch with a budget in dollars may not call it; choose a priced model or a budget in tokens"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    fn observe(
        &self,
        request: &ModelRequest<'_>,
        status: StatusCode,
    ) -> Option<Box<dyn ResponseObserver>> {
        // An error, a listing or a token count is not charged for.
        let wire = Wire::of(request.path)?;
        if !status.is_success() || *request.method != Method::POST {
            return None;
        }
        Some(Box::new(Observer {
            meter: self.clone(),
            api: request.api,
            request_body: request.body.clone(),
            reader: Some(UsageReader::new(wire)),
        }))
    }
}

/// A refusal's status: 400 (`invalid_request_error` in each API's shape), which every CLI shows
/// and none retries (they retry 429 and 5xx, and some 401); not 401 or 403, which the launch
/// would report as a rejected key.
const REFUSED: StatusCode = StatusCode::BAD_REQUEST;

/// The `model` a request body names, if it is a JSON object that names one.
fn requested_model(body: &Bytes) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Named {
        model: Option<String>,
    }
    serde_json::from_slice::<Named>(body).ok()?.model
}

/// Whether a Responses request runs in the foreground: `background` absent or false, read
/// strictly (two `background` keys, or one that is not a boolean, is not).
fn in_foreground(body: &Bytes) -> bool {
    #[derive(serde::Deserialize)]
    struct Background {
        background: Option<bool>,
    }
    serde_json::from_slice::<Background>(body).is_ok_and(|b| b.background != Some(true))
}

/// Reads one response's usage as it is forwarded, and adds it to the meter when the usage is
/// final or the response ends, whichever comes first.
struct Observer {
    meter: Meter,
    api: ModelApi,
    /// The request's body, read for its model only when the response names none.
    request_body: Bytes,
    /// None once added.
    reader: Option<UsageReader>,
}

impl Observer {
    fn add(&mut self, complete: bool) {
        let Some(reader) = self.reader.take() else {
            return;
        };
        let read = match reader.finish() {
            Ok(read) => Some(read),
            Err(why) => {
                tracing::warn!(
                    api = self.api.path_segment(),
                    "gateway: a model response was not metered ({why}); it counts as a request without tokens"
                );
                None
            }
        };
        // The request's model names or prices the response only when the response cannot.
        let prices = &self.meter.0.prices;
        let needs_request_model = read
            .as_ref()
            .is_none_or(|read| read.model.as_deref().is_none_or(|m| prices.of(m).is_none()));
        let request_model = needs_request_model
            .then(|| requested_model(&self.request_body))
            .flatten();
        self.meter.add(self.api, request_model, read, complete);
    }
}

impl ResponseObserver for Observer {
    fn chunk(&mut self, bytes: &[u8]) {
        if let Some(reader) = self.reader.as_mut() {
            if reader.push(bytes) {
                self.add(true);
            }
        }
    }

    fn end(mut self: Box<Self>, complete: bool) {
        // A broken stream still cost what it counted so far.
        self.add(complete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn request<'a>(body: &'a Bytes, method: &'a Method) -> ModelRequest<'a> {
        ModelRequest {
            api: ModelApi::Anthropic,
            method,
            path: "/v1/messages",
            body,
        }
    }

    fn respond(meter: &Meter, body: &Bytes, response: &str) {
        let post = Method::POST;
        let mut observer = meter
            .observe(&request(body, &post), StatusCode::OK)
            .expect("observed");
        observer.chunk(response.as_bytes());
        observer.end(true);
    }

    const RESPONSE: &str =
        r#"{"model":"claude-sonnet-4-6","usage":{"input_tokens":100,"output_tokens":20}}"#;

    #[test]
    fn the_request_after_the_one_that_reached_the_budget_is_refused() {
        let budget = Budget {
            max_cost_usd: Some(0.0012),
            max_tokens: None,
        };
        let (meter, mut records) = Meter::new(Catalog::built_in().prices, budget);
        let body = Bytes::from_static(br#"{"model":"claude-sonnet-4-6"}"#);
        let post = Method::POST;
        respond(&meter, &body, RESPONSE);
        assert!(meter.admit(&request(&body, &post)).is_ok());
        assert!(!meter.reached().is_cancelled());
        respond(&meter, &body, RESPONSE);
        assert!(meter.reached().is_cancelled());
        let refusal = meter.admit(&request(&body, &post)).unwrap_err();
        assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
        assert!(
            refusal
                .message
                .starts_with("budget of $0.0012 reached after $0.0012"),
            "{}",
            refusal.message
        );
        let first = records.try_recv().unwrap();
        assert_eq!(first.model, "claude-sonnet-4-6");
        assert_eq!(first.usage.requests, 1);
        assert!((first.usage.cost_usd.unwrap() - 0.0006).abs() < 1e-12);
    }

    #[test]
    fn a_token_budget_counts_every_kind_of_token() {
        let budget = Budget {
            max_cost_usd: None,
            max_tokens: Some(240),
        };
        let (meter, _records) = Meter::new(Prices::default(), budget);
        let body = Bytes::from_static(br#"{"model":"mystery-1"}"#);
        respond(
            &meter,
            &body,
            r#"{"usage":{"input_tokens":100,"output_tokens":10,"cache_read_input_tokens":9}}"#,
        );
        assert_eq!(meter.spend().tokens, 119);
        assert_eq!(meter.spend().unpriced, ["mystery-1"]);
        respond(
            &meter,
            &body,
            r#"{"usage":{"input_tokens":100,"output_tokens":10,"cache_creation_input_tokens":11}}"#,
        );
        assert_eq!(
            meter.reached_words().as_deref(),
            Some("budget of 240 tokens reached after 240")
        );
    }

    #[test]
    fn a_dollar_budget_refuses_a_model_without_a_price() {
        let budget = Budget {
            max_cost_usd: Some(1.0),
            max_tokens: None,
        };
        let (meter, _records) = Meter::new(Catalog::built_in().prices, budget);
        let post = Method::POST;
        let body = Bytes::from_static(br#"{"model":"gpt-9-unpriced"}"#);
        let refusal = meter.admit(&request(&body, &post)).unwrap_err();
        assert!(
            refusal.message.contains("gpt-9-unpriced has no price"),
            "{}",
            refusal.message
        );
        let body = Bytes::from_static(br#"{"model":"claude-haiku-4-5"}"#);
        assert!(meter.admit(&request(&body, &post)).is_ok());
    }

    #[test]
    fn usage_a_request_claims_for_itself_counts_for_nothing() {
        let (meter, _records) = Meter::new(Catalog::built_in().prices, Budget::default());
        let body = Bytes::from_static(
            br#"{"model":"claude-sonnet-4-6","usage":{"input_tokens":-99999999,"output_tokens":-5}}"#,
        );
        respond(&meter, &body, RESPONSE);
        let spend = meter.spend();
        assert_eq!((spend.requests, spend.tokens), (1, 120));
    }

    fn generation<'a>(path: &'a str, body: &'a Bytes, method: &'a Method) -> ModelRequest<'a> {
        ModelRequest {
            api: ModelApi::OpenAi,
            method,
            path,
            body,
        }
    }

    fn dollars(max: f64) -> Budget {
        Budget {
            max_cost_usd: Some(max),
            max_tokens: None,
        }
    }

    #[test]
    fn under_a_budget_a_whole_answer_without_usage_stops_the_launch() {
        let post = Method::POST;
        // A Chat Completions stream asked without `stream_options.include_usage`, and a Responses
        // call run in the background (`usage: null` now, billed later): each ends whole, unread.
        let cases = [
            (
                "/v1/chat/completions",
                r#"{"model":"google/gemini-2.5-pro","stream":true}"#,
                "data: {\"model\":\"google/gemini-2.5-pro\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n",
            ),
            (
                "/v1/responses",
                r#"{"model":"gpt-5.4","background":true}"#,
                r#"{"id":"resp_1","status":"queued","model":"gpt-5.4","usage":null}"#,
            ),
        ];
        for (path, body, answer) in cases {
            let (meter, _records) = Meter::new(Catalog::built_in().prices, dollars(1.0));
            let body = Bytes::from(body);
            let request = generation(path, &body, &post);
            let mut observer = meter.observe(&request, StatusCode::OK).expect("observed");
            observer.chunk(answer.as_bytes());
            observer.end(true);
            assert!(
                meter.reached().is_cancelled(),
                "{path}: {:?}",
                meter.spend()
            );
            let refusal = meter.admit(&request).unwrap_err();
            assert!(
                refusal.message.contains("no usage"),
                "{path}: {}",
                refusal.message
            );
        }
    }

    #[test]
    fn a_dollar_budget_refuses_a_generation_request_whose_model_it_cannot_read() {
        let (meter, _records) = Meter::new(Catalog::built_in().prices, dollars(1.0));
        let post = Method::POST;
        // Two `model` keys: the check read neither, upstream takes one (an unpriced one).
        for body in [
            r#"{"model":"claude-haiku-4-5","model":"claude-opus-4-1"}"#,
            r#"{"max_tokens":64}"#,
        ] {
            let body = Bytes::from(body);
            let refusal = meter
                .admit(&request(&body, &post))
                .expect_err("refused while its model cannot be priced");
            assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
        }
        let count = Bytes::from_static(br#"{"messages":[]}"#);
        let free = ModelRequest {
            path: "/v1/messages/count_tokens",
            ..request(&count, &post)
        };
        assert!(meter.admit(&free).is_ok(), "counting tokens costs nothing");
    }

    #[test]
    fn a_budget_refuses_a_response_run_in_the_background() {
        let tokens = Budget {
            max_cost_usd: None,
            max_tokens: Some(10_000),
        };
        let (meter, _records) = Meter::new(Catalog::built_in().prices, tokens);
        let post = Method::POST;
        for body in [
            r#"{"model":"gpt-5.4","background":true}"#,
            r#"{"model":"gpt-5.4","background":false,"background":true}"#,
        ] {
            let body = Bytes::from(body);
            let refusal = meter
                .admit(&generation("/v1/responses", &body, &post))
                .unwrap_err();
            assert!(
                refusal.message.contains("background"),
                "{}",
                refusal.message
            );
        }
        let body = Bytes::from_static(br#"{"model":"gpt-5.4","background":false,"stream":true}"#);
        assert!(meter
            .admit(&generation("/v1/responses", &body, &post))
            .is_ok());
    }

    /// Server-side web searches bill per use, beside the tokens.
    #[test]
    fn web_searches_a_response_ran_count_against_a_dollar_budget() {
        let (meter, _records) = Meter::new(Catalog::built_in().prices, dollars(0.5));
        let body = Bytes::from_static(br#"{"model":"claude-sonnet-4-6"}"#);
        respond(
            &meter,
            &body,
            r#"{"model":"claude-sonnet-4-6","usage":{"input_tokens":100,"output_tokens":20,"server_tool_use":{"web_search_requests":100}}}"#,
        );
        assert!(
            meter.spend().cost_usd >= 1.0,
            "100 searches cost $1.00, metered {}",
            meter.spend().cost_usd
        );
    }

    #[test]
    fn a_response_priced_as_its_request_s_model_is_recorded_under_that_model() {
        let (meter, mut records) = Meter::new(Catalog::built_in().prices, Budget::default());
        let asked = Bytes::from_static(br#"{"model":"claude-sonnet-4-6"}"#);
        let unknown =
            r#"{"model":"routed/mystery","usage":{"input_tokens":100,"output_tokens":20}}"#;
        respond(&meter, &asked, unknown);
        let unpriced = Bytes::from_static(br#"{"model":"other/unpriced"}"#);
        respond(&meter, &unpriced, unknown);
        let priced = records.try_recv().unwrap();
        assert_eq!(priced.model, "claude-sonnet-4-6");
        assert!(priced.usage.cost_usd.is_some());
        // The same name answered to an unpriced request stays unpriced, in a row of its own.
        let other = records.try_recv().unwrap();
        assert_eq!(
            (other.model.as_str(), other.usage.cost_usd),
            ("routed/mystery", None)
        );
    }

    #[test]
    fn a_response_without_usage_counts_as_an_unmetered_request() {
        let (meter, mut records) = Meter::new(Catalog::built_in().prices, Budget::default());
        let body = Bytes::from_static(br#"{"model":"claude-sonnet-4-6"}"#);
        respond(&meter, &body, "<html>not an API</html>");
        assert_eq!(meter.spend().unmetered, 1);
        let record = records.try_recv().unwrap();
        assert_eq!(
            (record.model.as_str(), record.usage.cost_usd),
            (UNMETERED, None)
        );
    }
}
