//! An unmodified Graph SDK (Microsoft's Python msgraph-sdk, base URL set to the gateway)
//! runs the action end to end and surfaces the gateway's errors as its usual ODataError.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::*;

#[tokio::test]
async fn the_python_graph_sdk_works_through_the_gateway() {
    // CI installs the SDK (.ci/run, into .ci/venv): there, a missing SDK fails this test.
    let python = python_tool("python3");
    let python = python.to_str().unwrap();
    if !require_tool(
        "Microsoft's Python Graph SDK (msgraph-sdk)",
        &[python, "-c", "import msgraph, kiota_abstractions"],
        PYTHON_INSTALL,
    ) {
        return;
    }
    let h = start().await;
    let base_url = format!("http://{}/v1.0", h.gateway);
    let mut sdk = std::process::Command::new(python);
    sdk.args([
        "tests/sdk/update_device_account.py",
        &base_url,
        ROTATOR_KEY,
        DEVICE,
        PASSWORD,
    ]);
    let (status, stdout, stderr) =
        common::process::run_async(sdk, std::time::Duration::from_secs(120)).await;
    assert!(status.success(), "{stdout}\n{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0],
        serde_json::json!({"ok": true, "result": null}),
        "204: post() returns None"
    );
    assert_eq!(lines[1]["status"], 401);
    assert_eq!(lines[1]["code"], "InvalidAuthenticationToken");
    assert!(
        lines[1]["request_id"].is_string(),
        "the SDK reads graphgate's innerError"
    );
    assert_eq!(
        lines[2]["status"], 404,
        "an unknown device: Graph's (emulated) answer passed through"
    );

    // What the SDK sent is what Graph received, on the canonical path, with the gateway's token.
    let graph = h.emulator.graph_requests();
    assert_eq!(graph.len(), 2);
    assert_eq!(graph[0].path, ACTION_PATH);
    assert_eq!(graph[0].status, 204);
    let sent: serde_json::Value = serde_json::from_str(&graph[0].body).unwrap();
    let p = &sent["updateWindowsDeviceAccountActionParameter"];
    assert_eq!(
        p["deviceAccount"]["@odata.type"],
        "#microsoft.graph.windowsDeviceAzureADAccount"
    );
    assert_eq!(
        p["sessionInitiationProtocalAddress"],
        "sip:room1@contoso.com"
    );
    assert!(
        graph[0]
            .headers
            .get("user-agent")
            .is_some_and(|ua| ua.starts_with("graphgate/"))
    );
}
