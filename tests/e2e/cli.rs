//! The binary as a new user runs it: `serve --emulator` and its printed curl example,
//! start-up errors, `policy check`, and that no secret ever appears in its output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_graphgate");

pub(crate) fn graphgate(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("GRAPHGATE_CLOUD")
        .env_remove("GRAPHGATE_POLICY")
        .env_remove("AZURE_TENANT_ID")
        .env_remove("AZURE_CLIENT_ID")
        .env_remove("AZURE_CLIENT_SECRET")
        .env_remove("GRAPHGATE_AUDIT_LOG")
        .env_remove("GRAPHGATE_AUDIT_HMAC_KEY_FILE")
        .env_remove("GRAPHGATE_ADMIN_LISTEN")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    cmd
}

/// A fresh temporary directory.
fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "graphgate-cli-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `serve --emulator` and the lines it printed before it was ready.
pub(crate) struct Served {
    child: Child,
    pub(crate) banner: Vec<String>,
    audit_log: std::path::PathBuf,
}

impl Served {
    pub(crate) fn start(extra: &[&str]) -> Served {
        let audit_log = temp_dir("served").join("audit.jsonl");
        let audit_arg = audit_log.to_str().unwrap().to_owned();
        let mut args = vec!["serve", "--emulator", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(&["--admin-listen", "127.0.0.1:0", "--audit-log", &audit_arg]);
        args.extend_from_slice(extra);
        let mut child = graphgate(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut banner = Vec::new();
        // The banner ends with the curl example's last line, "(cloud: ...)".
        loop {
            let mut line = String::new();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "exited early: {banner:?}"
            );
            let done = line.starts_with("  (cloud:") || line.starts_with("(cloud:");
            banner.push(line);
            if done {
                break;
            }
        }
        child.stderr = Some(stderr.into_inner());
        Served {
            child,
            banner,
            audit_log,
        }
    }

    pub(crate) fn curl(&self) -> String {
        let start = self
            .banner
            .iter()
            .position(|l| l.starts_with("curl "))
            .expect("a curl example");
        self.banner[start..]
            .iter()
            .take_while(|l| !l.trim_start().starts_with("(cloud:"))
            .map(String::as_str)
            .collect::<String>()
            .trim_end()
            .to_owned()
    }

    /// Stops the server and returns everything it wrote after the banner (the banner shows
    /// the demo key on purpose: it is the curl example).
    pub(crate) fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().unwrap();
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(
            status.success(),
            "graceful exit on SIGTERM, got {status}: {out}"
        );
        out
    }
}

fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh").arg("-c").arg(cmd).output().unwrap()
}

#[test]
fn the_printed_curl_example_returns_204() {
    let served = Served::start(&[]);
    let out = sh(&served.curl());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.starts_with("HTTP/1.1 204"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.to_ascii_lowercase().contains("request-id:"), "{text}");
    served.stop();
}

#[test]
fn no_secret_reaches_the_output() {
    let served = Served::start(&["--cloud", "us-gov"]);
    let curl = served.curl();
    // A success, a wrong key and a schema error, each carrying secrets.
    let status = |cmd: &str| {
        let out = sh(&format!("{cmd} -s -o /dev/null -w '%{{http_code}}'"));
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    };
    let password = "Pw-sentinel-61b3e2";
    let ok = curl
        .replacen("curl -i ", "curl ", 1)
        .replace("Demo-Passw0rd!", password);
    assert_eq!(status(&ok), "204");
    assert_eq!(
        status(&ok.replace("demo-api-key", "Key-sentinel-8d7a")),
        "401"
    );
    assert_eq!(status(&ok.replace("\"password\"", "\"passwort\"")), "400");
    let out = served.stop();
    for secret in [
        password,
        "Key-sentinel-8d7a",
        "demo-api-key",
        graphgate::emulator::DEMO_CLIENT_SECRET,
        "eyJ",
    ] {
        assert!(
            !out.contains(secret),
            "{secret:?} appeared in the output:\n{out}"
        );
    }
    assert!(out.contains("\"status\":204"), "requests are logged: {out}");
}

#[test]
fn start_up_errors_name_the_problem() {
    let out = graphgate(&["serve", "--cloud", "germany"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for name in ["germany", "global", "us-gov", "us-dod", "china"] {
        assert!(err.contains(name), "{err}");
    }

    let out = graphgate(&["serve", "--policy", "policy.yaml"])
        .env("AZURE_TENANT_ID", "t")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("AZURE_CLIENT_ID is not set") && err.contains("--emulator"),
        "{err}"
    );

    let dir = std::env::temp_dir().join(format!("graphgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "version: 1\ncallers: []\nrules:\n  - name: r\n    callers: [ghost]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n").unwrap();
    let out = graphgate(&[
        "serve",
        "--emulator",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--policy",
        bad.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad policy means no start");
    assert!(
        err.contains("bad.yaml:5:") && err.contains("unknown caller \"ghost\""),
        "{err}"
    );
}

#[test]
fn policy_check_exit_codes() {
    let out = graphgate(&["policy", "check", "policy.yaml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the shipped policy.yaml is valid: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));

    let dir = std::env::temp_dir().join(format!("graphgate-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("typo.yaml");
    std::fs::write(&bad, "version: 1\ncallers: []\nrulez: []\n").unwrap();
    let out = graphgate(&["policy", "check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("typo.yaml:3:") && err.contains("rulez"),
        "{err}"
    );
}

#[test]
fn hash_key_matches_what_the_gateway_compares() {
    let mut child = graphgate(&["policy", "hash-key"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"demo-api-key\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        graphgate::identity::api_key_sha256("demo-api-key")
    );
}

#[test]
fn policy_test_runs_the_shipped_fixtures_and_fails_on_a_mismatch() {
    let out = graphgate(&["policy", "test", "tests/policy-fixtures.yaml"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("8 passed, 0 failed"), "{text}");

    let dir = std::env::temp_dir().join(format!("graphgate-fixtures-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wrong = dir.join("wrong.yaml");
    let policy = std::fs::canonicalize("policy.yaml").unwrap();
    std::fs::write(
        &wrong,
        format!(
            "policy: {}\ncases:\n  - name: helpdesk expected to be allowed\n    caller: helpdesk-portal\n    request: POST /v1.0/deviceManagement/managedDevices/0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb/updateWindowsDeviceAccount\n    expect: {{ decision: allow, rule: nope }}\n",
            policy.display()
        ),
    )
    .unwrap();
    let out = graphgate(&["policy", "test", wrong.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL helpdesk expected to be allowed: expected allow, got deny; expected rule 'nope', got '(default deny)'"), "{text}");
    assert!(text.contains("0 passed, 1 failed"), "{text}");
}

#[test]
fn policy_explain_names_the_rule_or_why_none_matched() {
    let path = "POST /v1.0/deviceManagement/managedDevices/0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb/updateWindowsDeviceAccount";
    let dir = std::env::temp_dir().join(format!("graphgate-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.json");
    std::fs::write(&good, r##"{"updateWindowsDeviceAccountActionParameter":{"deviceAccountEmail":"room9@rooms.contoso.com","passwordRotationEnabled":true,"deviceAccount":{"@odata.type":"#microsoft.graph.windowsDeviceAzureADAccount","password":"x"}}}"##).unwrap();
    let out = graphgate(&[
        "policy",
        "explain",
        "--caller",
        "rooms-rotator",
        path,
        "--body",
        good.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with("decision: allow\nrule: rotator-updates-room-accounts\n"),
        "{text}"
    );

    let out = graphgate(&["policy", "explain", "--caller", "helpdesk-portal", path])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("decision: deny\nrule: (default deny)")
            && text.contains("no rule names caller 'helpdesk-portal'"),
        "{text}"
    );

    let bad = dir.join("bad.json");
    std::fs::write(&bad, r##"{"updateWindowsDeviceAccountActionParameter":{"deviceAccountEmail":"room9@rooms.contoso.com","passwordRotationEnabled":false,"deviceAccount":{"@odata.type":"#microsoft.graph.windowsDeviceAzureADAccount","password":"x"}}}"##).unwrap();
    let out = graphgate(&[
        "policy",
        "explain",
        "--caller",
        "rooms-rotator",
        path,
        "--body",
        bad.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("condition 'passwordRotationEnabled equals true' does not hold"),
        "{text}"
    );

    let out = graphgate(&["policy", "explain", "--caller", "ghost", path])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown caller \"ghost\""));
}

#[test]
fn outside_emulator_mode_no_audit_log_means_no_start() {
    let dir = temp_dir("noaudit");
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, "version: 1\ncallers: []\nrules: []\n").unwrap();
    let out = graphgate(&["serve", "--policy", policy.to_str().unwrap()])
        .env("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47")
        .env("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
        .env("AZURE_CLIENT_SECRET", "not-used-secret")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no audit log configured"), "{err}");
}

#[test]
fn audit_verify_and_query_on_a_served_log() {
    let served = Served::start(&[]);
    let ok = sh(&served.curl());
    assert!(ok.status.success());
    let log = served.audit_log.clone();
    served.stop();
    let log = log.to_str().unwrap();

    // The README's commands.
    let out = graphgate(&["audit", "verify", log]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("hash chain intact"), "{text}");

    let out = graphgate(&["audit", "query", log, "--caller", "demo-caller"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(table.starts_with("TIME"), "{table}");
    assert!(
        table.contains("managedDevices.updateWindowsDeviceAccount") && table.contains("allowed"),
        "{table}"
    );
    assert!(table.contains("(1 record(s))"), "{table}");

    let out = graphgate(&["audit", "query", log, "--decision", "denied", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "nothing was denied");

    // One altered byte: verify names the line and fails.
    let text = std::fs::read_to_string(log).unwrap();
    std::fs::write(log, text.replacen("demo-caller", "demo-callex", 1)).unwrap();
    let out = graphgate(&["audit", "verify", log]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(":2 (seq 2): record altered"), "{text}");
}
