//! The binary as an operator runs it: a real SIGHUP reload, a trace-level log written
//! beside the policy file, text logs to a file, and `policy check` on numbers out of range.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::cli::graphgate;
use crate::common::{DEVICE, OTHER_KEY, ROTATOR_KEY, body, temp_dir};

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use graphgate::identity::api_key_sha256;
use graphgate::policy::version_hash;

/// Every wait on the process ends by then (it generates keys at start-up).
const WAIT: Duration = Duration::from_secs(30);

/// A policy letting `caller` (one of the harness's two) update device accounts.
fn policy_allowing(caller: &str) -> String {
    format!(
        "version: 1\ncallers:\n  - name: rooms-rotator\n    api_key_sha256: \"{}\"\n  - name: other-service\n    api_key_sha256: \"{}\"\nrules:\n  - name: only-{caller}\n    callers: [{caller}]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n",
        api_key_sha256(ROTATOR_KEY),
        api_key_sha256(OTHER_KEY)
    )
}

/// Replaces `path` with a whole new file, by rename.
fn replace_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A spawned `graphgate serve --emulator`, whose stdout (the log) is read line by line,
/// and copied to `mirror` as it comes if one is given (a log file, as a shell redirect
/// would write it).
struct Served {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every stdout line so far.
    log: Vec<String>,
}

impl Served {
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)], mirror: Option<PathBuf>) -> Served {
        let audit = dir.join("audit.jsonl");
        let mut all = vec!["serve", "--emulator", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(&["--admin-listen", "127.0.0.1:0"]);
        all.extend_from_slice(&["--audit-log", audit.to_str().unwrap()]);
        all.extend_from_slice(args);
        let mut cmd = graphgate(&all);
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut file = mirror.map(|p| std::fs::File::create(p).unwrap());
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    writeln!(f, "{line}").unwrap();
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Served {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// The first log line that contains `text`, waiting for it if need be (bounded by
    /// [`WAIT`]).
    fn wait_for(&mut self, text: &str) -> String {
        if let Some(line) = self.log.iter().find(|l| l.contains(text)) {
            return line.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|e| {
                panic!(
                    "no log line with {text:?} ({e}); so far:\n{}",
                    self.log.join("\n")
                )
            });
            self.log.push(line.clone());
            if line.contains(text) {
                return line;
            }
        }
    }

    /// The JSON log line whose message is `message`.
    fn wait_for_message(&mut self, message: &str) -> serde_json::Value {
        let line = self.wait_for(&format!("\"message\":\"{message}\""));
        serde_json::from_str(&line).unwrap()
    }

    /// The gateway's address, from its JSON start-up line.
    fn wait_listening(&mut self) -> String {
        let line = self.wait_for_message("graphgate listening");
        line["listen"].as_str().unwrap().to_owned()
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Stops the process and returns its whole log.
    fn stop(mut self) -> Vec<String> {
        self.signal("TERM");
        let deadline = Instant::now() + WAIT;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.log.push(line);
        }
        std::mem::take(&mut self.log)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs the standard body for device [`DEVICE`] with `key` over a fresh connection and
/// returns the status code.
fn post(addr: &str, key: &str) -> u16 {
    let body = body();
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        conn,
        "POST /v1.0/deviceManagement/managedDevices/{DEVICE}/updateWindowsDeviceAccount HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

#[test]
fn sighup_reloads_the_policy_of_a_running_gateway() {
    // The policy path is a symlink into a directory the gateway does not watch, so the
    // edit below reaches it only through SIGHUP.
    let (dir, elsewhere) = (temp_dir("sighup"), temp_dir("sighup-target"));
    let target = elsewhere.join("policy.yaml");
    let path = dir.join("policy.yaml");
    std::fs::write(&target, policy_allowing("rooms-rotator")).unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let mut served = Served::start(&dir, &["--policy", path.to_str().unwrap()], &[], None);
    let addr = served.wait_listening();
    assert_eq!(post(&addr, ROTATOR_KEY), 204);
    assert_eq!(post(&addr, OTHER_KEY), 403);

    let next = policy_allowing("other-service");
    replace_atomically(&target, &next);
    served.signal("HUP");
    served.wait_for_message("SIGHUP: reloading the policy");
    let reloaded = served.wait_for_message("policy reloaded");
    assert_eq!(reloaded["policy_hash"], version_hash(next.as_bytes()));
    assert_eq!(post(&addr, ROTATOR_KEY), 403, "the new policy is in force");
    assert_eq!(post(&addr, OTHER_KEY), 204);
    served.stop();
}

#[test]
fn a_trace_log_beside_the_policy_file_does_not_feed_on_itself() {
    let dir = temp_dir("log-beside");
    let path = dir.join("policy.yaml");
    std::fs::write(&path, policy_allowing("rooms-rotator")).unwrap();
    // As `graphgate serve ... > /etc/graphgate/graphgate.log` would, beside the policy.
    let mut served = Served::start(
        &dir,
        &["--policy", path.to_str().unwrap()],
        &[("RUST_LOG", "trace")],
        Some(dir.join("graphgate.log")),
    );
    let addr = served.wait_listening();
    served.wait_for_message(
        "the policy is reloaded on SIGHUP and when a complete new file is in place",
    );
    assert_eq!(post(&addr, ROTATOR_KEY), 204);
    let next = policy_allowing("other-service");
    replace_atomically(&path, &next);
    let reloaded = served.wait_for_message("policy reloaded");
    assert_eq!(reloaded["policy_hash"], version_hash(next.as_bytes()));
    let log = served.stop();

    let target = |line: &String| {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        (
            v["target"].as_str().unwrap_or_default().to_owned(),
            v["level"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let targets: Vec<(String, String)> = log.iter().map(target).collect();
    // The watcher saw every line written to graphgate.log; at trace it logged each one,
    // which was written to graphgate.log again.
    let watcher_lines = targets
        .iter()
        .filter(|(t, _)| t.starts_with("notify"))
        .count();
    assert_eq!(watcher_lines, 0, "{log:#?}");
    let third_party_below_info = targets
        .iter()
        .filter(|(t, l)| !t.starts_with("graphgate") && (l == "DEBUG" || l == "TRACE"))
        .count();
    assert_eq!(third_party_below_info, 0, "other crates stay at info");
    assert!(
        targets
            .iter()
            .any(|(t, l)| t.starts_with("graphgate") && l == "DEBUG"),
        "RUST_LOG=trace still reaches graphgate's own logs: {log:#?}"
    );
}

#[test]
fn text_logs_to_a_file_carry_no_colour_codes() {
    let dir = temp_dir("text-log");
    let mut served = Served::start(&dir, &["--log-format", "text"], &[], None);
    let listening = served.wait_for("graphgate listening");
    let log = served.stop();
    assert!(listening.contains("INFO"), "{listening}");
    let coloured: Vec<&String> = log.iter().filter(|l| l.contains('\u{1b}')).collect();
    assert!(
        coloured.is_empty(),
        "stdout is a pipe, not a terminal: {coloured:?}"
    );
}

#[test]
fn policy_check_refuses_numbers_a_limiter_cannot_hold() {
    let dir = temp_dir("check-numbers");
    let file = dir.join("policy.yaml");
    let text = policy_allowing("rooms-rotator").replace(
        "  - name: other-service\n",
        "  - name: other-service\n    rate_limit: 1 per 18446744073709551615s\n",
    ) + "pacing:\n  max_wait_ms: 18446744073709551615\n";
    std::fs::write(&file, text).unwrap();
    let out = graphgate(&["policy", "check", file.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("has 2 errors"), "{err}");
    assert!(
        err.contains("policy.yaml:6:17:") && err.contains("the window is longer than a day"),
        "{err}"
    );
    assert!(
        err.contains("policy.yaml:13:16:") && err.contains("over the 60000 ms limit"),
        "{err}"
    );
}
