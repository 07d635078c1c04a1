//! The witness as deploy/ ships it: the systemd unit verifies (`systemd-analyze`) and its
//! ExecStart runs with exactly the environment file's variables; the Kubernetes example
//! renders (`kubectl kustomize`) and its container runs with exactly its args and env, its
//! Secret and volume where they are mounted. Each must answer its probe, cosign a
//! gateway's checkpoint, keep it in its state folder, and stop on SIGTERM. Besides paths
//! and the port, the one value changed is the log's public key in GRAPHGATE_WITNESS_LOG
//! (the shipped one is an example: the operator puts the gateways', the test its own).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use graphgate::audit::checkpoints::checkpoint::Checkpoint;
use graphgate::audit::checkpoints::note::{NoteSigner, NoteVerifier};
use graphgate::audit::checkpoints::tree;
use graphgate::audit::records::chain::hex;
use graphgate::audit::witnessing::cosigned;
use graphgate::audit::witnessing::witness_protocol::{origin_hash, request_body};
use http_body_util::Full;
use serde_json::Value;

use super::launch::{BIN, Root};
use super::systemd::{assert_exposure_at_most, command_line};
use super::{deploy, k8s, read, repo, tool_available};
use crate::common::process::Proc;

/// The PATH systemd gives services.
const SYSTEMD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A shipped witness configuration, paths and port mapped.
struct Shipped {
    name: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    /// The readiness probe's path.
    probe: String,
}

impl Shipped {
    fn var(&self, name: &str) -> &str {
        let found = self.env.iter().find(|(k, _)| k == name);
        &found
            .unwrap_or_else(|| panic!("{}: {name} missing", self.name))
            .1
    }

    /// Puts `key` where the shipped example key is in GRAPHGATE_WITNESS_LOG, keeping the
    /// origin (a prefix) as shipped; returns that origin prefix.
    fn witness_the_key(&mut self, key: &NoteVerifier) -> String {
        let (_, value) = self
            .env
            .iter_mut()
            .find(|(k, _)| k == "GRAPHGATE_WITNESS_LOG")
            .unwrap_or_else(|| panic!("{}: no GRAPHGATE_WITNESS_LOG", self.name));
        let (origin, example) = value.split_once('=').unwrap();
        assert!(
            NoteVerifier::parse(example).is_ok(),
            "{}: the example key parses",
            self.name
        );
        let origin = origin.to_owned();
        *value = format!("{origin}={key}");
        origin
    }
}

/// Starts `shipped` (its key made at GRAPHGATE_WITNESS_KEY with `witness keygen`, as the
/// operator does), then proves it answers as deployed.
async fn prove(mut shipped: Shipped, root: &Root, key_mode: u32) {
    let key_file = shipped.var("GRAPHGATE_WITNESS_KEY").to_owned();
    let made = root.dir.join("made.key");
    let out = Command::new(BIN)
        .args(["witness", "keygen", "--name", "witness-1.test", "--out"])
        .arg(&made)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let witness_key = NoteVerifier::parse(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    std::fs::create_dir_all(Path::new(&key_file).parent().unwrap()).unwrap();
    std::fs::copy(&made, &key_file).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(key_mode),
    )
    .unwrap();
    // The gateways' signing key (its name is the shipped origin's first part).
    let (log, _) = NoteSigner::generate("graphgate.corp.example/audit").unwrap();
    let prefix = shipped.witness_the_key(&log.verifier());
    let mut cmd = Command::new(&shipped.argv[0]);
    cmd.args(&shipped.argv[1..])
        .env_clear()
        .envs(shipped.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&root.dir);
    let mut proc = Proc::spawn(&mut cmd);
    let line = proc
        .stderr
        .wait_for_async(Duration::from_secs(30), |l| {
            l.contains("listening on http://")
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "{}: the witness did not start: {}{}",
                shipped.name,
                proc.stdout.text(),
                proc.stderr.text()
            )
        });
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    let get = |path: &str| {
        http::Request::get(format!("{url}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let probe = crate::common::send_to(get(&shipped.probe)).await;
    assert_eq!(probe.status, 200, "{}: {}", shipped.name, shipped.probe);
    // A gateway's first checkpoint: a pod's log under the shipped prefix.
    let origin = format!(
        "{}graphgate-7d9f8-smoke.jsonl",
        prefix.trim_end_matches('*')
    );
    let root_hash = tree::leaf_hash(b"{\"seq\":1}");
    let text = Checkpoint {
        origin: origin.clone(),
        size: 1,
        hash: hex(&root_hash.0),
    }
    .text()
    .unwrap();
    let note = log.sign(&text).unwrap();
    let req = http::Request::post(format!("{url}/add-checkpoint"))
        .body(Full::new(Bytes::from(request_body(0, &[], &note))))
        .unwrap();
    let reply = crate::common::send_to(req).await;
    assert_eq!(reply.status, 200, "{}: {:?}", shipped.name, reply.body);
    let cosigned_note = format!("{note}{}", String::from_utf8_lossy(&reply.body));
    let checked = cosigned::check(&cosigned_note, &log.verifier(), &[witness_key]).unwrap();
    assert_eq!(
        checked.by.len(),
        1,
        "{}: cosigned by the witness",
        shipped.name
    );
    // Kept in its state folder, and served back.
    let state = Path::new(shipped.var("GRAPHGATE_WITNESS_STATE"));
    let kept = state.join(format!("{}.json", origin_hash(&origin)));
    assert!(kept.exists(), "{}: no {}", shipped.name, kept.display());
    let served =
        crate::common::send_to(get(&format!("/{}/checkpoint", origin_hash(&origin)))).await;
    assert_eq!(served.status, 200, "{}", shipped.name);
    proc.signal("TERM");
    let (status, _) = proc.wait_exit_async(Duration::from_secs(20)).await;
    assert!(status.success(), "{}: {status}", shipped.name);
}

fn unit() -> String {
    read(&deploy().join("systemd/graphgate-witness.service"))
}

/// The unit's `key=` values in its [Service] section.
fn service(key: &str) -> Vec<String> {
    let text = unit();
    let section = text.split("[Service]").nth(1).unwrap();
    let section = section.split("\n[").next().unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .collect()
}

/// The environment file, as systemd reads it.
fn env_file() -> Vec<(String, String)> {
    read(&deploy().join("systemd/graphgate-witness.env"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_owned(), v.trim().trim_matches('"').to_owned())
        })
        .collect()
}

#[tokio::test]
async fn the_witness_unit_verifies_and_its_exec_start_cosigns_with_the_env_files_settings() {
    let text = unit();
    for line in [
        "User=graphgate-witness",
        "EnvironmentFile=/etc/graphgate-witness/witness.env",
        "StateDirectory=graphgate-witness",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}");
    }
    if tool_available("systemd-analyze", &["--version"]) {
        let dir = crate::common::temp_dir("witness-unit");
        let env = dir.join("witness.env");
        std::fs::copy(deploy().join("systemd/graphgate-witness.env"), &env).unwrap();
        let local = text
            .replace("/usr/local/bin/graphgate", BIN)
            .replace("/etc/graphgate-witness/witness.env", env.to_str().unwrap());
        let path = dir.join("graphgate-witness.service");
        std::fs::write(&path, local).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify graphgate-witness: {stderr}"
        );
        assert_exposure_at_most(&path, 1.2);
    }
    // docs/deploy.md's steps ("A witness") install the environment file and make the key it
    // names.
    let readme = read(&repo().join("docs/deploy.md"));
    for (name, value) in env_file() {
        if value.starts_with("/etc/") {
            assert!(readme.contains(&value), "{name}={value}: never installed");
        }
    }
    assert!(readme.contains("/etc/graphgate-witness/witness.env"));
    let root = Root::new("witness-systemd");
    let env: Vec<(String, String)> = env_file()
        .into_iter()
        .map(|(k, v)| (k, root.map(&v)))
        .chain([("PATH".to_owned(), SYSTEMD_PATH.to_owned())])
        .collect();
    // systemd makes the state directory (StateDirectory=, mode 0700).
    let state = env
        .iter()
        .find(|(k, _)| k == "GRAPHGATE_WITNESS_STATE")
        .unwrap();
    assert_eq!(
        state.1,
        root.path("/var/lib/graphgate-witness")
            .display()
            .to_string(),
        "the env file's state folder is the unit's StateDirectory"
    );
    std::fs::create_dir_all(&state.1).unwrap();
    let exec_start = service("ExecStart");
    assert_eq!(exec_start.len(), 1);
    let mut argv = command_line(&exec_start[0], &env);
    assert_eq!(argv[0], "/usr/local/bin/graphgate");
    argv[0] = BIN.to_owned();
    let shipped = Shipped {
        name: "graphgate-witness.env".into(),
        argv,
        env,
        probe: "/healthz".into(),
    };
    prove(shipped, &root, 0o600).await;
}

#[tokio::test]
async fn the_witness_manifest_renders_and_its_container_cosigns_as_deployed() {
    if !tool_available("kubectl", &["version", "--client"]) {
        return;
    }
    let rendered = super::kube::render_dir("witness".into(), &k8s().join("witness"));
    let sets = rendered.of_kind("StatefulSet");
    assert_eq!(sets.len(), 1);
    let set = sets[0];
    assert_eq!(set["spec"]["replicas"], 1, "one witness, one state");
    let pod = &set["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    let root = Root::new("witness-kube");
    let mut argv = vec![BIN.to_owned()];
    argv.extend(
        c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| root.map(a.as_str().unwrap())),
    );
    assert!(c["command"].is_null(), "the image's entrypoint runs");
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let value = e["value"]
                .as_str()
                .unwrap_or_else(|| panic!("env {e}: only literal values"));
            (e["name"].as_str().unwrap().to_owned(), root.map(value))
        })
        .collect();
    // Every mount is the key Secret or the state claim.
    let volumes = pod["volumes"].as_array().unwrap();
    let mut key_mode = None;
    for mount in c["volumeMounts"].as_array().unwrap() {
        let name = mount["name"].as_str().unwrap();
        let dir = root.path(mount["mountPath"].as_str().unwrap());
        std::fs::create_dir_all(&dir).unwrap();
        match volumes.iter().find(|v| v["name"] == name) {
            Some(v) if v["secret"]["secretName"] == "graphgate-witness-key" => {
                key_mode = v["secret"]["defaultMode"].as_u64();
            }
            Some(v) => panic!("volume {v}: not one the test provides"),
            None => {
                let claims = set["spec"]["volumeClaimTemplates"].as_array().unwrap();
                assert!(
                    claims.iter().any(|t| t["metadata"]["name"] == name),
                    "{name}"
                );
            }
        }
    }
    let probe = c["readinessProbe"]["httpGet"]["path"].as_str().unwrap();
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], probe);
    let shipped = Shipped {
        name: "deploy/kubernetes/witness".into(),
        argv,
        env,
        probe: probe.to_owned(),
    };
    let service: &Value = rendered.object("Service", "graphgate-witness");
    assert_eq!(service["spec"]["ports"][0]["port"], 7380);
    prove(shipped, &root, key_mode.unwrap() as u32).await;
}
