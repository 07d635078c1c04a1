//! Signed checkpoints as an operator meets them: `audit keygen`, a log written with a
//! signing key, and `audit verify --public-key` naming each attack: a log rewritten with
//! fresh hashes (and its anchor re-made with the HMAC key, which the anchor alone cannot
//! tell), its last 10 records dropped, a checkpoint's signature altered, the wrong public
//! key. A gateway refuses to continue a log its last checkpoint no longer matches, and
//! pushes each checkpoint off the host, retrying an endpoint that is down.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::metrics::Snapshot;
use bytes::Bytes;
use graphgate::audit::checkpoints::checkpoint::{self, CheckpointConfig};
use graphgate::audit::checkpoints::note::NoteSigner;
use graphgate::audit::checkpoints::push::PushQueue;
use graphgate::audit::records::chain::hash_of;
use graphgate::audit::{Audit, AuditConfig, Entry, Fingerprinter, Kind};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_graphgate");

fn graphgate(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("GRAPHGATE_AUDIT_HMAC_KEY_FILE")
        .env_remove("GRAPHGATE_AUDIT_PUBLIC_KEY")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

struct Setup {
    dir: PathBuf,
    log: PathBuf,
    hmac: PathBuf,
    signing: PathBuf,
    public_key: String,
}

/// `audit keygen` as an operator runs it, and an HMAC key beside it.
fn setup() -> Setup {
    use std::os::unix::fs::PermissionsExt;
    let dir = crate::common::temp_dir("checkpoints");
    let signing = dir.join("signing.key");
    let out = graphgate(&[
        "audit",
        "keygen",
        "--name",
        "graphgate.test/audit",
        "--out",
        signing.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let public_key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        public_key.starts_with("graphgate.test/audit+"),
        "{public_key}"
    );
    let mode = std::fs::metadata(&signing).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the private key is private");
    assert!(
        !std::fs::read_to_string(&signing)
            .unwrap()
            .contains(&public_key),
        "the file holds the private key, not the public one"
    );
    // keygen never overwrites a key.
    let again = graphgate(&[
        "audit",
        "keygen",
        "--name",
        "x",
        "--out",
        signing.to_str().unwrap(),
    ]);
    assert!(!again.status.success(), "{}", text(&again));
    let hmac = dir.join("hmac.key");
    let hex: String = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| u.as_bytes().iter().map(|b| format!("{b:02x}")))
        .collect();
    std::fs::write(&hmac, hex).unwrap();
    std::fs::set_permissions(&hmac, std::fs::Permissions::from_mode(0o600)).unwrap();
    Setup {
        log: dir.join("audit.jsonl"),
        dir,
        hmac,
        signing,
        public_key,
    }
}

fn entry(i: usize) -> Entry {
    Entry {
        kind: Some(Kind::Request),
        time: format!("2026-11-28T10:{:02}:{:02}.000000Z", i / 60 % 60, i % 60),
        audit_id: format!("req-{i}"),
        caller: Some("rooms-rotator".into()),
        ..Entry::default()
    }
}

fn config(s: &Setup, every: u64, push: Option<PushQueue>) -> AuditConfig {
    let signer = graphgate::audit::open::load_signer(&s.signing).unwrap();
    AuditConfig {
        checkpoints: Some(CheckpointConfig {
            signer: Arc::new(signer),
            every_records: every,
            interval: Duration::from_secs(3600),
            push,
            latest: Default::default(),
        }),
        ..AuditConfig::default()
    }
}

/// Writes `n` records through a gateway's audit with checkpoints every `every` records,
/// and closes it cleanly.
async fn write_log(s: &Setup, n: usize, every: u64) {
    let fp = Fingerprinter::from_file(&s.hmac).unwrap();
    let audit = Audit::open_with(&s.log, &config(s, every, None), fp).unwrap();
    for i in 0..n {
        audit.write_durable(entry(i)).await.unwrap();
    }
    audit.shutdown().await.unwrap();
}

fn verify(s: &Setup, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["audit", "verify", s.log.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = graphgate(&args);
    (out.status.success(), text(&out))
}

fn lines(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_lines(log: &Path, lines: &[Value]) {
    let text: String = lines
        .iter()
        .map(|v| String::from_utf8(graphgate::audit::records::chain::canonical(v)).unwrap() + "\n")
        .collect();
    std::fs::write(log, text).unwrap();
}

#[tokio::test]
async fn an_intact_log_verifies_against_its_signed_checkpoints() {
    let s = setup();
    write_log(&s, 25, 10).await;
    let notes = std::fs::read_to_string(checkpoint::path_for(&s.log)).unwrap();
    // At 10 and 20 records, and the clean close at 25.
    let sizes: Vec<&str> = checkpoint::split_notes(&notes)
        .iter()
        .map(|n| n.lines().nth(1).unwrap())
        .collect();
    assert_eq!(sizes, ["10", "20", "25"], "{notes}");
    assert!(
        notes.starts_with("graphgate.test/audit/audit.jsonl\n10\n"),
        "{notes}"
    );
    // As a shell glob of the log's files gives them: the anchor, the checkpoints and a
    // shipping cursor among the logs.
    std::fs::write(s.dir.join("audit.jsonl.ship-cursor"), "{\"seq\":3}\n").unwrap();
    let mut glob: Vec<String> = std::fs::read_dir(&s.dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.contains("audit.jsonl"))
        .collect();
    glob.sort();
    let mut args = vec!["audit", "verify", "--public-key", &s.public_key];
    args.extend(glob.iter().map(String::as_str));
    let out = graphgate(&args);
    let (ok, out) = (out.status.success(), text(&out));
    assert!(ok, "{out}");
    assert!(
        out.contains("3 checkpoints signed by graphgate.test/audit+"),
        "{out}"
    );
    assert!(out.contains("up to seq 25"), "{out}");
    // The checkpoint file named with --checkpoints as well (and an off-host copy of it):
    // each checkpoint counts once, each file is listed once.
    let file = checkpoint::path_for(&s.log).display().to_string();
    let copy = s.dir.join("off-host.checkpoints");
    std::fs::copy(&file, &copy).unwrap();
    for named in [
        vec![file.as_str()],
        vec![file.as_str(), copy.to_str().unwrap()],
    ] {
        let mut again = args.clone();
        for n in &named {
            again.extend(["--checkpoints", n]);
        }
        let out = text(&graphgate(&again));
        assert!(
            out.contains("3 checkpoints signed by graphgate.test/audit+"),
            "{out}"
        );
        assert_eq!(out.matches(&file).count(), 1, "{out}");
    }
    // The public key may also be given as a file, with the HMAC key for the anchor too.
    let key_file = s.dir.join("audit.pub");
    std::fs::write(&key_file, format!("{}\n", s.public_key)).unwrap();
    let (ok, out) = verify(
        &s,
        &[
            "--public-key",
            key_file.to_str().unwrap(),
            "--hmac-key-file",
            s.hmac.to_str().unwrap(),
        ],
    );
    assert!(ok && out.contains("anchor "), "{out}");
}

#[tokio::test]
async fn a_log_rewritten_with_fresh_hashes_and_a_remade_anchor_fails_only_against_checkpoints() {
    let s = setup();
    write_log(&s, 25, 10).await;
    // Someone with write access and the HMAC key changes record 5's caller, re-hashes the
    // chain from there, and re-makes the anchor for the new head.
    let mut all = lines(&s.log);
    all[4]["caller"] = "someone-else".into();
    let mut prev = all[3]["hash"].as_str().unwrap().to_owned();
    for v in all.iter_mut().skip(4) {
        v["prev_hash"] = prev.clone().into();
        v["hash"] = hash_of(v).into();
        prev = v["hash"].as_str().unwrap().to_owned();
    }
    write_lines(&s.log, &all);
    let key = Fingerprinter::from_file(&s.hmac).unwrap();
    let anchor_path = graphgate::audit::store::anchor::path_for(&s.log);
    let mut anchor = graphgate::audit::store::anchor::Anchor::load(&anchor_path, &key)
        .unwrap()
        .unwrap();
    anchor.head.hash = prev;
    anchor.store(&anchor_path, &key).unwrap();
    let (ok, out) = verify(&s, &["--hmac-key-file", s.hmac.to_str().unwrap()]);
    assert!(ok, "the HMAC anchor alone is fooled: {out}");
    let (ok, out) = verify(&s, &["--public-key", &s.public_key]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("rewritten: the record at seq 10 is not the one a checkpoint signed by"),
        "{out}"
    );
    // And a gateway refuses to continue it.
    let fp = Fingerprinter::from_file(&s.hmac).unwrap();
    let err = Audit::open_with(&s.log, &config(&s, 10, None), fp).unwrap_err();
    assert!(err.to_string().contains("was rewritten"), "{err}");
}

#[tokio::test]
async fn a_log_with_its_last_10_records_dropped_is_named_truncated() {
    let s = setup();
    write_log(&s, 25, 10).await;
    let all = lines(&s.log);
    write_lines(&s.log, &all[..15]);
    let (ok, out) = verify(&s, &["--public-key", &s.public_key]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("truncated: a checkpoint signed by")
            && out.contains(
                "vouches for 20 records, but the files end at seq 15: seq 16..=20 missing"
            ),
        "{out}"
    );
    // A gateway refuses to continue it: its anchor, its Merkle tree (which took in 25
    // records) and, without both, the checkpoint vouching for 25 records each stand against it.
    let fp = Fingerprinter::from_file(&s.hmac).unwrap();
    let open = || Audit::open_with(&s.log, &config(&s, 10, None), fp.clone()).unwrap_err();
    assert!(
        open()
            .to_string()
            .contains("records seq 16..=25 are missing"),
        "anchor"
    );
    let anchor = graphgate::audit::store::anchor::path_for(&s.log);
    let kept = std::fs::read(&anchor).unwrap();
    std::fs::remove_file(&anchor).unwrap();
    let err = open().to_string();
    assert!(
        err.contains("but its anchor") && err.contains("is missing"),
        "{err}"
    );
    // (An anchor re-made with the HMAC key for the 15 records left: only the tree and the
    // checkpoint remain.)
    std::fs::write(&anchor, &kept).unwrap();
    let tree = graphgate::audit::checkpoints::tree::path_for(&s.log);
    let mut anchored = graphgate::audit::store::anchor::Anchor::load(&anchor, &fp)
        .unwrap()
        .unwrap();
    anchored.head = graphgate::audit::store::anchor::Head {
        seq: 15,
        hash: lines(&s.log)[14]["hash"].as_str().unwrap().into(),
    };
    anchored.clean = false;
    anchored.store(&anchor, &fp).unwrap();
    let err = open().to_string();
    assert!(
        err.contains("holds 25 records: seq 16..=25 are missing"),
        "{err}"
    );
    std::fs::remove_file(&tree).unwrap();
    let err = open().to_string();
    assert!(
        err.contains("its ") && err.contains(".tree is missing"),
        "{err}"
    );
    // A tree rebuilt from what is left still does not match the checkpoint of 25 records.
    std::fs::write(&tree, "").unwrap();
    let err = open().to_string();
    assert!(err.contains("vouches for 25 records"), "{err}");
}

#[tokio::test]
async fn an_altered_checkpoint_signature_and_the_wrong_public_key_are_named() {
    let s = setup();
    write_log(&s, 12, 10).await;
    let path = checkpoint::path_for(&s.log);
    let original = std::fs::read_to_string(&path).unwrap();
    // One character of the first signature changed.
    let at = original.find("\u{2014} ").unwrap() + "\u{2014} graphgate.test/audit ".len() + 10;
    let mut forged = original.clone();
    let c = if &original[at..=at] == "A" { "B" } else { "A" };
    forged.replace_range(at..=at, c);
    std::fs::write(&path, &forged).unwrap();
    let (ok, out) = verify(&s, &["--public-key", &s.public_key]);
    assert!(!ok, "{out}");
    assert!(out.contains("forged checkpoint"), "{out}");
    assert!(
        out.contains("checkpoint #1") && out.contains("does not verify"),
        "{out}"
    );
    // The right checkpoints, the wrong key.
    std::fs::write(&path, &original).unwrap();
    let (other, _) = NoteSigner::generate("graphgate.test/audit").unwrap();
    let (ok, out) = verify(&s, &["--public-key", &other.verifier().to_string()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("forged checkpoint") && out.contains("no signature by the key"),
        "{out}"
    );
    // A malformed key is a usage error.
    let (ok, out) = verify(&s, &["--public-key", "not-a-key"]);
    assert!(!ok && out.contains("--public-key"), "{out}");
}

/// An HTTP endpoint that refuses the first `refuse` pushes with 503, then keeps the notes.
async fn endpoint(refuse: usize) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let notes: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let store = Arc::clone(&notes);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (store, seen) = (Arc::clone(&store), Arc::clone(&seen));
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (store, seen) = (Arc::clone(&store), Arc::clone(&seen));
                    async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let mut resp = http::Response::new(Full::new(Bytes::new()));
                        if n < refuse {
                            *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                        } else {
                            store
                                .lock()
                                .unwrap()
                                .push(String::from_utf8(body.to_vec()).unwrap());
                        }
                        Ok::<_, hyper::Error>(resp)
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (addr, notes)
}

#[tokio::test]
async fn checkpoints_are_pushed_off_the_host_and_a_failed_push_is_retried() {
    let s = setup();
    let (addr, received) = endpoint(1).await;
    const ERRORS: &str = r#"graphgate_audit_checkpoint_pushes_total{result="error"}"#;
    let before = Snapshot::now();
    let queue = PushQueue::default();
    let url: http::Uri = format!("http://{addr}/checkpoints").parse().unwrap();
    let target = graphgate::audit::checkpoints::push::PushTarget {
        url,
        token_file: None,
        connect_to: Vec::new(),
    };
    graphgate::audit::checkpoints::push::spawn(queue.clone(), &target, None).unwrap();
    let fp = Fingerprinter::from_file(&s.hmac).unwrap();
    let audit = Audit::open_with(&s.log, &config(&s, 5, Some(queue.clone())), fp)
        .unwrap()
        .with_push(Some(queue.clone()));
    for i in 0..5 {
        audit.write_durable(entry(i)).await.unwrap();
    }
    // The first push was refused; the retry (after a 1 s backoff) and the closing
    // checkpoint arrive before the shutdown's bounded drain gives up.
    audit.shutdown().await.unwrap();
    assert!(queue.drain(Duration::from_secs(10)).await, "pushed");
    let grew = before.delta(&Snapshot::now(), ERRORS);
    assert!(grew >= 1.0, "the refused push is counted: +{grew}");
    let pushed = received.lock().unwrap().clone();
    let on_disk = std::fs::read_to_string(checkpoint::path_for(&s.log)).unwrap();
    assert_eq!(
        pushed.concat(),
        on_disk,
        "every checkpoint, in order, exactly as written"
    );
    let verifier = graphgate::audit::checkpoints::note::NoteVerifier::parse(&s.public_key).unwrap();
    let last = verifier.open(pushed.last().unwrap()).unwrap();
    let cp = checkpoint::Checkpoint::parse(last).unwrap();
    // It signs the Merkle tree's root of the five records, not the chain's head.
    let head = lines(&s.log).last().unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(cp.size, 5);
    assert_ne!(cp.hash, head);
    let raw: Vec<Vec<u8>> = std::fs::read(&s.log)
        .unwrap()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(cp.hash, crate::rfc6962::hex(&crate::rfc6962::root(&raw)));
}

/// An endpoint that answers the first `refuse` pushes 401, then keeps each push's
/// `Authorization` header and note.
async fn guarded_endpoint(
    refuse: usize,
) -> (
    std::net::SocketAddr,
    tokio::sync::watch::Receiver<Vec<(String, String)>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(Vec::new());
    let tx = Arc::new(tx);
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (tx, seen) = (Arc::clone(&tx), Arc::clone(&seen));
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (tx, seen) = (Arc::clone(&tx), Arc::clone(&seen));
                    async move {
                        let auth = req
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        let body = req.into_body().collect().await?.to_bytes();
                        let mut resp = http::Response::new(Full::new(Bytes::new()));
                        if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < refuse {
                            *resp.status_mut() = http::StatusCode::UNAUTHORIZED;
                        } else {
                            let note = String::from_utf8(body.to_vec()).unwrap();
                            tx.send_modify(|kept| kept.push((auth, note)));
                        }
                        Ok::<_, hyper::Error>(resp)
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (addr, rx)
}

/// Writes `token` to `path` as a rotation does: a private file renamed into place.
fn write_token(path: &Path, token: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("new");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .unwrap();
    std::io::Write::write_all(&mut f, format!("{token}\n").as_bytes()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn the_push_authenticates_with_a_token_file_honours_connect_to_and_logs_no_credential() {
    let s = setup();
    let (addr, mut pushed) = guarded_endpoint(1).await;
    let backend =
        crate::common::served::backend(graphgate_emulator::EmulatorConfig::default()).await;
    let token_file = s.dir.join("push-token");
    write_token(&token_file, "push-token-one-7f3a");
    // A name only GRAPHGATE_CONNECT_TO resolves, and a key in the query.
    let port = addr.port();
    let url = format!("http://checkpoints.example:{port}/in?code=SECRET-IN-QUERY");
    let connect_to = format!(
        "{},checkpoints.example:{port}=127.0.0.1:{port}",
        graphgate_emulator::Emulator::connect_to(backend.addr)
    );
    let mut cmd = backend.serve_command();
    cmd.env("GRAPHGATE_CONNECT_TO", connect_to)
        .env("GRAPHGATE_AUDIT_SIGNING_KEY_FILE", &s.signing)
        .env("GRAPHGATE_AUDIT_CHECKPOINT_URL", &url)
        .env("GRAPHGATE_AUDIT_CHECKPOINT_TOKEN_FILE", &token_file)
        .env("GRAPHGATE_AUDIT_CHECKPOINT_INTERVAL_SECS", "1");
    let gw = backend.serve(cmd).await;
    let call = async || assert_eq!(gw.call().await.status, 204);
    let pushed_with = async |rx: &mut tokio::sync::watch::Receiver<Vec<(String, String)>>,
                             bearer: &str| {
        let want = format!("Bearer {bearer}");
        tokio::time::timeout(
            Duration::from_secs(30),
            rx.wait_for(|kept| kept.iter().any(|(auth, _)| *auth == want)),
        )
        .await
        .unwrap_or_else(|_| panic!("no push with {want}"))
        .unwrap();
    };
    call().await;
    // The first push is refused (401) and retried; the retry carries the token.
    pushed_with(&mut pushed, "push-token-one-7f3a").await;
    // Rotated in place: the next checkpoint's push carries the new token.
    write_token(&token_file, "push-token-two-9c1e");
    call().await;
    pushed_with(&mut pushed, "push-token-two-9c1e").await;
    let notes = pushed.borrow().clone();
    assert!(
        notes
            .iter()
            .all(|(_, note)| note.contains("graphgate.test/audit"))
    );
    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");
    let shown = format!("http://checkpoints.example:{port}/in?…");
    assert!(
        out.contains("could not push an audit checkpoint") && out.contains(&shown),
        "{out}"
    );
    for secret in ["SECRET-IN-QUERY", "push-token-one", "push-token-two"] {
        assert!(!out.contains(secret), "{secret} logged:\n{out}");
    }
}

#[test]
fn credentials_in_the_checkpoint_url_never_reach_help_or_logs() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .env(
            "GRAPHGATE_AUDIT_CHECKPOINT_URL",
            "https://ops:hunter2@h.example/in?sig=s3",
        )
        .env("GRAPHGATE_STATE", "rediss://:hunter3@cache.example:6380")
        .output()
        .unwrap();
    let help = text(&out);
    assert!(help.contains("GRAPHGATE_AUDIT_CHECKPOINT_URL"), "{help}");
    for secret in ["hunter2", "sig=s3", "hunter3"] {
        assert!(!help.contains(secret), "{secret} in --help");
    }
}

/// A crash mid-append leaves part of a checkpoint at the end of the checkpoint file: the
/// next start cuts it back to the last whole checkpoint (saying so in a WARN and in an audit
/// record of its own) instead of refusing a log that is intact, and the log verifies after.
#[tokio::test]
async fn a_torn_last_checkpoint_is_cut_back_at_start_with_a_warning_and_a_record() {
    let s = setup();
    let backend =
        crate::common::served::backend(graphgate_emulator::EmulatorConfig::default()).await;
    let log = backend.dir.join("audit.jsonl");
    let checkpoints = backend.dir.join("audit.jsonl.checkpoints");
    let start = || {
        let mut cmd = backend.serve_command();
        cmd.env("GRAPHGATE_AUDIT_SIGNING_KEY_FILE", &s.signing);
        cmd
    };
    let gw = backend.serve(start()).await;
    assert_eq!(gw.call().await.status, 204);
    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");
    let whole = std::fs::read(&checkpoints).unwrap();
    // The crash: the next note written up to the middle of its signature line.
    let torn = "graphgate.test/audit/audit.jsonl\n9\nq5o1b0mYtNnTRjYQ3M3Q8+dB1yP0d5cK6YqI0pZQdA0=\n\n\u{2014} graphgate.test/audit AbCd";
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&checkpoints)
        .unwrap();
    std::io::Write::write_all(&mut file, torn.as_bytes()).unwrap();
    drop(file);

    let gw = backend.serve(start()).await;
    let ready = gw.admin("/readyz").await;
    assert_eq!(ready.status, 200, "{:?}", ready.body);
    let now = std::fs::read(&checkpoints).unwrap();
    assert!(now.starts_with(&whole), "whole checkpoints are kept");
    assert!(now.ends_with(b"\n"), "no partial note is left");
    assert!(
        !String::from_utf8_lossy(&now).contains("AbCd\n") && !now.ends_with(b"AbCd"),
        "the torn tail is gone"
    );
    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");
    assert!(
        out.contains("\"level\":\"WARN\"") && out.contains("ended in a torn checkpoint"),
        "{out}"
    );
    let records = crate::common::served::audit_records(&log);
    let said = records.iter().find(|r| {
        r["kind"] == "start"
            && r["note"]
                .as_str()
                .is_some_and(|n| n.contains("torn checkpoint") && n.contains("cut back"))
    });
    assert!(said.is_some(), "no record says so: {records:?}");
    let out = graphgate(&[
        "audit",
        "verify",
        "--public-key",
        &s.public_key,
        log.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
}
