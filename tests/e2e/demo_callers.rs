//! `serve --emulator` as a new user meets it: where everything is, and a ready-made request
//! for a caller of every kind (API key, client certificate, Kubernetes service account),
//! each run exactly as printed; with `--policy`, only requests that policy allows;
//! `--print-policy`; and `emulate` printing the tenant, app and secret it expects.

use std::time::Duration;

use crate::cli::{OutputWithin, Served, graphgate, sh};
use crate::common::process::Proc;

/// The status line of a `curl -i` answer (HTTP/1.1 or HTTP/2).
fn status_line(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_owned()
}

fn is_204(line: &str) -> bool {
    line == "HTTP/1.1 204 No Content" || line == "HTTP/2 204"
}

#[test]
fn every_printed_command_runs_as_printed_and_is_allowed() {
    let mut served = Served::start(&[]);
    let commands = served.commands();
    assert_eq!(commands.len(), 3, "{}", served.banner.concat());
    let banner = served.banner.concat();
    for (who, caller) in [
        ("As the demo API key", "demo-caller"),
        ("As the demo client certificate", "demo-mtls-caller"),
        ("As the demo Kubernetes service account", "demo-k8s-caller"),
    ] {
        assert!(
            banner.contains(who) && banner.contains(&format!("caller \"{caller}\"")),
            "{who}: {banner}"
        );
    }
    assert!(commands[1].contains("--cert ") && commands[1].contains("https://127.0.0.1:"));
    assert!(
        commands[2].contains("$(cat "),
        "the token is read from its file: {}",
        commands[2]
    );
    for command in &commands {
        let out = sh(command);
        let status = status_line(&out);
        assert!(
            is_204(&status),
            "{command}\n{status}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The policy the banner names is the one in force, and the demo's.
    let policy = served.line("policy: ");
    let path = policy.split(" (").next().unwrap();
    let printed = graphgate(&["serve", "--emulator", "--print-policy"]).output_within();
    assert!(printed.status.success());
    assert_eq!(std::fs::read(path).unwrap(), printed.stdout);
    let check = graphgate(&["policy", "check", path]).output_within();
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("OK (3 callers, 4 rules"),
        "{check:?}"
    );
    // The gateway follows that file: without the certificate's rule, its call is refused.
    let text = std::fs::read_to_string(path).unwrap();
    let cut = text.replace("  - name: demo-mtls-may-sync-devices\n    callers: [demo-mtls-caller]\n    operations: [managedDevices.syncDevice]\n", "");
    assert_ne!(cut, text);
    let tmp = format!("{path}.new");
    std::fs::write(&tmp, cut).unwrap();
    std::fs::rename(&tmp, path).unwrap();
    served.wait_log("policy reloaded");
    let status = status_line(&sh(&commands[1]));
    assert_eq!(status, "HTTP/2 403", "{}", commands[1]);
    let log = served.audit_log.clone();
    served.stop();
    // Each call was audited as its own caller's, answered 204 by Graph.
    let log = log.to_str().unwrap();
    let denied = graphgate(&[
        "audit",
        "query",
        log,
        "--decision",
        "denied",
        "--format",
        "json",
    ])
    .output_within();
    let denied: serde_json::Value = serde_json::from_slice(&denied.stdout).unwrap();
    assert_eq!(denied["caller"], "demo-mtls-caller");
    let out = graphgate(&[
        "audit",
        "query",
        log,
        "--decision",
        "allowed",
        "--format",
        "json",
    ])
    .output_within();
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let served: Vec<(&str, &str, u64)> = records
        .iter()
        .map(|r| {
            (
                r["caller"].as_str().unwrap(),
                r["operation"].as_str().unwrap(),
                r["upstream_status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        served,
        [
            (
                "demo-caller",
                "managedDevices.updateWindowsDeviceAccount",
                204
            ),
            ("demo-mtls-caller", "managedDevices.syncDevice", 204),
            ("demo-k8s-caller", "managedDevices.windowsDefenderScan", 204),
        ]
    );
}

/// With `--policy`, each printed request is one that policy allows (and the gateway then
/// runs); a policy naming no demo identity gets no request at all, and says why.
#[test]
fn with_a_policy_only_requests_it_allows_are_printed() {
    let dir = std::env::temp_dir().join(format!("graphgate-demo-policy-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "version: 1
callers:
  - name: phone-locker
    mtls: {{ uri_san: \"{}\" }}
  - name: wiper
    api_key_sha256: \"{}\"
rules:
  - name: lock-phones-with-a-reason
    callers: [phone-locker]
    operations: [managedDevices.remoteLock]
    require: [reason]
  - name: wipe-the-one-keeping-data
    callers: [wiper]
    operations: [managedDevices.wipe]
    devices: [\"{}\"]
    when:
      - {{ param: keepUserData, equals: true }}
",
            graphgate_emulator::demo::DEMO_MTLS_URI_SAN,
            graphgate::identity::api_key_sha256(graphgate_emulator::demo::DEMO_API_KEY),
            graphgate_emulator::demo::DEMO_WIPEABLE_DEVICE_ID
        ),
    )
    .unwrap();
    let served = Served::start(&["--policy", policy.to_str().unwrap()]);
    let banner = served.banner.concat();
    let commands = served.commands();
    assert_eq!(commands.len(), 2, "{banner}");
    assert!(
        commands[0].contains("/wipe") && commands[0].contains(r#"{"keepUserData":true}"#),
        "{}",
        commands[0]
    );
    assert!(
        commands[1].contains("/remoteLock") && commands[1].contains("X-Graphgate-Reason: "),
        "{}",
        commands[1]
    );
    assert!(
        !commands[1].contains("X-Graphgate-Initiator"),
        "only what the rule requires"
    );
    assert!(!banner.contains("service account ("), "{banner}");
    assert!(
        banner.contains(&format!("policy: {} (yours)", policy.display())),
        "{banner}"
    );
    for command in &commands {
        let status = status_line(&sh(command));
        assert!(is_204(&status), "{command}\n{status}");
    }
    served.stop();

    std::fs::write(
        &policy,
        "version: 1\ncallers:\n  - name: someone\n    api_key_sha256: \"1f2d3c4b5a69788796a5b4c3d2e1f0011223344556677889aabbccddeeff0011\"\nrules:\n  - name: r\n    callers: [someone]\n    operations: [managedDevices.syncDevice]\n",
    )
    .unwrap();
    let served = Served::start(&["--policy", policy.to_str().unwrap()]);
    let banner = served.banner.concat();
    assert!(served.commands().is_empty(), "{banner}");
    assert!(
        banner.contains("This policy allows no request any demo identity can make"),
        "{banner}"
    );
    served.stop();
}

/// `emulate` prints the tenant, app and secret it expects and how to reach it; a gateway
/// started with exactly those lines gets a 204 through it.
#[test]
fn emulate_prints_the_app_and_the_way_to_reach_it() {
    let dir = std::env::temp_dir().join(format!("graphgate-emulate-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("emulator-ca.pem");
    let mut emulator = Proc::spawn(&mut graphgate(&[
        "emulate",
        "--listen",
        "127.0.0.1:0",
        "--ca-out",
        ca.to_str().unwrap(),
    ]));
    emulator
        .stderr
        .wait_for(Duration::from_secs(30), |l| {
            l.contains("GRAPHGATE_EXTRA_CA_FILE")
        })
        .unwrap_or_else(|| panic!("{}", emulator.stderr.text()));
    let printed = emulator.stderr.text();
    let exports: Vec<&str> = printed
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("export "))
        .collect();
    let names: Vec<&str> = exports
        .iter()
        .map(|l| l[7..].split('=').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET",
            "GRAPHGATE_CONNECT_TO",
            "GRAPHGATE_EXTRA_CA_FILE"
        ]
    );
    assert!(printed.contains(graphgate_emulator::DEMO_CLIENT_SECRET));
    // A gateway of its own, configured by nothing but those lines (and its policy and log).
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, graphgate_emulator::demo::policy_yaml()).unwrap();
    let script = format!(
        "{}\nexec {} serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --policy {} --audit-log {} --audit-hmac-key-file {}",
        exports.join("\n"),
        crate::common::process::BIN,
        policy.display(),
        dir.join("audit.jsonl").display(),
        dir.join("hmac.key").display(),
    );
    let key: String = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| u.as_bytes().iter().map(|b| format!("{b:02x}")))
        .collect();
    std::fs::write(dir.join("hmac.key"), key).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("hmac.key"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }
    let mut gateway = Proc::spawn(
        std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env_remove("AZURE_CLIENT_SECRET"),
    );
    let listening = gateway
        .stdout
        .wait_for(Duration::from_secs(60), |l| {
            l.contains("\"graphgate listening\"")
        })
        .unwrap_or_else(|| {
            panic!(
                "{}{}",
                gateway.stdout.text(),
                gateway.stderr.read_to_end(Duration::from_secs(5))
            )
        });
    let line: serde_json::Value = serde_json::from_str(&listening).unwrap();
    let addr = line["listen"].as_str().unwrap().to_owned();
    let sync = format!(
        "curl -i -X POST 'http://{addr}/v1.0/deviceManagement/managedDevices/{}/syncDevice' -H 'Authorization: Bearer demo-api-key'",
        graphgate_emulator::DEMO_DEVICE_IDS[0]
    );
    // The demo key's caller may not sync devices: the gateway, not Entra, answers 403.
    let status = status_line(&sh(&sync));
    assert!(status.contains(" 403"), "{status}");
    let update = format!(
        "curl -i -X POST 'http://{addr}/v1.0/deviceManagement/managedDevices/{}/updateWindowsDeviceAccount' -H 'Authorization: Bearer demo-api-key' -H 'Content-Type: application/json' -d '{}'",
        graphgate_emulator::DEMO_DEVICE_IDS[0],
        r##"{"updateWindowsDeviceAccountActionParameter":{"deviceAccount":{"@odata.type":"#microsoft.graph.windowsDeviceAzureADAccount","password":"Demo-Passw0rd!","userPrincipalName":"room1@contoso.com"},"deviceAccountEmail":"room1@contoso.com"}}"##
    );
    let status = status_line(&sh(&update));
    assert!(is_204(&status), "{status}\n{}", gateway.stdout.text());
}
