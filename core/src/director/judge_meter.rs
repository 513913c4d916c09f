//! The judge's spending, counted like a teacher's: every call is quoted and reserved against
//! `max_cost_usd` before it is made, settled at the usage the judge reports, and — when it cost
//! anything — recorded in the ledger (so that a resumed run still counts it, and the report shows
//! it apart).
//!
//! The director hands every part of the run (rounds, tournaments, seed prompts) this judge in
//! place of the experiment's, so no call escapes the budget.

use crate::budget::Budget;
use crate::lock;
use crate::store::{JudgeCallKind, RunDir};
use evolve_sdk::{
    CompareRequest, Cost, ExpandRequest, Judge, JudgeCall, Limits, Metered, MutateRequest, PluginError, Usage, Verdict,
};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// A judge whose calls are paid for out of the run's budget.
pub struct MeteredJudge {
    inner: Arc<dyn Judge>,
    budget: Arc<Mutex<Budget>>,
    run: Arc<Mutex<RunDir>>,
    /// Told whenever one of this judge's calls gives money back (settled below its quote).
    settled: Notify,
}

/// How long a call waiting for money re-checks without being told (a teacher's settlement,
/// which does not tell this judge, may also have freed some).
const MONEY_RECHECK: Duration = Duration::from_millis(200);

impl MeteredJudge {
    /// `inner`, paid for out of `budget`, its calls recorded in `run`'s ledger.
    pub fn new(inner: Arc<dyn Judge>, budget: Arc<Mutex<Budget>>, run: Arc<Mutex<RunDir>>) -> MeteredJudge {
        MeteredJudge { inner, budget, run, settled: Notify::new() }
    }

    async fn paid<T>(
        &self,
        call: JudgeCall,
        kind: JudgeCallKind,
        make: impl Future<Output = Result<Metered<T>, PluginError>>,
    ) -> Result<Metered<T>, PluginError> {
        let quote = self.inner.quote(call);
        // Calls are quoted above what they usually cost: while others are in flight, money may
        // come back, so a call that does not fit waits for them rather than failing at once.
        let reservation = loop {
            let (reserved, in_flight) = {
                let mut budget = lock(&self.budget);
                (budget.reserve_cost(quote), budget.reserved_cost() > Cost::ZERO)
            };
            match reserved {
                Some(reservation) => break reservation,
                None if in_flight => {
                    let _ = tokio::time::timeout(MONEY_RECHECK, self.settled.notified()).await;
                }
                None => {
                    return Err(PluginError::Failed(format!(
                        "max_cost_usd leaves no room for a judge call quoted at ${:.6}",
                        quote.micro_usd as f64 / 1e6
                    )));
                }
            }
        };
        let result = make.await;
        // A call that may have been billed without an answer is charged at its quote.
        let (usage, failed) = match &result {
            Ok(metered) => (metered.usage, false),
            Err(PluginError::Billed(_) | PluginError::Uncertain(_)) => {
                (Usage { cost: quote, ..Usage::default() }, true)
            }
            Err(_) => {
                lock(&self.budget).release(reservation);
                self.settled.notify_waiters();
                return result;
            }
        };
        lock(&self.budget).settle(reservation, usage.cost);
        self.settled.notify_waiters();
        // A free judge's calls are not written down: nothing to count, and a write per call
        // would slow its rounds.
        if usage.cost > Cost::ZERO {
            let recorded = crate::blocking(|| lock(&self.run).ledger.record_judge_call(kind, &usage, failed));
            if let Err(error) = recorded {
                // Counted in this process's budget all the same; only a resume would miss it.
                tracing::warn!(%error, "a judge call's cost was not recorded");
            }
        }
        result
    }
}

#[evolve_sdk::async_trait]
impl Judge for MeteredJudge {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn compare(&self, request: &CompareRequest) -> Result<Verdict, PluginError> {
        Ok(self.compare_metered(request).await?.value)
    }

    async fn expand(&self, request: &ExpandRequest) -> Result<Vec<String>, PluginError> {
        Ok(self.expand_metered(request).await?.value)
    }

    async fn mutate(&self, request: &evolve_sdk::MutateRequest) -> Result<String, PluginError> {
        Ok(self.mutate_metered(request).await?.value)
    }

    fn quote(&self, call: JudgeCall) -> Cost {
        self.inner.quote(call)
    }

    async fn compare_metered(&self, request: &CompareRequest) -> Result<Metered<Verdict>, PluginError> {
        let call = JudgeCall::Compare { images: request.images.len() };
        self.paid(call, JudgeCallKind::Compare, self.inner.compare_metered(request)).await
    }

    async fn expand_metered(&self, request: &ExpandRequest) -> Result<Metered<Vec<String>>, PluginError> {
        let call = JudgeCall::Expand { n: request.n };
        self.paid(call, JudgeCallKind::Expand, self.inner.expand_metered(request)).await
    }

    async fn mutate_metered(&self, request: &MutateRequest) -> Result<Metered<String>, PluginError> {
        self.paid(JudgeCall::Mutate, JudgeCallKind::Mutate, self.inner.mutate_metered(request)).await
    }
}
