//! The state store's metrics, registered with the process registry ([`crate::metrics`]):
//! latency by operation, errors by kind, and budget use by budget name. Labels are bounded:
//! operations and kinds are fixed sets, budget names come from the policy (a caller, a rule
//! or a catalog operation), never from a request.

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::TypedMetric;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Metric;

use super::StoreError;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabel {
    budget: String,
}

struct StateMetrics {
    duration: Family<OpLabel, Histogram>,
    errors: Family<KindLabel, Counter>,
    budget_used: Family<BudgetLabel, Gauge>,
    budget_limit: Family<BudgetLabel, Gauge>,
}

fn latency() -> Histogram {
    // 50 us .. ~3 s
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

static STATE: LazyLock<StateMetrics> = LazyLock::new(|| StateMetrics {
    duration: Family::new_with_constructor(latency as fn() -> Histogram),
    errors: Family::default(),
    budget_used: Family::default(),
    budget_limit: Family::default(),
});

/// What the state metrics are registered with: the process registry, which notes each
/// metric's sample names (`crate::metrics` implements it; the trait keeps this module from
/// depending on that one, which calls it).
pub(crate) trait Register {
    /// Registers `metric` as `name`.
    fn register<M: Metric + TypedMetric>(&mut self, name: &str, help: &str, metric: M);
}

/// Adds the state metrics to the process registry.
pub(crate) fn register(r: &mut impl Register) {
    r.register(
        "graphgate_state_store_duration_seconds",
        "Time of one state store operation (claim, poll, finish, release, limit, admit, refund, ping), failed ones included",
        STATE.duration.clone(),
    );
    r.register(
        "graphgate_state_store_errors",
        "State store operations that failed, by kind (timeout, connection, auth, response, file); each refused its request",
        STATE.errors.clone(),
    );
    r.register(
        "graphgate_budget_used",
        "Devices counted against each budget in its current window, as this replica last saw it",
        STATE.budget_used.clone(),
    );
    r.register(
        "graphgate_budget_limit",
        "Each budget's limit per window",
        STATE.budget_limit.clone(),
    );
}

/// Runs one store operation, recording its latency and, if it fails, its kind.
pub(crate) async fn timed<T>(
    op: &'static str,
    fut: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = crate::clock::Instant::now();
    let result = fut.await;
    observe(op, started.elapsed(), result.as_ref().err());
    result
}

fn observe(op: &'static str, took: Duration, error: Option<&StoreError>) {
    STATE
        .duration
        .get_or_create(&OpLabel { op })
        .observe(took.as_secs_f64());
    if let Some(e) = error {
        STATE
            .errors
            .get_or_create(&KindLabel {
                kind: e.kind().as_str(),
            })
            .inc();
    }
}

/// A budget's count as last seen (`budget` is `caller:<name>`, `rule:<name>` or
/// `tenant:<operation>`).
pub fn budget(budget: &str, used: u64, limit: u32) {
    let label = BudgetLabel {
        budget: budget.to_owned(),
    };
    STATE
        .budget_used
        .get_or_create(&label)
        .set(i64::try_from(used).unwrap_or(i64::MAX));
    STATE
        .budget_limit
        .get_or_create(&label)
        .set(i64::from(limit));
}
