//! What a new operator meets at start-up: listeners that would expose the gateway by
//! mistake are refused, a busy port names its flag, overrides meant for tests are warned
//! about, the emulator banner suggests only a key the policy accepts, an admin listener off
//! loopback keeps the policy hash and reload errors out of `/readyz`, and `serve
//! --check-config` names every problem at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::cli::{Served, graphgate};
use crate::common;

use common::*;

fn fails_with(args: &[&str]) -> String {
    let out = graphgate(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} must not start: {err}");
    err
}

#[test]
fn listeners_that_would_expose_the_gateway_are_refused() {
    let admin = ["--admin-listen", "127.0.0.1:0"];
    let err = fails_with(
        &[
            &["serve", "--emulator", "--listen", "0.0.0.0:0"][..],
            &admin,
        ]
        .concat(),
    );
    assert!(
        err.contains("refusing --emulator on 0.0.0.0:0") && err.contains("--listen"),
        "{err}"
    );
    let err = fails_with(&[&["serve", "--listen", "0.0.0.0:0"][..], &admin].concat());
    assert!(err.contains("refusing plain HTTP on 0.0.0.0:0"), "{err}");
    // The flag that allows it does: start-up then stops at the next problem (no tenant).
    let err = fails_with(
        &[
            &[
                "serve",
                "--listen",
                "0.0.0.0:0",
                "--allow-insecure-listener",
            ][..],
            &admin,
        ]
        .concat(),
    );
    assert!(err.contains("AZURE_TENANT_ID"), "{err}");
}

/// A `--maa-justify` name that is not an operation Multi Admin Approval can hold (a typo, a
/// read) is refused at start like any bad flag (exit 2), naming the valid operations; so is
/// the same mistake in GRAPHGATE_MAA_JUSTIFY, and an emulator `--maa` name that is no action.
#[test]
fn an_unknown_maa_justify_name_is_refused_with_the_valid_ones() {
    let refused = |cmd: &mut std::process::Command| {
        let (status, _, err) = process::run(cmd, std::time::Duration::from_secs(10));
        assert_eq!(status.code(), Some(2), "{err}");
        err
    };
    // --check-config: a start that accepted the names would end at once, not serve.
    let serve = ["serve", "--emulator", "--check-config", "--maa-handling"];
    let err = refused(&mut graphgate(
        &[
            &serve[..],
            &["--maa-justify", "managedDevices.wipe,managedDevices.wype"],
        ]
        .concat(),
    ));
    assert!(
        err.contains(
            "'managedDevices.wype' is not an operation (did you mean managedDevices.wipe?)"
        ),
        "{err}"
    );
    for valid in [
        "managedDevices.retire",
        "managedDevices.delete",
        "users.removeAllDevicesFromManagement",
    ] {
        assert!(err.contains(valid), "{valid} listed: {err}");
    }
    assert!(
        !err.contains("getFileVaultKey"),
        "a read is not listed: {err}"
    );
    let err =
        refused(graphgate(&serve).env("GRAPHGATE_MAA_JUSTIFY", "managedDevices.getFileVaultKey"));
    assert!(
        err.contains(
            "'managedDevices.getFileVaultKey' is a read, which Multi Admin Approval never holds"
        ),
        "{err}"
    );
    // The emulator's own names are Graph's action names (and delete).
    let err = refused(&mut graphgate(&[
        "emulate",
        "--listen",
        "127.0.0.1:0",
        "--maa",
        "wipe,wype",
    ]));
    assert!(err.contains("'wype' is no action"), "{err}");
    assert!(err.contains(", retire,") && err.contains("delete"), "{err}");
}

#[test]
fn a_busy_port_names_the_address_and_the_flag() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let audit = temp_dir("busy").join("audit.jsonl");
    let audit = audit.to_str().unwrap();
    let err = fails_with(&[
        "serve",
        "--emulator",
        "--listen",
        &addr,
        "--admin-listen",
        "127.0.0.1:0",
        "--audit-log",
        audit,
    ]);
    assert!(
        err.contains(&format!(
            "cannot listen on {addr} (set by --listen / GRAPHGATE_LISTEN)"
        )),
        "{err}"
    );
    let err = fails_with(&[
        "serve",
        "--emulator",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        &addr,
        "--audit-log",
        audit,
    ]);
    assert!(
        err.contains(&format!(
            "cannot listen on {addr} (set by --admin-listen / GRAPHGATE_ADMIN_LISTEN)"
        )),
        "{err}"
    );
}

#[test]
fn test_overrides_outside_the_emulator_are_warned_about() {
    let ca = temp_dir("ca").join("extra-ca.pem");
    std::fs::write(&ca, common::pki::Ca::new("extra").pem).unwrap();
    let out = graphgate(&[
        "serve",
        "--connect-to",
        "graph.microsoft.com:443=127.0.0.1:1",
        "--extra-ca-file",
        ca.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(!out.status.success(), "no tenant configured");
    let log = String::from_utf8_lossy(&out.stdout);
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("\"WARN\"")).collect();
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("GRAPHGATE_CONNECT_TO") && l.contains("127.0.0.1:1")),
        "{log}"
    );
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("GRAPHGATE_EXTRA_CA_FILE")),
        "{log}"
    );
}

/// With `--policy`, the banner suggests no request the policy refuses: none for a policy
/// without the demo key, none for one naming the key in no rule (the old banner printed a
/// request there that the gateway then refused); `tests/e2e/demo_callers.rs` runs what a
/// policy allows.
#[test]
fn the_emulator_banner_suggests_only_a_key_the_policy_accepts() {
    let dir = temp_dir("banner");
    let mine = dir.join("mine.yaml");
    std::fs::write(&mine, policy_text()).unwrap();
    let served = Served::start(&["--policy", mine.to_str().unwrap()]);
    let banner = served.banner.concat();
    served.stop();
    assert!(!banner.contains("Bearer demo-api-key"), "{banner}");
    assert!(
        banner.contains("This policy allows no request any demo identity can make"),
        "{banner}"
    );

    let with_demo = dir.join("with-demo.yaml");
    std::fs::write(
        &with_demo,
        TestPolicy::standard()
            .caller(Caller::api_key(
                "demo",
                graphgate_emulator::demo::DEMO_API_KEY,
            ))
            .yaml(),
    )
    .unwrap();
    let served = Served::start(&["--policy", with_demo.to_str().unwrap()]);
    let commands = served.commands();
    served.stop();
    assert!(
        commands.is_empty(),
        "the key's caller has no rule: {commands:?}"
    );
}

#[tokio::test]
async fn an_admin_listener_off_loopback_keeps_the_policy_hash_and_reload_errors_out() {
    let h = start().await;
    let admin = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = admin.local_addr().unwrap().port();
    tokio::spawn(graphgate::admin::serve(
        admin,
        h.gw.clone(),
        std::future::pending(),
    ));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/readyz")
        .header("host", "admin")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let detail: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let policy = &detail["checks"]["policy"];
    assert_eq!(policy["last_reload_failed"], false, "{detail}");
    assert!(
        policy.get("version").is_none() && policy.get("last_reload_error").is_none(),
        "{detail}"
    );
    assert!(!String::from_utf8_lossy(&body).contains(&h.gw.policy_hash()));
    // On loopback, the full detail.
    let (_, full) = graphgate::admin::readiness(&h.gw).await;
    assert_eq!(full["checks"]["policy"]["version"], h.gw.policy_hash());
}

/// `serve --check-config` prints every problem of the flags, the environment and the files
/// they name at once, and exits 1; a sound configuration exits 0 and nothing starts.
#[test]
fn check_config_names_every_problem_at_once_and_starts_nothing() {
    use crate::cli::OutputWithin;
    let dir = temp_dir("check-config");
    let missing_key = dir.join("no-such-hmac.key");
    let bad_policy = dir.join("policy.yaml");
    std::fs::write(&bad_policy, "version: 1\ncallers: []\nrules:\n  - name: r\n    callers: [ghost]\n    operations: [managedDevices.wipe]\n").unwrap();
    let out = graphgate(&[
        "serve",
        "--check-config",
        "--listen",
        "0.0.0.0:8080",
        "--connect-to",
        "not-a-rule",
        "--policy",
        bad_policy.to_str().unwrap(),
        "--audit-log",
        dir.join("audit.jsonl").to_str().unwrap(),
        "--audit-hmac-key-file",
        missing_key.to_str().unwrap(),
        "--tls-cert",
        dir.join("no-cert.pem").to_str().unwrap(),
        "--tls-key",
        dir.join("no-key.pem").to_str().unwrap(),
        "--admin-tls-cert",
        dir.join("no-admin-cert.pem").to_str().unwrap(),
        "--admin-tls-key",
        dir.join("no-admin-key.pem").to_str().unwrap(),
        "--state",
        "redis://127.0.0.1:1",
        "--state-namespace",
        "rooms:desks",
        "--audit-signing-key-file",
        dir.join("no-signing.key").to_str().unwrap(),
        "--audit-checkpoint-url",
        "https://checkpoints.example/in",
        "--audit-checkpoint-token-file",
        dir.join("no-push-token").to_str().unwrap(),
        "--audit-witness",
        "not-a-witness",
        "--audit-witness",
        "https://witness.example=graphgate.test/audit+4a1c7b2e+AZ2bDkKeXXkGt0OJf2ZQkE2OXt3pDh9K+0W1oJkVwrFp",
        "--audit-witness-quorum",
        "5",
    ])
    .env("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:1")
    .env(
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        dir.join("no-collector-ca.pem"),
    )
    .output_within();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    // Each problem starts a line with `problem: ` (a policy's own list follows, indented).
    let lines = format!("\n{stdout}");
    let problems: Vec<&str> = lines.split("\nproblem: ").skip(1).collect();
    for needle in [
        "AZURE_TENANT_ID",
        "not-a-rule",
        "unknown caller \"ghost\"",
        "no-such-hmac.key",
        "no-cert.pem",
        "no-admin-cert.pem",
        "GRAPHGATE_STATE_NAMESPACE",
        "no-signing.key",
        "no-push-token",
        "no-collector-ca.pem",
        "--audit-witness not-a-witness: expected URL=PUBLIC_KEY",
        "--audit-witness https://witness.example/: malformed key",
        "--audit-witness-quorum 5 is more than the 2 witness(es) given",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "no problem names {needle}: {stdout}"
        );
    }
    assert!(!dir.join("audit.jsonl").exists(), "a check writes nothing");

    // The same settings, sound: a demo configuration checks clean and does not start.
    let out = graphgate(&[
        "serve",
        "--check-config",
        "--emulator",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--audit-log",
        dir.join("demo.jsonl").to_str().unwrap(),
    ])
    .output_within();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(!dir.join("demo.jsonl").exists(), "nothing started");
}

/// `serve --check-config` names a log a start would refuse as laundered (records, but no
/// anchor), reading it without writing; `--audit-new-tree` is the way past it.
#[test]
fn check_config_names_a_log_a_start_would_refuse_as_laundered() {
    use crate::cli::OutputWithin;
    use graphgate::audit::Entry;
    use graphgate::audit::records::chain::ChainState;
    let dir = temp_dir("check-laundered");
    let log = dir.join("audit.jsonl");
    let mut chain = ChainState::default();
    let mut text = Vec::new();
    for i in 0..3 {
        let entry = Entry {
            audit_id: format!("r{i}"),
            ..Entry::default()
        };
        text.extend(chain.seal(&entry).unwrap());
        text.push(b'\n');
    }
    std::fs::write(&log, &text).unwrap();
    let key = dir.join("hmac.key");
    let hex: String = HMAC_KEY.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&key, hex.as_bytes());
    let check = |extra: &[&str]| {
        let mut args = vec![
            "serve",
            "--check-config",
            "--emulator",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--audit-log",
            log.to_str().unwrap(),
            "--audit-hmac-key-file",
            key.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = graphgate(&args).output_within();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stdout) = check(&[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("problem: audit log")
            && stdout.contains("holds records (from seq 1) but its anchor")
            && stdout.contains("--audit-new-tree"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(&log).unwrap(),
        text,
        "the check wrote nothing"
    );
    assert!(!dir.join("audit.jsonl.anchor").exists());
    let (code, stdout) = check(&["--audit-new-tree"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(
        std::fs::read(&log).unwrap(),
        text,
        "nothing set aside by a check"
    );
}
