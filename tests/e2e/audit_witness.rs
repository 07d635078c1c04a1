//! An audit history the host cannot rewrite, as operators meet it: `graphgate serve` with a
//! signing key and witnesses (each `graphgate witness serve`, a process of its own on a free
//! port with its own state), receipts proven and checked offline, the tree served as tiles,
//! and an attacker who cuts the log refused at start or caught by a witness. Proofs are
//! checked by the independent RFC 6962 verifier in `rfc6962.rs`, not the gateway's code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::process::{BIN, Proc};
use crate::common::served::{Backend, Served};
use crate::common::{self, ROTATOR_KEY, eventually};
use crate::rfc6962;

/// Where the log lives in the backend's folder, and its origin under the test key.
const ORIGIN: &str = "graphgate.test/audit/audit.jsonl";

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("GRAPHGATE_AUDIT_PUBLIC_KEY")
        .env_remove("GRAPHGATE_AUDIT_LOG")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// `audit keygen` or `witness keygen`: the private key file and the printed public key.
fn keygen(kind: &str, name: &str, dir: &Path) -> (PathBuf, String) {
    let file = dir.join(format!("{}.key", name.replace('/', "_")));
    let out = run(&[
        kind,
        "keygen",
        "--name",
        name,
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    (
        file,
        String::from_utf8(out.stdout).unwrap().trim().to_owned(),
    )
}

/// A witness process, as its operator runs it.
struct Witness {
    proc: Proc,
    url: String,
    key: PathBuf,
    public: String,
    state: PathBuf,
}

async fn witness(dir: &Path, name: &str, log_key: &str) -> Witness {
    let (key, public) = keygen("witness", name, dir);
    let state = dir.join(format!("{name}-state"));
    start_witness(key, public, state, log_key).await
}

async fn start_witness(key: PathBuf, public: String, state: PathBuf, log_key: &str) -> Witness {
    let mut proc = Proc::spawn(
        Command::new(BIN)
            .env_remove("RUST_LOG")
            .args(["witness", "serve", "--listen", "127.0.0.1:0", "--key"])
            .arg(&key)
            .arg("--state")
            .arg(&state)
            .arg("--log")
            .arg(format!("{ORIGIN}={log_key}")),
    );
    let line = proc
        .stderr
        .wait_for_async(Duration::from_secs(20), |l| {
            l.contains("listening on http://")
        })
        .await
        .unwrap_or_else(|| panic!("the witness did not start: {}", proc.stderr.text()));
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    Witness {
        proc,
        url,
        key,
        public,
        state,
    }
}

/// A gateway with a signing key (checkpoints every second) and these witnesses.
async fn gateway(backend: &Backend, signing: &Path, witnesses: &[&str], extra: &[&str]) -> Served {
    let mut cmd = backend.serve_command();
    cmd.arg("--audit-signing-key-file")
        .arg(signing)
        .args(["--audit-checkpoint-interval-secs", "1"]);
    for w in witnesses {
        cmd.args(["--audit-witness", w]);
    }
    cmd.args(extra);
    backend.serve(cmd).await
}

async fn readyz(gw: &Served) -> (u16, serde_json::Value) {
    let r = gw.admin("/readyz").await;
    (r.status.as_u16(), r.json())
}

/// Waits until every witness has cosigned a checkpoint covering `size` records, then
/// returns /readyz's witness detail.
async fn cosigned_at_least(gw: &Served, size: u64) -> serde_json::Value {
    eventually("witnesses to cosign", Duration::from_secs(30), async || {
        let (_, v) = readyz(gw).await;
        let w = v["checks"]["witnesses"].clone();
        (w["newest_quorum_size"].as_u64() >= Some(size)).then_some(w)
    })
    .await
}

fn log_lines(log: &Path) -> Vec<Vec<u8>> {
    std::fs::read(log)
        .unwrap()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Records in the log so far (the newest seq).
fn log_size(log: &Path) -> u64 {
    log_lines(log).len() as u64
}

/// A witness that answers every submission with a cosignature that does not verify: the
/// witness's real name and key ID, and a signature of noise.
async fn forging_witness(public: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (name, rest) = public.split_once('+').unwrap();
    let id = u32::from_str_radix(&rest[..8], 16).unwrap();
    let mut blob = id.to_be_bytes().to_vec();
    blob.extend_from_slice(&1_700_000_000u64.to_be_bytes());
    blob.extend_from_slice(&[7u8; 64]);
    let line = format!("\u{2014} {name} {}\n", b64.encode(blob));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let line = line.clone();
            let service = hyper::service::service_fn(move |_req| {
                let line = line.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from(line)),
                    ))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn two_witnesses_give_a_quorum_and_with_one_down_the_age_grows_while_requests_go_on() {
    let backend = common::served::backend(graphgate_emulator::EmulatorConfig::default()).await;
    let dir = &backend.dir;
    let (signing, log_key) = keygen("audit", "graphgate.test/audit", dir);
    let w1 = witness(dir, "witness-1.test", &log_key).await;
    let w2 = witness(dir, "witness-2.test", &log_key).await;
    // A third "witness" forges its cosignatures; two of three make the quorum.
    let (_, forger_key) = keygen("witness", "witness-3.test", dir);
    let forger = forging_witness(&forger_key).await;
    let gw = gateway(
        &backend,
        &signing,
        &[
            &format!("{}={}", w1.url, w1.public),
            &format!("{}={}", w2.url, w2.public),
            &format!("{forger}={forger_key}"),
        ],
        &["--audit-witness-quorum", "2"],
    )
    .await;
    let log = dir.join("audit.jsonl");
    for _ in 0..3 {
        let r = gw
            .post(common::ACTION_PATH, ROTATOR_KEY, &common::body())
            .await;
        assert_eq!(r.status, 204);
    }
    let size = log_size(&log);
    let detail = cosigned_at_least(&gw, size).await;
    assert_eq!(detail["quorum"], 2);
    let statuses: Vec<&str> = detail["witnesses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses[..2], ["ok", "ok"], "{detail}");
    assert!(
        statuses[2].contains("does not verify (forged?)"),
        "the forger is named: {detail}"
    );
    let (status, _) = readyz(&gw).await;
    assert_eq!(status, 200, "a witness that forges is not a rollback");

    // An operator's check of the log: the cosigned checkpoint (two of three witnesses) matches.
    let files = format!("{}", log.display());
    let out = run(&[
        "audit",
        "verify",
        "--public-key",
        &log_key,
        "--witness-key",
        &w1.public,
        "--witness-key",
        &w2.public,
        "--no-anchor",
        &files,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("is cosigned by 2 of 2"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("checked: hash chain"), "{}", text(&out));
    // The forger's key is not among the cosignatures: requiring it fails, naming it.
    let out = run(&[
        "audit",
        "verify",
        "--public-key",
        &log_key,
        "--witness-key",
        &w1.public,
        "--witness-key",
        &forger_key,
        "--no-anchor",
        &files,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("cosigned by 2 of the 2"),
        "{}",
        text(&out)
    );

    // Every checkpoint cosigned by a quorum: nothing waits, the age is 0.
    let age = |m: &str| common::metrics::value(m, "graphgate_audit_witness_quorum_age_seconds");
    let before = eventually(
        "the quorum's age to be 0 with every checkpoint cosigned",
        Duration::from_secs(20),
        async || {
            let now = age(&gw.metrics().await);
            (now == 0.0).then_some(now)
        },
    )
    .await;
    // Witness 2 goes down: requests go on, the quorum's age grows, the gateway stays ready.
    drop(w2);
    for _ in 0..3 {
        let r = gw
            .post(common::ACTION_PATH, ROTATOR_KEY, &common::body())
            .await;
        assert_eq!(r.status, 204, "no request waits on a witness");
    }
    let grown = eventually(
        "the quorum's age to grow",
        Duration::from_secs(20),
        async || {
            let now = age(&gw.metrics().await);
            (now >= before + 3.0).then_some(now)
        },
    )
    .await;
    assert!(grown >= before + 3.0);
    let (status, v) = readyz(&gw).await;
    assert_eq!(status, 200, "{v}");
    let w = &v["checks"]["witnesses"]["witnesses"];
    assert!(
        w[1]["status"].as_str().unwrap().starts_with("failing:"),
        "{v}"
    );
    // Witness 1 goes on cosigning the new records; no quorum covers them.
    let total = log_size(&log);
    let v = eventually(
        "witness 1 to cosign every record",
        Duration::from_secs(20),
        async || {
            let (_, v) = readyz(&gw).await;
            (v["checks"]["witnesses"]["witnesses"][0]["cosigned_size"].as_u64() == Some(total))
                .then_some(v)
        },
    )
    .await;
    let quorum = v["checks"]["witnesses"]["newest_quorum_size"]
        .as_u64()
        .unwrap();
    assert!(quorum >= size && quorum < total, "{v}");
    let errors = common::metrics::value(
        &gw.metrics().await,
        "graphgate_audit_witness_submissions_total{result=\"error\"}",
    );
    assert!(errors >= 1.0, "failed submissions are counted");
    drop(w1);
}

#[tokio::test]
async fn receipts_verify_offline_and_fail_on_any_changed_byte_and_tiles_match_an_independent_verifier()
 {
    let backend = common::served::backend(graphgate_emulator::EmulatorConfig::default()).await;
    let dir = &backend.dir;
    let (signing, log_key) = keygen("audit", "graphgate.test/audit", dir);
    let w1 = witness(dir, "witness-1.test", &log_key).await;
    let w2 = witness(dir, "witness-2.test", &log_key).await;
    let gw = gateway(
        &backend,
        &signing,
        &[
            &format!("{}={}", w1.url, w1.public),
            &format!("{}={}", w2.url, w2.public),
        ],
        &[],
    )
    .await;
    let log = dir.join("audit.jsonl");
    let mut ids = Vec::new();
    for _ in 0..5 {
        let r = gw
            .post(common::ACTION_PATH, ROTATOR_KEY, &common::body())
            .await;
        assert_eq!(r.status, 204);
        ids.push(
            r.headers["x-graphgate-request-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    let size = log_size(&log);
    cosigned_at_least(&gw, size).await;

    // The receipt of the third request's records (intent and outcome).
    let receipt = dir.join("receipt.json");
    let out = run(&[
        "audit",
        "prove",
        "--audit-id",
        &ids[2],
        "--audit-log",
        log.to_str().unwrap(),
        "--out",
        receipt.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let verify = |path: &Path| {
        run(&[
            "audit",
            "verify-receipt",
            path.to_str().unwrap(),
            "--public-key",
            &log_key,
            "--witness-key",
            &w1.public,
            "--witness-key",
            &w2.public,
        ])
    };
    let out = verify(&receipt);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("audit_id {}, intent", ids[2])),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains(&format!("audit_id {}, outcome", ids[2])),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("cosigned by 2 of 2 witness(es)"),
        "{}",
        text(&out)
    );

    // The independent verifier agrees: each record is in the tree the checkpoint signs.
    let bytes = std::fs::read(&receipt).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["format"], "graphgate-audit-receipt/v1");
    let note = doc["checkpoint"].as_str().unwrap();
    let lines: Vec<&str> = note.lines().collect();
    assert_eq!(lines[0], ORIGIN);
    let tree_size: u64 = lines[1].parse().unwrap();
    let root = rfc6962::b64(lines[2]);
    for r in doc["records"].as_array().unwrap() {
        let proof: Vec<rfc6962::H> = r["inclusion_proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| rfc6962::b64(h.as_str().unwrap()))
            .collect();
        let leaf = rfc6962::leaf(r["record"].as_str().unwrap().as_bytes());
        let index = r["leaf_index"].as_u64().unwrap();
        assert!(rfc6962::verify_inclusion(
            index, tree_size, &leaf, &proof, &root
        ));
        assert!(!rfc6962::verify_inclusion(
            index + 1,
            tree_size,
            &leaf,
            &proof,
            &root
        ));
    }
    // ... and the root is the tree of the log's records.
    let all = log_lines(&log);
    assert_eq!(rfc6962::root(&all[..tree_size as usize]), root);

    // Any changed byte fails: every position, one bit.
    let log_v = graphgate::audit::checkpoints::note::NoteVerifier::parse(&log_key).unwrap();
    let ws = [
        graphgate::audit::checkpoints::note::NoteVerifier::parse(&w1.public).unwrap(),
        graphgate::audit::checkpoints::note::NoteVerifier::parse(&w2.public).unwrap(),
    ];
    graphgate::audit::read::receipt::check(&bytes, &log_v, &ws, 2).unwrap();
    for i in 0..bytes.len() {
        let mut changed = bytes.clone();
        changed[i] ^= 0x01;
        assert!(
            graphgate::audit::read::receipt::check(&changed, &log_v, &ws, 2).is_err(),
            "a receipt with byte {i} changed ({:?}) passed",
            char::from(bytes[i])
        );
    }
    let mut changed = bytes.clone();
    let at = String::from_utf8_lossy(&bytes)
        .find("\\\"decision\\\":\\\"allowed")
        .unwrap()
        + 14;
    changed[at] = b'X';
    std::fs::write(dir.join("altered.json"), &changed).unwrap();
    let out = verify(&dir.join("altered.json"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("FAILED"), "{}", text(&out));

    // The tiles: the checkpoint, the level-0 tile and the entry bundle of the tree it signs.
    let cp = gw.admin("/audit/tlog/checkpoint").await;
    assert_eq!(cp.status, 200);
    let cp_text = String::from_utf8(cp.body.to_vec()).unwrap();
    let served_size: u64 = cp_text.lines().nth(1).unwrap().parse().unwrap();
    let served_root = rfc6962::b64(cp_text.lines().nth(2).unwrap());
    assert!(served_size < 256, "one partial tile");
    let tile = gw
        .admin(&format!("/audit/tlog/tile/0/000.p/{served_size}"))
        .await;
    assert_eq!(tile.status, 200);
    assert_eq!(tile.headers["content-type"], "application/octet-stream");
    assert_eq!(tile.body.len() as u64, 32 * served_size);
    let bundle = gw
        .admin(&format!("/audit/tlog/tile/entries/000.p/{served_size}"))
        .await;
    assert_eq!(bundle.status, 200);
    let mut entries = Vec::new();
    let mut rest = &bundle.body[..];
    while !rest.is_empty() {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        entries.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    assert_eq!(entries.len() as u64, served_size);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(
            &tile.body[32 * i..32 * i + 32],
            &rfc6962::leaf(e),
            "entry {i}"
        );
    }
    assert_eq!(rfc6962::root(&entries), served_root);
    for (path, why) in [
        ("tile/0/000", "a full tile the tree does not have"),
        (
            &format!("tile/0/000.p/{}", served_size + 1) as &str,
            "a wider partial tile",
        ),
        ("tile/1/000.p/1", "a level above"),
        ("tile/0/x999/x999/x999/x999/x999/x999/999", "a huge index"),
        ("tile/0/99999999999999999999999", "not a path"),
        ("tile/entries/001", "entries past the end"),
        ("../audit.jsonl", "not a path"),
    ] {
        let r = gw.admin(&format!("/audit/tlog/{path}")).await;
        assert_eq!(r.status, 404, "{why}: {path}");
    }

    // Every consistency and inclusion proof the gateway's tree gives (what it sends the
    // witnesses) checks out with the independent verifier.
    let view = graphgate::audit::checkpoints::tree::TreeView::open(
        &graphgate::audit::checkpoints::tree::path_for(&log),
        served_size,
    )
    .unwrap();
    let n = served_size as usize;
    for new in 1..=n {
        let new_root = rfc6962::root(&entries[..new]);
        for old in 1..=new {
            let proof: Vec<rfc6962::H> = view
                .consistency(old as u64, new as u64)
                .unwrap()
                .iter()
                .map(|h| h.0)
                .collect();
            let old_root = rfc6962::root(&entries[..old]);
            assert!(
                rfc6962::verify_consistency(old as u64, new as u64, &old_root, &new_root, &proof),
                "{old} -> {new}"
            );
            if old < new {
                assert!(!rfc6962::verify_consistency(
                    old as u64, new as u64, &new_root, &new_root, &proof
                ));
            }
        }
        for (i, entry) in entries[..new].iter().enumerate() {
            let proof: Vec<rfc6962::H> = view
                .inclusion(i as u64, new as u64)
                .unwrap()
                .iter()
                .map(|h| h.0)
                .collect();
            assert!(rfc6962::verify_inclusion(
                i as u64,
                new as u64,
                &rfc6962::leaf(entry),
                &proof,
                &new_root
            ));
        }
    }
    drop((w1, w2));
}

/// The attack of the issue: write access to the audit volume, no keys. Keep the first 15 of
/// 28 records, delete the anchor and the checkpoints, restart.
#[tokio::test]
async fn a_cut_log_is_refused_at_start_and_a_rollback_is_caught_by_a_witness() {
    let backend = common::served::backend(graphgate_emulator::EmulatorConfig::default()).await;
    let dir = &backend.dir;
    let (signing, log_key) = keygen("audit", "graphgate.test/audit", dir);
    let w = witness(dir, "witness-1.test", &log_key).await;
    let witness_flag = format!("{}={}", w.url, w.public);
    let log = dir.join("audit.jsonl");
    let gw = gateway(&backend, &signing, &[&witness_flag], &[]).await;
    while log_size(&log) < 28 {
        let r = gw
            .post(common::ACTION_PATH, ROTATOR_KEY, &common::body())
            .await;
        assert_eq!(r.status, 204);
    }
    let size = log_size(&log);
    cosigned_at_least(&gw, size).await;
    let (status, _) = gw.terminate().await;
    assert!(status.success());
    assert!(log_size(&log) >= 28);

    // The attacker's cut.
    let lines = log_lines(&log);
    let kept: Vec<u8> = lines[..15]
        .iter()
        .flat_map(|l| [l.as_slice(), b"\n"].concat())
        .collect();
    std::fs::write(&log, &kept).unwrap();
    for suffix in ["anchor", "checkpoints", "tree", "cosigned"] {
        let _ = std::fs::remove_file(dir.join(format!("audit.jsonl.{suffix}")));
    }
    let mut cmd = backend.serve_command();
    cmd.arg("--audit-signing-key-file")
        .arg(&signing)
        .args(["--audit-witness", &witness_flag]);
    let mut proc = Proc::spawn(&mut cmd);
    let exit = proc.wait_exit(Duration::from_secs(30));
    let said = proc.stdout.read_to_end(Duration::from_secs(5))
        + &proc.stderr.read_to_end(Duration::from_secs(5));
    assert!(!exit.success(), "{said}");
    assert!(
        said.contains("holds records (from seq 1) but its anchor")
            && said.contains("audit.jsonl.checkpoints and its")
            && said.contains("audit.jsonl.tree are missing"),
        "names what is missing: {said}"
    );
    assert!(
        said.contains("graphgate audit verify"),
        "says how to investigate: {said}"
    );
    assert!(!said.contains("graphgate listening"), "{said}");

    // An insider who also holds the HMAC key re-makes the anchor for the 15 records left (as
    // if no checkpoint had ever been signed): only the witness still knows better.
    let fp = graphgate::audit::Fingerprinter::from_file(&dir.join("hmac.key")).unwrap();
    let last: serde_json::Value = serde_json::from_slice(&lines[14]).unwrap();
    let state = graphgate::audit::records::chain::ChainState {
        seq: 15,
        hash: last["hash"].as_str().unwrap().into(),
    };
    let anchor = graphgate::audit::store::anchor::Anchor::new(
        &log,
        &state,
        graphgate::audit::store::anchor::Anchor::genesis_tail(),
    );
    anchor
        .store(&graphgate::audit::store::anchor::path_for(&log), &fp)
        .unwrap();
    let mut proc = Proc::spawn(&mut cmd);
    let exit = proc.wait_exit(Duration::from_secs(30));
    let said = proc.stdout.read_to_end(Duration::from_secs(5))
        + &proc.stderr.read_to_end(Duration::from_secs(5));
    assert!(!exit.success(), "{said}");
    assert!(
        said.contains(&format!("the witness {} has cosigned", w.url))
            && said.contains("but")
            && said.contains("holds 15"),
        "{said}"
    );

    // Started anyway as a new tree on purpose: the witness refuses the smaller log, and the
    // gateway says so and is not ready.
    cmd.arg("--audit-new-tree");
    let gw = backend.serve(cmd).await;
    let v = eventually(
        "the witness to refuse the new tree",
        Duration::from_secs(30),
        async || {
            let (status, v) = readyz(&gw).await;
            (status == 503).then_some(v)
        },
    )
    .await;
    let said = v["checks"]["witnesses"]["witnesses"][0]["status"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        said.starts_with("rollback: the witness has cosigned"),
        "{v}"
    );
    let witnessed: u64 = said["rollback: the witness has cosigned ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        witnessed >= size && said.contains("records but the log holds"),
        "{v}"
    );
    assert_eq!(v["checks"]["witnesses"]["ok"], false);
    // The new log says why it started, and where the old files went.
    let first: serde_json::Value = serde_json::from_slice(&log_lines(&log)[0]).unwrap();
    assert!(
        first["note"]
            .as_str()
            .unwrap()
            .contains("a new audit tree was started on purpose"),
        "{first}"
    );
    let moved: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("audit.jsonl.set-aside-")
        })
        .collect();
    assert_eq!(moved.len(), 1);
    assert!(moved[0].path().join("audit.jsonl").exists());
    drop(gw);
    drop(w);
}

/// The witness by the specification: each refusal with its status, the cosignature, and the
/// state kept across a restart.
#[tokio::test]
async fn a_witness_answers_as_the_specification_says_and_keeps_its_state() {
    use graphgate::audit::checkpoints::note::{NoteSigner, NoteVerifier};
    use graphgate::audit::checkpoints::tree::Tree;
    let dir = common::temp_dir("witness");
    let (signing, log_key) = keygen("audit", "graphgate.test/audit", &dir);
    let signer = graphgate::audit::open::load_signer(&signing).unwrap();
    let w = witness(&dir, "witness-1.test", &log_key).await;
    let mut tree = Tree::open(&dir.join("t.tree")).unwrap();
    let leaves: Vec<Vec<u8>> = (0..20)
        .map(|i| format!("{{\"seq\":{}}}", i + 1).into_bytes())
        .collect();
    let mut notes = vec![String::new()];
    for l in &leaves {
        tree.push(l).unwrap();
        let text = format!("{ORIGIN}\n{}\n{}\n", tree.size(), {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(tree.root().unwrap().0)
        });
        notes.push(signer.sign(&text).unwrap());
    }
    tree.sync().unwrap();
    let view = tree.view().unwrap();
    let post = async |body: String| -> (u16, String, String) {
        let req = http::Request::post(format!("{}/add-checkpoint", w.url))
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let r = common::send_to(req).await;
        let ct = r
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (
            r.status.as_u16(),
            ct,
            String::from_utf8_lossy(&r.body).into_owned(),
        )
    };
    let body = |old: u64, new: usize| {
        let proof = view.consistency(old, new as u64).unwrap();
        graphgate::audit::witnessing::witness_protocol::request_body(old, &proof, &notes[new])
    };
    let wkey = NoteVerifier::parse(&w.public).unwrap();
    // First checkpoint: from 0, cosigned.
    let (status, _, line) = post(body(0, 5)).await;
    assert_eq!(status, 200, "{line}");
    let at = wkey.cosigned_at(&format!("{}{line}", notes[5])).unwrap();
    assert!(at > 1_700_000_000);
    // The client thinks the witness is at 0: a 409 with the size it is at.
    let (status, ct, size) = post(body(0, 8)).await;
    assert_eq!(
        (status, ct.as_str(), size.as_str()),
        (409, "text/x.tlog.size", "5\n")
    );
    // A proof from the right size that does not verify: 422.
    let mut bad = view.consistency(5, 8).unwrap();
    bad[0].0[0] ^= 1;
    let (status, _, _) =
        post(graphgate::audit::witnessing::witness_protocol::request_body(5, &bad, &notes[8]))
            .await;
    assert_eq!(status, 422);
    // The right proof: cosigned.
    assert_eq!(post(body(5, 8)).await.0, 200);
    // Old larger than the checkpoint: 400. Garbage: 400. Another origin: 404.
    let (status, _, _) =
        post(graphgate::audit::witnessing::witness_protocol::request_body(9, &[], &notes[8])).await;
    assert_eq!(status, 400);
    assert_eq!(post("old x\n\nnonsense".into()).await.0, 400);
    let other = signer
        .sign("other.example/log\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
        .unwrap();
    assert_eq!(post(format!("old 0\n\n{other}")).await.0, 404);
    // Signed by another key, or a signature altered: 403.
    let (stranger, _) = NoteSigner::generate("graphgate.test/audit").unwrap();
    let text8 = &notes[8][..=notes[8].find("\n\n").unwrap()];
    assert_eq!(
        post(format!("old 8\n\n{}", stranger.sign(text8).unwrap()))
            .await
            .0,
        403
    );
    let forged = notes[8].replacen("\n8\n", "\n9\n", 1);
    assert_eq!(post(format!("old 8\n\n{forged}")).await.0, 403);
    // A rollback: a smaller tree than cosigned.
    let (status, _, size) = post(body(5, 6)).await;
    assert_eq!((status, size.as_str()), (409, "8\n"));
    // Its monitoring endpoint serves what it cosigned.
    let hash = graphgate::audit::witnessing::witness_protocol::origin_hash(ORIGIN);
    let r = common::send_to(
        http::Request::get(format!("{}/{hash}/checkpoint", w.url))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    let served = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(
        served.starts_with(text8) && wkey.cosigned_at(&served).is_ok(),
        "{served}"
    );
    // Killed and restarted on its state: it still knows size 8.
    let Witness {
        proc,
        key,
        public,
        state,
        ..
    } = w;
    drop(proc);
    let w = start_witness(key, public, state, &log_key).await;
    let req = http::Request::post(format!("{}/add-checkpoint", w.url))
        .body(http_body_util::Full::new(bytes::Bytes::from(body(0, 10))))
        .unwrap();
    let r = common::send_to(req).await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (409, &b"8\n"[..]));
}
