//! Model prices: what a million tokens of each kind cost, per model as its API names it. The
//! gateway prices what it metered with them; a model without a price is counted in tokens only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::ModelUsage;

/// US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Input tokens read fresh (not from the cache).
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cache_read: f64,
    #[serde(default)]
    pub cache_write: f64,
    /// Dollars per server-side web search (Anthropic bills $10 per 1,000).
    #[serde(default)]
    pub web_search: f64,
}

impl Price {
    /// What `usage` and `web_searches` cost at this price.
    pub fn cost(&self, usage: &ModelUsage, web_searches: u64) -> f64 {
        let million = |tokens: u64, per_million: f64| tokens as f64 * per_million / 1_000_000.0;
        million(usage.input_tokens, self.input)
            + million(usage.output_tokens, self.output)
            + million(usage.cache_read_tokens, self.cache_read)
            + million(usage.cache_write_tokens, self.cache_write)
            + web_searches as f64 * self.web_search
    }

    fn check(&self) -> Result<(), String> {
        let all = [
            self.input,
            self.output,
            self.cache_read,
            self.cache_write,
            self.web_search,
        ];
        if all.iter().all(|p| p.is_finite() && *p >= 0.0) {
            Ok(())
        } else {
            Err("needs prices of zero or more".into())
        }
    }
}

/// Prices by model id as the API names it (`claude-sonnet-4-6`, `google/gemini-2.5-pro`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Prices(BTreeMap<String, Price>);

impl Prices {
    /// The price of a model as the catalog and a launch name it: OpenCode's ids carry their
    /// provider (`openrouter/google/…`), which the requests themselves leave out.
    pub fn of_launch_model(&self, model: &str) -> Option<&Price> {
        self.of(model)
            .or_else(|| model.strip_prefix("openrouter/").and_then(|m| self.of(m)))
    }

    /// The price of `model`: its own, else that of the model it is a dated snapshot of
    /// (`claude-sonnet-4-6-20260115`, `gpt-5.4-2026-03-05` take the undated model's price).
    pub fn of(&self, model: &str) -> Option<&Price> {
        if let Some(price) = self.0.get(model) {
            return Some(price);
        }
        self.0
            .iter()
            .filter(|(name, _)| {
                model
                    .strip_prefix(name.as_str())
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|date| {
                        !date.is_empty() && date.bytes().all(|b| b.is_ascii_digit() || b == b'-')
                    })
            })
            .max_by_key(|(name, _)| name.len())
            .map(|(_, price)| price)
    }

    pub(super) fn check(&self) -> anyhow::Result<()> {
        for (model, price) in &self.0 {
            price
                .check()
                .map_err(|e| anyhow::anyhow!("prices.{model} {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices() -> Prices {
        let price = |input| Price {
            input,
            output: 15.0,
            cache_read: 0.3,
            cache_write: 3.75,
            web_search: 0.01,
        };
        Prices(BTreeMap::from([
            ("claude-sonnet-4-6".to_string(), price(3.0)),
            ("gpt-5.4".to_string(), price(1.0)),
        ]))
    }

    #[test]
    fn a_dated_snapshot_takes_its_model_s_price_and_nothing_else_does() {
        let prices = prices();
        assert_eq!(prices.of("claude-sonnet-4-6").unwrap().input, 3.0);
        assert_eq!(prices.of("claude-sonnet-4-6-20260115").unwrap().input, 3.0);
        assert_eq!(prices.of("gpt-5.4-2026-03-05").unwrap().input, 1.0);
        assert!(prices.of("gpt-5.4-mini").is_none());
        assert!(prices.of("claude-sonnet-4-6-").is_none());
        assert!(prices.of("claude-sonnet-4").is_none());
    }

    #[test]
    fn each_kind_of_token_is_priced_per_million() {
        let usage = ModelUsage {
            requests: 1,
            input_tokens: 1_000_000,
            output_tokens: 2_000_000,
            cache_read_tokens: 10_000_000,
            cache_write_tokens: 1_000_000,
            cost_usd: None,
        };
        let cost = prices().of("claude-sonnet-4-6").unwrap().cost(&usage, 0);
        assert!((cost - (3.0 + 30.0 + 3.0 + 3.75)).abs() < 1e-9, "{cost}");
    }
}
