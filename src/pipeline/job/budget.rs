//! A job's budget: what a whole run, or a whole chain, may spend as the gateway metered it. It is
//! checked before every step, and what is left is each step's own launch budget, so the gateway
//! stops a step that would cross it.

use crate::catalog::{usd, Budget};
use crate::ids::JobId;
use crate::store::{JobRecord, ModelUsage, Store, Work};

/// The budget a job's steps share, and whose spend it counts.
pub(super) struct JobBudget {
    usd: Option<f64>,
    tokens: Option<u64>,
    /// A chain's runs count the whole chain's spend.
    scope: JobId,
}

/// What a step may still spend: its own launch budget.
pub(super) type Left = Budget;

impl JobBudget {
    /// The job's budget, from its workflow as it was when the job started; none without one.
    pub(super) fn of(record: &JobRecord) -> Option<Self> {
        let budget = record.workflow.budget();
        if !budget.is_set() {
            return None;
        }
        let scope = match &record.work {
            Work::Run(run) => run.work_chain_id.map_or(JobId::Run(run.id), JobId::Chain),
            Work::Chain(chain) => JobId::Chain(chain.id),
        };
        Some(Self {
            usd: budget.max_cost_usd,
            tokens: budget.max_tokens,
            scope,
        })
    }

    /// What is left, or why nothing is: "budget of $2.00 for the whole run reached after $2.13".
    pub(super) async fn left(&self, store: &Store) -> anyhow::Result<Result<Left, String>> {
        let spent = store.job_usage(self.scope).await?;
        Ok(self.left_after(&spent))
    }

    fn left_after(&self, spent: &ModelUsage) -> Result<Left, String> {
        let whole = match self.scope {
            JobId::Run(_) => "the whole run",
            JobId::Chain(_) => "the whole chain",
        };
        let cost = spent.cost_usd.unwrap_or(0.0);
        if let Some(max) = self.usd.filter(|max| cost >= *max) {
            return Err(format!(
                "budget of {} for {whole} reached after {}",
                usd(max),
                usd(cost)
            ));
        }
        let tokens = spent.tokens();
        if let Some(max) = self.tokens.filter(|max| tokens >= *max) {
            return Err(format!(
                "budget of {max} tokens for {whole} reached after {tokens}"
            ));
        }
        Ok(Left {
            max_cost_usd: self.usd.map(|max| max - cost),
            max_tokens: self.tokens.map(|max| max - tokens),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::WorkflowRunId;

    fn budget(usd: Option<f64>, tokens: Option<u64>, scope: JobId) -> JobBudget {
        JobBudget { usd, tokens, scope }
    }

    fn spent(cost: f64, tokens: u64) -> ModelUsage {
        ModelUsage {
            input_tokens: tokens,
            cost_usd: Some(cost),
            ..Default::default()
        }
    }

    #[test]
    fn what_is_left_is_the_budget_less_the_spend_until_it_is_reached() {
        let run = JobId::Run(WorkflowRunId::new());
        let b = budget(Some(2.0), Some(1000), run);
        assert_eq!(
            b.left_after(&spent(0.5, 400)),
            Ok(Left {
                max_cost_usd: Some(1.5),
                max_tokens: Some(600)
            })
        );
        assert_eq!(
            b.left_after(&spent(2.13, 10)),
            Err("budget of $2.00 for the whole run reached after $2.13".into())
        );
        assert_eq!(
            b.left_after(&spent(0.1, 1000)),
            Err("budget of 1000 tokens for the whole run reached after 1000".into())
        );
        let chain = JobId::Chain(crate::ids::WorkChainId::new());
        let only_usd = budget(Some(1.0), None, chain);
        assert_eq!(
            only_usd.left_after(&spent(0.25, 1_000_000)),
            Ok(Left {
                max_cost_usd: Some(0.75),
                max_tokens: None
            })
        );
        assert!(only_usd
            .left_after(&spent(1.0, 0))
            .unwrap_err()
            .contains("the whole chain"));
    }
}
