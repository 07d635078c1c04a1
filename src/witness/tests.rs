//! Unit tests of the witness: which logs it takes (by origin, or by an origin prefix).

use std::collections::HashMap;

use super::server::Witness;
use super::state::States;
use crate::audit::checkpoints::checkpoint::Checkpoint;
use crate::audit::checkpoints::note::NoteSigner;
use crate::audit::checkpoints::tree;
use crate::audit::records::chain::hex;
use crate::audit::witnessing::witness_protocol::request_body;

/// A checkpoint of one record for `origin`, signed by `signer`, as a first submission.
fn first_submission(signer: &NoteSigner, origin: &str) -> String {
    let root = tree::leaf_hash(origin.as_bytes());
    let text = Checkpoint {
        origin: origin.to_owned(),
        size: 1,
        hash: hex(&root.0),
    }
    .text()
    .unwrap();
    request_body(0, &[], &signer.sign(&text).unwrap())
}

#[tokio::test]
async fn a_prefix_takes_every_log_under_it_and_an_origin_of_its_own_wins() {
    let (log, _) = NoteSigner::generate("graphgate.test/audit").unwrap();
    let (other, _) = NoteSigner::generate("graphgate.test/other").unwrap();
    let (cosigner, _) = NoteSigner::generate_cosigner("witness.test").unwrap();
    let dir = std::env::temp_dir().join(format!("graphgate-witness-{}", uuid::Uuid::new_v4()));
    let logs = HashMap::from([
        ("graphgate.test/audit/*".to_owned(), log.verifier()),
        (
            "graphgate.test/audit/special.jsonl".to_owned(),
            other.verifier(),
        ),
    ]);
    let witness = Witness::new(cosigner, logs, States::load(&dir).unwrap());
    let status = async |signer: &NoteSigner, origin: &str| {
        let body = first_submission(signer, origin);
        witness.add_checkpoint(body.as_bytes()).await.0.as_u16()
    };
    assert_eq!(status(&log, "graphgate.test/audit/pod-a.jsonl").await, 200);
    assert_eq!(status(&log, "graphgate.test/audit/pod-b.jsonl").await, 200);
    // Not under the prefix, or the prefix alone: unknown.
    assert_eq!(status(&log, "graphgate.test/auditx.jsonl").await, 404);
    assert_eq!(status(&log, "graphgate.test/audit/").await, 404);
    // A log named on its own is checked with its own key, not the prefix's.
    assert_eq!(
        status(&log, "graphgate.test/audit/special.jsonl").await,
        403
    );
    assert_eq!(
        status(&other, "graphgate.test/audit/special.jsonl").await,
        200
    );
    // Each log under the prefix has a state of its own, kept on disk.
    let again = States::load(&dir).unwrap();
    assert_eq!(again.len(), 3);
    assert!(again.get("graphgate.test/audit/pod-a.jsonl").is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn log_flags_with_a_star_anywhere_but_the_end_are_refused() {
    let (log, _) = NoteSigner::generate("graphgate.test/audit").unwrap();
    let key = log.verifier().to_string();
    assert!(super::parse_logs(&[format!("graphgate.test/audit/*={key}")]).is_ok());
    let problems = super::parse_logs(&[
        format!("graphgate.test/*/audit={key}"),
        format!("*={key}"),
        "no-key".to_owned(),
    ])
    .unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:?}");
}
