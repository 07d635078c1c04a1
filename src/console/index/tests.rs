//! Unit tests of the console's index: folding, filters, pages, the chain check.

use super::*;
use crate::audit::records::chain::ChainState;
use crate::audit::records::record::Entry;

fn entry(kind: Kind, id: &str, device: &str, decision: AuditDecision) -> Entry {
    Entry {
        kind: Some(kind),
        time: "2026-11-28T10:00:00.000000Z".into(),
        audit_id: id.into(),
        caller: Some("rooms-rotator".into()),
        operation: Some("managedDevices.wipe".into()),
        device_id: Some(device.into()),
        decision: Some(decision),
        ..Entry::default()
    }
}

fn lines(entries: &[Entry]) -> Vec<Line> {
    let mut state = ChainState::default();
    let mut offset = 0;
    entries
        .iter()
        .map(|e| {
            let bytes = state.seal(e).unwrap();
            let line = Line {
                seq: state.seq,
                file: PathBuf::from("audit.jsonl"),
                offset,
                bytes,
            };
            offset += line.bytes.len() as u64 + 1;
            line
        })
        .collect()
}

#[test]
fn rows_fold_intents_and_completions_and_filters_select_newest_first() {
    use AuditDecision::{Allowed, Denied};
    let mut done = entry(Kind::Completion, "a", "D1", Allowed);
    done.decision = None;
    done.completion = Some("done".into());
    let all = lines(&[
        entry(Kind::Intent, "a", "D1", Allowed),
        entry(Kind::Outcome, "a", "D1", Allowed),
        entry(Kind::Intent, "b", "D2", Allowed), // no outcome: shown
        entry(Kind::Request, "c", "D1", Denied),
        done,
    ]);
    let idx = Index::default();
    idx.ingest(&all);
    assert_eq!(idx.chain().verified_to, 5);
    let q = |f: fn(&mut Query)| {
        let mut q = Query {
            limit: 10,
            ..Query::default()
        };
        f(&mut q);
        idx.select(&q)
            .0
            .iter()
            .map(|h| (h.seq, h.completion))
            .collect::<Vec<_>>()
    };
    assert_eq!(q(|_| {}), [(4, None), (3, None), (2, Some("done"))]);
    assert_eq!(
        q(|q| q.device = Some("d1".into())),
        [(4, None), (2, Some("done"))]
    );
    assert_eq!(q(|q| q.decision = Some("denied".into())), [(4, None)]);
    assert_eq!(q(|q| q.operation = Some("WIPE".into())).len(), 3);
    assert!(q(|q| q.caller = Some("nobody".into())).is_empty());
    assert_eq!(q(|q| q.before = Some(4)), [(3, None), (2, Some("done"))]);
    let (page, older) = idx.select(&Query {
        limit: 1,
        ..Query::default()
    });
    assert_eq!(
        (page.len(), older),
        (1, Some(4)),
        "the next page starts before seq 4"
    );
    assert!(std::mem::size_of::<Row>() <= 48);
}

#[test]
fn an_altered_record_stops_the_verified_range() {
    let mut all = lines(&[
        entry(Kind::Request, "a", "D1", AuditDecision::Denied),
        entry(Kind::Request, "b", "D1", AuditDecision::Denied),
        entry(Kind::Request, "c", "D1", AuditDecision::Denied),
    ]);
    let text = String::from_utf8(all[1].bytes.clone()).unwrap();
    all[1].bytes = text.replace("rooms-rotator", "someone-else").into_bytes();
    let idx = Index::default();
    idx.ingest(&all);
    let chain = idx.chain();
    assert_eq!(chain.verified_to, 1);
    assert!(chain.broken.unwrap().contains("record altered"));
    assert_eq!(idx.len(), 3, "still indexed, and shown");
}

/// A batch large enough to be prepared on several cores meets the index in chain order:
/// each row is its own record's, and the chain check stops at the altered one.
#[test]
fn a_large_batch_is_indexed_in_order_and_checked_record_by_record() {
    let n = 5000;
    let entries: Vec<Entry> = (0..n)
        .map(|i| {
            let mut e = entry(Kind::Request, &format!("r{i}"), "D1", AuditDecision::Denied);
            e.device_id = Some(format!("{:08x}-0000-4000-8000-000000000000", i));
            e.time = format!("2026-11-28T10:{:02}:{:02}.000000Z", i / 60 % 60, i % 60);
            e
        })
        .collect();
    let mut all = lines(&entries);
    let text = String::from_utf8(all[3500].bytes.clone()).unwrap();
    all[3500].bytes = text.replace("rooms-rotator", "someone-else").into_bytes();
    let idx = Index::default();
    idx.ingest(&all);
    assert_eq!(idx.len(), n);
    assert_eq!(idx.chain().verified_to, 3500, "seq 3501 is the altered one");
    for i in [0usize, 1234, 2499, 2500, 2501, 4999] {
        let q = Query {
            device: Some(format!("{:08x}-0000-4000-8000-000000000000", i)),
            limit: 10,
            ..Query::default()
        };
        let (hits, _) = idx.select(&q);
        assert_eq!(hits.len(), 1, "device of record {i}");
        assert_eq!(hits[0].seq, i as u64 + 1);
        assert_eq!(hits[0].offset, all[i].offset);
        let at = 1_795_860_000 + (i as i64 / 60 % 60) * 60 + i as i64 % 60;
        let q = Query {
            since: Some(at),
            until: Some(at + 1),
            limit: 100,
            ..Query::default()
        };
        assert!(
            idx.select(&q).0.iter().any(|h| h.seq == i as u64 + 1),
            "time of record {i}"
        );
    }
}

/// Refusals naming a million random device ids leave no string behind: a device is a
/// number in its row, and the distinct-device count stops at its cap.
#[test]
fn random_device_ids_grow_no_table() {
    let mut st = State::default();
    let n = MAX_COUNTED_DEVICES + 10;
    for i in 0..n {
        let row = Row {
            device: device_key(&uuid::Uuid::from_u128(i as u128 + 1).to_string()),
            ..Row::default()
        };
        st.count_device(row.device);
    }
    assert_eq!(st.devices.len(), MAX_COUNTED_DEVICES);
    assert!(st.devices_overflow);
    assert!(st.callers.names.is_empty() && st.ops.names.is_empty());
    // A GUID is found in any case; other ids by their lower case.
    let g = "0B6F2F1E-1A2B-4C3D-8E9F-00112233AABB";
    assert_eq!(device_key(g), device_key(&g.to_ascii_lowercase()));
    assert_eq!(device_key("D1"), device_key("d1"));
    assert_ne!(device_key("d1"), 0);
    // The string tables are capped too.
    let mut names = super::super::record::Interner::default();
    for i in 0..super::super::record::MAX_NAMES + 5 {
        names.intern(Some(&format!("caller-{i}")));
    }
    assert_eq!(names.names.len(), super::super::record::MAX_NAMES);
    assert_eq!(names.intern(Some("one-more")), super::super::record::OTHER);
}

/// The index's Merkle roots are RFC 6962's at every size (across marks), see a record
/// rewritten on disk after it was indexed, and start from the tree file when the index
/// starts past seq 1.
#[test]
fn roots_at_any_size_match_the_tree_and_see_a_rewrite_on_disk() {
    use crate::audit::checkpoints::tree::{Tree, leaf_hash};
    let dir = std::env::temp_dir().join(format!("graphgate-edge-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("audit.jsonl");
    let n = super::super::edge::MARK as usize * 2 + 37;
    let entries: Vec<Entry> = (0..n)
        .map(|i| entry(Kind::Request, &format!("r{i}"), "D1", AuditDecision::Denied))
        .collect();
    let mut all = lines(&entries);
    let mut text = Vec::new();
    let mut tree = Tree::open(&crate::audit::checkpoints::tree::path_for(&log)).unwrap();
    for line in &mut all {
        line.file = log.clone();
        text.extend_from_slice(&line.bytes);
        text.push(b'\n');
        tree.push(&line.bytes).unwrap();
    }
    tree.sync().unwrap();
    std::fs::write(&log, &text).unwrap();
    let view = tree.view().unwrap();
    let idx = Index::default();
    idx.ingest(&all);
    for size in [1u64, 2, 1023, 1024, 1025, 2048, 2049, n as u64] {
        assert_eq!(
            idx.root_at(size),
            Some(view.root_at(size).unwrap()),
            "size {size}"
        );
    }
    assert_eq!(idx.root_at(n as u64 + 1), None, "not indexed yet");
    // Started past seq 1 (the oldest records removed): the tree file gives the edge.
    let late = Index::default();
    late.ingest(&all[1500..]);
    assert_eq!(late.root_at(1700), Some(view.root_at(1700).unwrap()));
    assert_eq!(late.root_at(1400), None, "before the records indexed");
    // A record rewritten in place after it was indexed (same length) changes the root.
    let last = all.last().unwrap();
    let mut changed = text.clone();
    let at = last.offset as usize + last.bytes.len() - 3;
    changed[at] ^= 1;
    std::fs::write(&log, &changed).unwrap();
    assert_ne!(idx.root_at(n as u64), Some(view.root_at(n as u64).unwrap()));
    assert_ne!(
        leaf_hash(&last.bytes),
        leaf_hash(&changed[last.offset as usize..at + 3])
    );
}

#[test]
fn every_kind_of_record_keeps_its_kind_in_the_index() {
    let kinds = [
        Kind::Start,
        Kind::Intent,
        Kind::Outcome,
        Kind::Request,
        Kind::Suppressed,
        Kind::Completion,
        Kind::Approval,
    ];
    let entries: Vec<Entry> = kinds
        .iter()
        .map(|k| entry(*k, k.as_str(), "D1", AuditDecision::Allowed))
        .collect();
    let idx = Index::default();
    idx.ingest(&lines(&entries));
    let st = idx.state.read().unwrap();
    let indexed: Vec<Option<Kind>> = st.rows.iter().map(kind_of).collect();
    assert_eq!(indexed, kinds.map(Some));
}
