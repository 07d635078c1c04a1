//! `AZURE_AUTHORITY_HOST` end to end, through the binary as an operator runs it: the gateway
//! asks the authority host it was given (an alias of its cloud's) for its token, and an
//! authority outside its cloud stops it at start-up before anything is asked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Duration;

use common::*;
use graphgate::cloud::Cloud;
use graphgate_emulator::EmulatorConfig;

#[tokio::test]
async fn the_token_comes_from_the_authority_host_given() {
    for (cloud, authority) in [
        (Cloud::UsGov, "login.usgovcloudapi.net"),
        (Cloud::China, "login.chinacloudapi.cn"),
    ] {
        let e = cloud.endpoints();
        assert_ne!(authority, e.login_host, "an override, not the default");
        let backend = served::backend(EmulatorConfig::default()).await;
        let mut cmd = backend.serve_command();
        cmd.env("GRAPHGATE_CLOUD", e.name)
            .env("AZURE_AUTHORITY_HOST", format!("https://{authority}/"));
        let gw = backend.serve(cmd).await;
        let r = gw.post(ACTION_PATH, ROTATOR_KEY, &body()).await;
        assert_eq!(r.status, 204, "{cloud}: {:?}", r.body);
        let tokens = backend.emulator.token_requests();
        assert!(!tokens.is_empty(), "{cloud}");
        for t in &tokens {
            assert_eq!(t.host, authority, "{cloud}: the Host of the token request");
            assert_eq!(t.sni.as_deref(), Some(authority), "{cloud}: its SNI");
            assert_eq!(t.scope.as_deref(), Some(e.scope), "{cloud}");
            assert_eq!(t.status, 200, "{cloud}: {t:?}");
        }
        let graph = backend.emulator.graph_requests();
        assert_eq!(graph.len(), 1);
        assert_eq!(graph[0].host, e.graph_host);
        assert_eq!(graph[0].token_claims.as_ref().unwrap()["aud"], e.resource);
        let (status, out) = gw.terminate().await;
        assert!(status.success(), "{out}");
        // The start-up line names the authority in use.
        let configured = out
            .lines()
            .find(|l| l.contains("\"message\":\"gateway configured\""))
            .unwrap_or_else(|| panic!("no 'gateway configured' line:\n{out}"));
        let v: serde_json::Value = serde_json::from_str(configured).unwrap();
        assert_eq!(v["authority"], authority, "{configured}");
    }
}

#[tokio::test]
async fn an_authority_outside_the_cloud_stops_the_start() {
    let backend = served::backend(EmulatorConfig::default()).await;
    for (cloud, authority) in [
        ("global", "https://login.microsoftonline.us"),
        ("us-gov", "https://login.microsoftonline.com/"),
        ("china", "https://login.microsoftonline.com"),
        ("global", "https://login.evil.example"),
    ] {
        let mut cmd = backend.serve_command();
        cmd.env("GRAPHGATE_CLOUD", cloud)
            .env("AZURE_AUTHORITY_HOST", authority);
        let (status, out, err) = process::run_async(cmd, Duration::from_secs(30)).await;
        assert!(
            !status.success(),
            "{cloud} {authority}: started\n{out}{err}"
        );
        assert!(
            err.contains("AZURE_AUTHORITY_HOST")
                && err.contains(&format!("is not an authority of the {cloud} cloud")),
            "{cloud} {authority}: {err}"
        );
        assert!(
            !out.contains("graphgate listening"),
            "{cloud} {authority}: it listened\n{out}"
        );
    }
    assert_eq!(
        backend.emulator.token_request_count(),
        0,
        "nothing was asked of any authority"
    );
}
