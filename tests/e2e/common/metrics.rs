//! Metric values, read from the Prometheus text graphgate serves. All tests of this binary
//! share one process and so one registry: a test compares a value before and after what it
//! did, exactly where the series is its own, `>=` where other tests may add to it. Exact
//! values overall come from a gateway process of its own (`tests/e2e/metrics.rs`).

/// The value of one series, e.g.
/// `graphgate_errors_total{code="upstreamUnavailable"}` (labels exactly as rendered, in
/// order), or `graphgate_token_cache_hits_total`; 0 when the series is not there yet (a
/// labelled series appears with its first increment).
pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(series)?;
            // The series must end here: `x_total` must not match `x_total_more{..}`.
            let number = rest.strip_prefix(' ')?;
            let number = number.split_whitespace().next()?;
            Some(
                number
                    .parse::<f64>()
                    .unwrap_or_else(|e| panic!("{line}: {e}")),
            )
        })
        .unwrap_or(0.0)
}

/// What this process's registry says now.
pub struct Snapshot(pub String);

impl Snapshot {
    /// The in-process registry, now.
    pub fn now() -> Snapshot {
        Snapshot(graphgate::metrics::encode())
    }

    /// The value of `series` in this snapshot (see [`value`]).
    pub fn get(&self, series: &str) -> f64 {
        value(&self.0, series)
    }

    /// How much `series` grew from `self` to `later`.
    pub fn delta(&self, later: &Snapshot, series: &str) -> f64 {
        later.get(series) - self.get(series)
    }
}

/// `graphgate_requests_total` for one label combination.
pub fn requests(operation: &str, decision: &str, status_class: &str) -> String {
    format!(
        "graphgate_requests_total{{operation=\"{operation}\",decision=\"{decision}\",status_class=\"{status_class}\"}}"
    )
}

/// `graphgate_errors_total` for one error code.
pub fn errors(code: &str) -> String {
    format!("graphgate_errors_total{{code=\"{code}\"}}")
}

/// The operation label of the harness's standard call.
pub const OP: &str = "managedDevices.updateWindowsDeviceAccount";

#[test]
fn values_are_read_per_exact_series() {
    let text =
        "# HELP x\nx_total{code=\"a\"} 3\nx_total{code=\"ab\"} 5\nx_total 7\nx_total_more 9\n";
    assert_eq!(value(text, "x_total{code=\"a\"}"), 3.0);
    assert_eq!(value(text, "x_total{code=\"ab\"}"), 5.0);
    assert_eq!(value(text, "x_total"), 7.0);
    assert_eq!(value(text, "x_total{code=\"b\"}"), 0.0);
}
