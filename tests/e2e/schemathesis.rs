//! Property-based API testing of the simplified API from the OpenAPI document the gateway
//! serves: schemathesis (from PyPI) generates valid and invalid requests for every
//! operation against a gateway on the emulator whose policy allows every operation, and
//! checks every answer (no 5xx, the documented statuses, content types and headers, Graph's
//! error JSON, valid data accepted and invalid data refused); the emulator, which checks
//! every request against Microsoft's CSDL, must have refused nothing the gateway forwarded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::{catalog, common};

use std::time::Duration;

/// Statuses that count as refusing invalid data: schemathesis's own list plus the
/// gateway's 413 (body too large) and 414 (path too long), which are refusals too.
const CONFIG: &str = "[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 414, 415, 422, 428, 429]
";

#[tokio::test]
async fn schemathesis_finds_nothing_wrong_with_the_simplified_api() {
    // CI installs schemathesis (.ci/run, into .ci/venv): there, a missing one fails this test.
    let schemathesis = common::python_tool("schemathesis");
    if !common::require_tool(
        "schemathesis",
        &[schemathesis.to_str().unwrap(), "--version"],
        common::PYTHON_INSTALL,
    ) {
        return;
    }
    let h = catalog::start().await;
    let dir = common::temp_dir("schemathesis");
    let config = dir.join("schemathesis.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let seed = std::env::var("GRAPHGATE_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let mut run = std::process::Command::new(&schemathesis);
    run.current_dir(&dir)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("http://{}/api/v1/openapi.json", h.gateway)])
        .args(["-H", &format!("Authorization: Bearer {}", catalog::KEY)])
        .args(["--checks", "all", "--phases", "coverage,fuzzing"])
        // Bounded and reproducible: a few examples per operation, a fixed seed (another
        // with GRAPHGATE_SCHEMATHESIS_SEED, to explore by hand).
        .args(["--max-examples", "5", "--seed", &seed])
        .args([
            "--generation-database",
            "none",
            "--no-color",
            "--workers",
            "2",
        ])
        .args(["--request-timeout", "10"]);
    let (status, stdout, stderr) = common::process::run_async(run, Duration::from_secs(150)).await;
    assert!(
        status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    // Every operation, and the approval API's six (list, show, approve, reject, review, cancel).
    let tested = format!(
        "Tested: {}",
        graphgate::operation::catalog::CATALOG.len() + 6
    );
    assert!(
        stdout.contains(&tested),
        "every operation was tested:\n{stdout}"
    );
    // Nothing invalid was forwarded: the emulator's CSDL check refused none of it.
    let sent = h.emulator.graph_requests();
    assert!(!sent.is_empty(), "valid requests reached Graph");
    let refused: Vec<_> = sent
        .iter()
        .filter(|r| r.status == 400 || r.status >= 500)
        .map(|r| format!("{} {} -> {}: {}", r.method, r.path, r.status, r.body))
        .collect();
    assert!(
        refused.is_empty(),
        "the emulator refused what the gateway forwarded: {refused:#?}"
    );
    h.shut_down().await;
}
