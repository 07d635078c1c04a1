//! What a flood of refused requests writes to the log: each caller's refusals (and each
//! source's failed authentications) are logged up to `--log-refusals-per-sec`, and every
//! line left out is counted, on the next line written for the same caller or source and in
//! `graphgate_log_suppressed_total` (read from the gateway process of this test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use crate::common;
use common::metrics::value;
use common::*;

/// The JSON log lines of refused requests in `out`, with their `log.suppressed` counts.
fn refusal_lines(out: &str, code: &str) -> (usize, u64) {
    let mut lines = 0;
    let mut counted = 0;
    for line in out.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let fields = &v;
        let message = fields["message"].as_str().unwrap_or_default();
        if message == "request refused or failed" && fields["error.code"] == code {
            lines += 1;
            counted += fields["log.suppressed"].as_u64().unwrap_or(0);
        }
        if message.starts_with("log lines of refused requests left out") {
            let reason = fields["log.reason"].as_str().unwrap_or_default();
            let ours = (code == "accessDenied" && reason == "refusal")
                || (code == "InvalidAuthenticationToken" && reason == "unauthenticated");
            if ours {
                counted += fields["log.suppressed"].as_u64().unwrap();
            }
        }
    }
    (lines, counted)
}

#[tokio::test]
async fn a_flood_of_refusals_logs_a_bounded_number_of_lines_counting_the_rest() {
    let backend = served::backend(graphgate_emulator::EmulatorConfig::default()).await;
    let mut cmd = backend.serve_command();
    cmd.env("GRAPHGATE_LOG_REFUSALS_PER_SEC", "5");
    let gw = backend.serve(cmd).await;
    let before = gw.metrics().await;
    let n = 200;
    let started = Instant::now();
    for _ in 0..n {
        gw.post(ACTION_PATH, OTHER_KEY, &body())
            .await
            .assert_graph_error(403, "accessDenied");
        gw.post(ACTION_PATH, "wrong-key", &body())
            .await
            .assert_graph_error(401, "InvalidAuthenticationToken");
    }
    let took = started.elapsed().as_secs_f64();
    // The allowed call is logged as always.
    assert_eq!(gw.post(ACTION_PATH, ROTATOR_KEY, &body()).await.status, 204);
    let after = gw.metrics().await;
    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");

    let bound = (5.0 + 5.0 * took.ceil()) as usize;
    for (code, reason) in [
        ("accessDenied", "refusal"),
        ("InvalidAuthenticationToken", "unauthenticated"),
    ] {
        let (lines, counted) = refusal_lines(&out, code);
        assert!(
            lines >= 1 && lines <= bound,
            "{lines} lines of {code} in {took:.2} s (at most {bound})"
        );
        let series = format!("graphgate_log_suppressed_total{{reason=\"{reason}\"}}");
        let suppressed = value(&after, &series) - value(&before, &series);
        assert_eq!(
            lines as f64 + suppressed,
            n as f64,
            "{code}: {lines} lines and {suppressed} counted by the metric"
        );
        // Every line left out is told in the log too, unless it fell after the last line
        // written for its key and before the key went quiet (the metric has it).
        assert!(
            counted as f64 <= suppressed,
            "{code}: {counted} > {suppressed}"
        );
        // (Past the first burst's fifth of a second, refilled lines carry counts.)
        if took > 0.5 {
            assert!(counted > 0, "{code}: the log says how many were left out");
        }
    }
    // The whole log of the flood stays small: about 2 KB a line before, 400 requests.
    let total = out.len();
    assert!(
        total < 200 * 1024,
        "{total} bytes of log for {} refusals",
        2 * n
    );
}
