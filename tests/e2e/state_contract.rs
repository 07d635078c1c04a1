//! The state store's contract (`graphgate::state::Store`), held against both backends: one
//! suite of cases runs on the memory store and on a real redis-server (skipped visibly
//! without one, failing under `CI=true`). And the vector tests: `algo.rs` and the take script
//! are fed the same steps at the same times (rate limits, pacing, then whole requests) and
//! must give the same answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use graphgate::cloud::Cloud;
use graphgate::idempotency::StoredResponse;
use graphgate::policy::Rate;
use graphgate::state::algo::micros;
use graphgate::state::config::StateOptions;
use graphgate::state::{
    Admission, Admit, Ask, BudgetCharge, Claim, ClaimId, ClaimSettings, Created, Duplicate, Held,
    Idempotency, IndexEntry, Limiter, Namespace, NewRecord, Refund, Refused, StateConfig,
    StateStore, Step, Swap, Swapped, Take, Taken, Versioned, algo, scripts,
};
use http_body_util::Full;

use crate::common::eventually;
use crate::common::redis::RedisServer;

/// Fresh stores of one backend, each in a namespace of its own.
struct Backend {
    config: StateConfig,
}

impl Backend {
    fn memory() -> Self {
        Backend {
            config: StateConfig::default(),
        }
    }

    fn redis(url: &str) -> Self {
        let options = StateOptions {
            timeout: Duration::from_secs(2),
            ..StateOptions::default()
        };
        Backend {
            config: StateConfig::parse(url, options).unwrap(),
        }
    }

    /// A store whose claims are kept for `window`, duplicates waiting up to `wait`.
    fn store(&self, window: Duration, wait: Duration) -> Arc<StateStore> {
        let claims = ClaimSettings {
            capacity: 1_000,
            window,
            wait,
        };
        let tenant = uuid::Uuid::new_v4().to_string();
        let ns = Namespace::new(Cloud::Global, &tenant, "app", "contract");
        Arc::new(StateStore::open(&self.config, ns, claims).unwrap())
    }

    fn plain(&self) -> Arc<StateStore> {
        self.store(Duration::from_secs(60), Duration::from_secs(10))
    }
}

fn answer(status: u16, body: &'static str) -> StoredResponse {
    let mut resp = http::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
    StoredResponse::of(&resp, Bytes::from_static(body.as_bytes()))
}

const FP: [u8; 32] = [7; 32];
const OTHER_FP: [u8; 32] = [8; 32];

/// What a claim came to, for comparing.
fn kind(claim: &Claim) -> &'static str {
    match claim {
        Claim::Run(_) => "run",
        Claim::Replay(_) => "replay",
        Claim::Mismatch => "mismatch",
        Claim::InFlight => "in flight",
    }
}

/// The first claim of a key runs; once finished, a duplicate gets its answer; the same key
/// for another request is refused; keys are per caller.
async fn a_claim_runs_once_and_its_answer_is_replayed(b: &Backend) {
    let store = b.plain();
    let Claim::Run(ticket) = store.claim("ops", "k1", FP).await.unwrap() else {
        panic!("the first claim runs")
    };
    ticket.finish(answer(202, "{\"first\":true}")).await;
    match store.claim("ops", "k1", FP).await.unwrap() {
        Claim::Replay(stored) => {
            let replayed = stored.replay();
            assert_eq!(replayed.status(), 202);
            assert_eq!(replayed.headers()["idempotent-replayed"], "true");
        }
        other => panic!("a duplicate is replayed, not {}", kind(&other)),
    }
    let other = store.claim("ops", "k1", OTHER_FP).await.unwrap();
    assert_eq!(kind(&other), "mismatch");
    let another_caller = store.claim("helpdesk", "k1", FP).await.unwrap();
    assert_eq!(kind(&another_caller), "run", "keys are per caller");
}

/// Of many concurrent claims of one key exactly one runs; the others wait for its answer.
async fn concurrent_claims_run_exactly_once(b: &Backend) {
    let store = b.plain();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            match store.claim("ops", "race", FP).await.unwrap() {
                Claim::Run(ticket) => {
                    // Hold the key a moment, as a call to Graph would.
                    tokio::task::yield_now().await;
                    ticket.finish(answer(204, "")).await;
                    "run"
                }
                other => kind(&other),
            }
        });
    }
    let kinds = tasks.join_all().await;
    assert_eq!(
        kinds.iter().filter(|k| **k == "run").count(),
        1,
        "{kinds:?}"
    );
    assert!(
        kinds.iter().all(|k| *k == "run" || *k == "replay"),
        "{kinds:?}"
    );
}

/// A ticket dropped unfinished lets the key go (its action did not run): the next claim runs.
async fn a_dropped_ticket_lets_the_next_claim_run(b: &Backend) {
    let store = b.plain();
    let Claim::Run(ticket) = store.claim("ops", "k2", FP).await.unwrap() else {
        panic!("the first claim runs")
    };
    drop(ticket);
    let next = store.claim("ops", "k2", FP).await.unwrap();
    assert_eq!(kind(&next), "run");
}

/// A duplicate of a request still running waits for it only up to the bound.
async fn a_duplicate_waits_only_up_to_its_bound(b: &Backend) {
    let store = b.store(Duration::from_secs(60), Duration::from_millis(300));
    let Claim::Run(_held) = store.claim("ops", "k3", FP).await.unwrap() else {
        panic!("the first claim runs")
    };
    let started = tokio::time::Instant::now();
    let duplicate = store.claim("ops", "k3", FP).await.unwrap();
    assert_eq!(kind(&duplicate), "in flight");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// A claim, and its answer, is forgotten once its window has passed: the key runs again.
async fn a_claim_is_forgotten_after_its_window(b: &Backend) {
    let window = Duration::from_millis(400);
    let store = b.store(window, Duration::from_secs(1));
    let taken = tokio::time::Instant::now();
    let Claim::Run(ticket) = store.claim("ops", "k4", FP).await.unwrap() else {
        panic!("the first claim runs")
    };
    ticket.finish(answer(204, "")).await;
    let again = eventually(
        "the claim is forgotten",
        Duration::from_secs(10),
        async || match store.claim("ops", "k4", FP).await.unwrap() {
            Claim::Run(_) => Some(tokio::time::Instant::now()),
            Claim::Replay(_) => None,
            other => panic!("{}", kind(&other)),
        },
    )
    .await;
    assert!(again - taken >= window - Duration::from_millis(10));
}

/// The rate limiters are charged all or nothing, and a refusal's wait is the truth: after
/// it, the request passes.
async fn limiters_are_charged_all_or_nothing(b: &Backend) {
    let store = b.plain();
    let ns = store.namespace().clone();
    let limiter = |name: &str, count: u32, secs: u64| {
        let rate = Rate {
            count,
            per: Duration::from_secs(secs),
        };
        Limiter {
            key: ns.rate("caller", name, rate),
            rate,
        }
    };
    let both = [limiter("wide", 5, 60), limiter("narrow", 1, 1)];
    assert_eq!(store.limit(&both, 1).await.unwrap(), None);
    let (i, wait) = store.limit(&both, 1).await.unwrap().unwrap();
    assert_eq!(i, 1, "the narrow one refuses");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(1),
        "{wait:?}"
    );
    // The refusal took nothing from the wide one: 4 of its 5 are left.
    for _ in 0..4 {
        assert_eq!(store.limit(&both[..1], 1).await.unwrap(), None);
    }
    assert!(store.limit(&both[..1], 1).await.unwrap().is_some());
    tokio::time::sleep(wait).await;
    assert_eq!(
        store.limit(&both[1..], 1).await.unwrap(),
        None,
        "free after its wait"
    );
}

/// A request of several units (a bulk request's devices) takes them all or none: past what
/// is left it waits for as many units as it lacks, and its refusal takes nothing.
async fn a_request_of_several_units_takes_them_all_or_none(b: &Backend) {
    let store = b.plain();
    let rate = Rate {
        count: 10,
        per: Duration::from_secs(600),
    };
    let bulk = [Limiter {
        key: store.namespace().rate("caller", "bulk", rate),
        rate,
    }];
    assert_eq!(store.limit(&bulk, 7).await.unwrap(), None, "7 of 10");
    let (i, wait) = store.limit(&bulk, 4).await.unwrap().unwrap();
    // One unit lacks: it comes back one interval (60 s) after the burst was taken.
    assert_eq!(i, 0);
    assert!(
        wait > Duration::from_secs(55) && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    assert_eq!(store.limit(&bulk, 3).await.unwrap(), None, "3 still fit");
    let (_, wait) = store.limit(&bulk, 2).await.unwrap().unwrap();
    assert!(wait > Duration::from_secs(115), "two intervals: {wait:?}");
}

/// At shutdown (`stop_waiting`) a duplicate waiting for the first request stops at once
/// (in flight: its caller retries elsewhere), while the first keeps its key: a claim made
/// after that still does not run, and once the first finishes its answer is replayed.
async fn a_waiting_duplicate_stops_at_shutdown_and_the_key_stays_claimed(b: &Backend) {
    let store = b.store(Duration::from_secs(60), Duration::from_secs(60));
    let Claim::Run(first) = store.claim("ops", "k5", FP).await.unwrap() else {
        panic!("the first claim runs")
    };
    let waiting = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.claim("ops", "k5", FP).await.unwrap() })
    };
    let started = tokio::time::Instant::now();
    store.stop_waiting();
    assert_eq!(kind(&waiting.await.unwrap()), "in flight");
    assert_eq!(
        kind(&store.claim("ops", "k5", FP).await.unwrap()),
        "in flight"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not after the 60 s bound"
    );
    first.finish(answer(204, "")).await;
    assert_eq!(kind(&store.claim("ops", "k5", FP).await.unwrap()), "replay");
}

/// Budgets and a pacing slot are taken together or not at all, and a refund gives both back.
async fn admissions_take_budgets_and_a_slot_together_or_not_at_all(b: &Backend) {
    let store = b.plain();
    let ns = store.namespace().clone();
    let end = graphgate::state::wall_clock_secs() + 3_600;
    let charge = |name: &str, limit| BudgetCharge {
        key: format!(
            "{}:1",
            ns.budget("caller", name, graphgate::policy::BudgetWindow::Day)
        ),
        limit,
        window_end: end,
    };
    let budgets = [charge("a", 10), charge("b", 100)];
    let pacing = ns.pacing();
    let admission = |member: &'static str, devices, count, budgets| Admission {
        pacing_key: &pacing,
        pacing_member: member,
        pacing_count: count,
        pacing_window: Duration::from_secs(60),
        budgets,
        devices,
    };
    let used = |a: &Admit| match a {
        Admit::Admitted { used } => used.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        used(&store.admit(&admission("m1", 7, 5, &budgets)).await.unwrap()),
        [7, 7]
    );
    assert_eq!(
        store.admit(&admission("m2", 4, 5, &budgets)).await.unwrap(),
        Admit::OverBudget { index: 0, used: 7 },
        "7 + 4 devices would pass a's 10"
    );
    // Nothing was taken from b either: 3 more fit in both.
    assert_eq!(
        used(&store.admit(&admission("m3", 3, 5, &budgets)).await.unwrap()),
        [10, 10]
    );
    let refund = Refund {
        pacing_key: &pacing,
        pacing_member: "m3",
        budgets: &budgets,
        devices: 3,
    };
    store.refund(&refund).await.unwrap();
    assert_eq!(
        used(&store.admit(&admission("m4", 3, 5, &budgets)).await.unwrap()),
        [10, 10]
    );
    // Three slots taken of a window of three (m1, m4, m5: m3's was given back).
    assert!(matches!(
        store.admit(&admission("m5", 0, 3, &[])).await.unwrap(),
        Admit::Admitted { .. }
    ));
    match store.admit(&admission("m6", 0, 3, &[])).await.unwrap() {
        Admit::Paced(wait) => assert!(wait > Duration::from_secs(50), "{wait:?}"),
        other => panic!("paced, not {other:?}"),
    }
}

/// A request's whole step: its rate limit, its idempotency claim, its budget and a write
/// slot are taken in one; a refusal by any part takes neither the claim nor the admission
/// (the limiter that passed stays charged); settling ends the claim and gives back the
/// admission in one.
async fn a_request_takes_everything_in_one_step_and_settles_in_one(b: &Backend) {
    let store = b.store(Duration::from_secs(60), Duration::from_millis(200));
    let ns = store.namespace().clone();
    let rate = Rate {
        count: 3,
        per: Duration::from_secs(600),
    };
    let limiter = Limiter {
        key: ns.rate("caller", "whole", rate),
        rate,
    };
    let limiters = [&limiter];
    let end = graphgate::state::wall_clock_secs() + 3_600;
    let budget = |limit| BudgetCharge {
        key: format!(
            "{}:1",
            ns.budget("caller", "whole", graphgate::policy::BudgetWindow::Day)
        ),
        limit,
        window_end: end,
    };
    let (roomy, full) = ([budget(10)], [budget(1)]);
    let pacing = ns.pacing();
    let ask = |key: &'static str, member: &'static str, budgets| Ask {
        limiters: &limiters,
        cost: 1,
        idempotency: Some(Idempotency {
            caller: "ops",
            key,
            fingerprint: FP,
        }),
        admission: Some(Admission {
            pacing_key: &pacing,
            pacing_member: member,
            pacing_count: 10,
            pacing_window: Duration::from_secs(60),
            budgets,
            devices: 1,
        }),
    };
    let Step::Taken {
        ticket: Some(ticket),
        used,
    } = store.take(&ask("w1", "m1", &roomy)).await.unwrap()
    else {
        panic!("the first request takes everything")
    };
    assert_eq!(used, [1]);
    // A duplicate while the first runs: it waits (up to the bound), takes nothing but its
    // rate, and is not run.
    let duplicate = store.take(&ask("w1", "m2", &roomy)).await.unwrap();
    assert!(matches!(duplicate, Step::Duplicate(Duplicate::InFlight)));
    // Over budget (a budget of 1, used once): refused, the claim of w2 not taken...
    let over = store.take(&ask("w2", "m3", &full)).await.unwrap();
    assert!(
        matches!(
            over,
            Step::Refused(Refused::OverBudget { index: 0, used: 1 })
        ),
        "over budget"
    );
    // ...and the limiter, charged three times now, refuses the next with nothing taken.
    let limited = store.take(&ask("w2", "m4", &roomy)).await.unwrap();
    let Step::Limited { index: 0, wait } = limited else {
        panic!("the rate limit refuses")
    };
    assert!(wait > Duration::from_secs(100), "{wait:?}");
    // w2 was never claimed: without the limiter it runs, with the budget counting 2.
    let unlimited = Ask {
        limiters: &[],
        ..ask("w2", "m5", &roomy)
    };
    let Step::Taken {
        ticket: Some(second),
        used,
    } = store.take(&unlimited).await.unwrap()
    else {
        panic!("w2 was free")
    };
    assert_eq!(used, [2]);
    // Settling: the first finished (its answer kept), the second not sent (its key let go,
    // its budget and slot given back), one step each.
    store
        .settle(Some(ticket), Some(answer(202, "{\"first\":true}")), None)
        .await;
    let refund = Refund {
        pacing_key: &pacing,
        pacing_member: "m5",
        budgets: &roomy,
        devices: 1,
    };
    store.settle(Some(second), None, Some(refund)).await;
    let replayed = Ask {
        limiters: &[],
        ..ask("w1", "m6", &roomy)
    };
    match store.take(&replayed).await.unwrap() {
        Step::Duplicate(Duplicate::Replay(stored)) => assert_eq!(stored.replay().status(), 202),
        _ => panic!("the finished request's answer is replayed"),
    }
    let again = Ask {
        limiters: &[],
        ..ask("w2", "m7", &roomy)
    };
    let Step::Taken { used, .. } = store.take(&again).await.unwrap() else {
        panic!("the released key runs again")
    };
    assert_eq!(used, [2], "the refund gave the second's device back");
}

/// A record to create under `key`, for the record cases.
fn new_record<'a>(key: &'a str, value: &'a [u8], claims: &'a [&'a str]) -> NewRecord<'a> {
    NewRecord {
        key,
        value,
        ttl: Duration::from_secs(60),
        claims,
        indexes: &[],
        bounded: None,
    }
}

/// A swap of `key` from `version`, releasing nothing.
fn swap<'a>(key: &'a str, version: u64, value: &'a [u8]) -> Swap<'a> {
    Swap {
        key,
        version,
        value,
        ttl: Duration::from_secs(60),
        release: &[],
        unindex: &[],
        leave: None,
    }
}

/// A record is created once with version 1; a claim points at it and refuses a second
/// record; a swap from the current version wins and one from an old version sees what is
/// there; a released claim is free again, one pointing elsewhere is left alone.
async fn records_change_only_from_the_version_they_were_read_at(b: &Backend) {
    let store = b.plain();
    let ns = uuid::Uuid::new_v4().simple().to_string();
    let (a, other, claim) = (format!("{ns}:a"), format!("{ns}:b"), format!("{ns}:c"));
    assert_eq!(store.record_get(&a).await.unwrap(), None);
    let created = store
        .record_create(&new_record(&a, b"one", &[&claim]))
        .await;
    assert_eq!(created.unwrap(), Created::Created);
    assert_eq!(
        store.record_get(&a).await.unwrap(),
        Some(Versioned {
            version: 1,
            value: b"one".to_vec()
        })
    );
    assert_eq!(store.record_claimed(&claim).await.unwrap(), Some(a.clone()));
    let free = format!("{ns}:free");
    assert_eq!(
        store
            .record_create(&new_record(&other, b"x", &[&free, &claim]))
            .await
            .unwrap(),
        Created::Claimed {
            index: 1,
            holder: a.clone()
        }
    );
    assert_eq!(
        store.record_get(&other).await.unwrap(),
        None,
        "nothing made"
    );
    assert_eq!(
        store.record_claimed(&free).await.unwrap(),
        None,
        "nor claimed"
    );
    assert_eq!(
        store
            .record_create(&new_record(&a, b"again", &[]))
            .await
            .unwrap(),
        Created::Exists
    );
    assert_eq!(
        store.record_swap(&swap(&a, 1, b"two")).await.unwrap(),
        Swapped::Swapped(2)
    );
    assert_eq!(
        store.record_swap(&swap(&a, 1, b"lost")).await.unwrap(),
        Swapped::Stale(Some(Versioned {
            version: 2,
            value: b"two".to_vec()
        })),
        "a change from an old version sees what won"
    );
    let gone = format!("{ns}:gone");
    assert_eq!(
        store.record_swap(&swap(&gone, 1, b"x")).await.unwrap(),
        Swapped::Stale(None)
    );
    // Released: the claim is free for another record.
    let release = [claim.as_str()];
    let letting_go = Swap {
        release: &release,
        ..swap(&a, 2, b"three")
    };
    assert_eq!(
        store.record_swap(&letting_go).await.unwrap(),
        Swapped::Swapped(3)
    );
    assert_eq!(store.record_claimed(&claim).await.unwrap(), None);
    let taken = store
        .record_create(&new_record(&other, b"b", &[&claim]))
        .await;
    assert_eq!(taken.unwrap(), Created::Created);
    // a no longer holds it: letting go again leaves b's claim alone.
    let again = Swap {
        release: &release,
        ..swap(&a, 3, b"four")
    };
    store.record_swap(&again).await.unwrap();
    assert_eq!(store.record_claimed(&claim).await.unwrap(), Some(other));
}

/// Of many concurrent creations taking one claim exactly one succeeds, and of many
/// concurrent swaps from one version exactly one wins.
async fn concurrent_record_changes_have_one_winner(b: &Backend) {
    let store = b.plain();
    let ns = uuid::Uuid::new_v4().simple().to_string();
    let claim = format!("{ns}:claim");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12 {
        let (store, claim, key) = (Arc::clone(&store), claim.clone(), format!("{ns}:{i}"));
        tasks.spawn(async move {
            let claims = [claim.as_str()];
            store
                .record_create(&new_record(&key, b"v", &claims))
                .await
                .unwrap()
        });
    }
    let outcomes = tasks.join_all().await;
    let won = outcomes.iter().filter(|c| **c == Created::Created).count();
    assert_eq!(won, 1, "{outcomes:?}");
    let key = store.record_claimed(&claim).await.unwrap().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12u8 {
        let (store, key) = (Arc::clone(&store), key.clone());
        tasks.spawn(async move { store.record_swap(&swap(&key, 1, &[i])).await.unwrap() });
    }
    let outcomes = tasks.join_all().await;
    let won: Vec<_> = outcomes
        .iter()
        .filter(|s| matches!(s, Swapped::Swapped(2)))
        .collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    assert_eq!(store.record_get(&key).await.unwrap().unwrap().version, 2);
}

/// A bounded set refuses a record past its bound, counts only members whose records
/// exist, and has room again once a member leaves; an index lists newest first, at most as
/// many as asked, without records that are gone.
async fn bounded_sets_and_indexes(b: &Backend) {
    let store = b.plain();
    let ns = uuid::Uuid::new_v4().simple().to_string();
    let (set, index) = (format!("{ns}:set"), format!("{ns}:index"));
    let keys: Vec<String> = (0..4).map(|i| format!("{ns}:r{i}")).collect();
    let make = |i: usize, ttl: Duration| {
        let entry = [IndexEntry {
            key: &index,
            score: 1_000 + i as u64,
            keep: 1_000_000,
        }];
        let store = Arc::clone(&store);
        let (key, set) = (keys[i].clone(), set.clone());
        async move {
            let new = NewRecord {
                ttl,
                indexes: &entry,
                bounded: Some((&set, 2)),
                ..new_record(&key, key.as_bytes(), &[])
            };
            store.record_create(&new).await.unwrap()
        }
    };
    let short = Duration::from_millis(300);
    assert_eq!(make(0, short).await, Created::Created);
    assert_eq!(make(1, Duration::from_secs(60)).await, Created::Created);
    assert_eq!(make(2, Duration::from_secs(60)).await, Created::Full);
    // r0's record expires: it no longer counts toward the bound.
    let r2 = eventually("r0 expires", Duration::from_secs(10), async || {
        let made = make(2, Duration::from_secs(60)).await;
        (made == Created::Created).then_some(())
    });
    r2.await;
    assert_eq!(make(3, Duration::from_secs(60)).await, Created::Full);
    let leave = Swap {
        leave: Some(&set),
        ..swap(&keys[1], 1, b"left")
    };
    store.record_swap(&leave).await.unwrap();
    assert_eq!(make(3, Duration::from_secs(60)).await, Created::Created);
    let listed = store.record_list(&index, 2).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, [&keys[3], &keys[2]], "newest first, two of them");
    let all = store.record_list(&index, 10).await.unwrap();
    let names: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, [&keys[3], &keys[2], &keys[1]], "r0 is gone");
    assert_eq!(all[2].1.value, b"left");
    let unindex = [index.as_str()];
    let out = Swap {
        unindex: &unindex,
        ..swap(&keys[2], 1, b"out")
    };
    store.record_swap(&out).await.unwrap();
    let names: Vec<String> = store
        .record_list(&index, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(names, [keys[3].clone(), keys[1].clone()]);
}

/// Every case, in order, on one backend.
async fn contract(b: &Backend) {
    records_change_only_from_the_version_they_were_read_at(b).await;
    concurrent_record_changes_have_one_winner(b).await;
    bounded_sets_and_indexes(b).await;
    a_claim_runs_once_and_its_answer_is_replayed(b).await;
    concurrent_claims_run_exactly_once(b).await;
    a_dropped_ticket_lets_the_next_claim_run(b).await;
    a_duplicate_waits_only_up_to_its_bound(b).await;
    a_claim_is_forgotten_after_its_window(b).await;
    limiters_are_charged_all_or_nothing(b).await;
    a_request_of_several_units_takes_them_all_or_none(b).await;
    a_waiting_duplicate_stops_at_shutdown_and_the_key_stays_claimed(b).await;
    admissions_take_budgets_and_a_slot_together_or_not_at_all(b).await;
    a_request_takes_everything_in_one_step_and_settles_in_one(b).await;
    b.plain().ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_keeps_the_contract() {
    let b = Backend::memory();
    assert!(!b.plain().is_shared());
    contract(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_store_keeps_the_contract() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let b = Backend::redis(&redis.url());
    assert!(b.plain().is_shared());
    contract(&b).await;
}

/// A store that cannot answer fails every step (fail closed), within its timeout.
#[tokio::test]
async fn a_redis_store_that_does_not_answer_fails_every_step_closed() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", closed.local_addr().unwrap());
    drop(closed);
    let b = Backend {
        config: StateConfig::parse(
            &url,
            StateOptions {
                timeout: Duration::from_millis(300),
                ..StateOptions::default()
            },
        )
        .unwrap(),
    };
    let store = b.plain();
    let started = tokio::time::Instant::now();
    assert!(store.ping().await.is_err());
    assert!(store.claim("ops", "k", FP).await.is_err());
    let limiter = Limiter {
        key: "l".into(),
        rate: Rate {
            count: 1,
            per: Duration::from_secs(1),
        },
    };
    assert!(store.limit(&[limiter], 1).await.is_err());
    let admission = Admission {
        pacing_key: "p",
        pacing_member: "m",
        pacing_count: 1,
        pacing_window: Duration::from_secs(1),
        budgets: &[],
        devices: 1,
    };
    assert!(store.admit(&admission).await.is_err());
    assert!(store.record_get("r").await.is_err());
    assert!(
        store
            .record_create(&new_record("r", b"v", &[]))
            .await
            .is_err()
    );
    assert!(store.record_swap(&swap("r", 1, b"v")).await.is_err());
    assert!(store.record_list("i", 1).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A small deterministic generator of test steps.
struct Steps(u64);

impl Steps {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// `algo.rs` and the Lua scripts, fed the same steps at the same times: every answer the
/// same. GCRA over two limiters (all or nothing) for requests of 1 to 6 units (a bulk
/// request's devices, past a burst too), then the pacing's sliding window.
#[tokio::test]
async fn the_lua_scripts_and_algo_agree_step_by_step() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let mut conn = redis.connection().await;
    let mut steps = Steps(22);
    let prefix = uuid::Uuid::new_v4().simple().to_string();
    // GCRA: two limiters with rates drawn once, requests at increasing times. Times fall on
    // 50 ms steps, so requests land exactly on the limiters' boundaries too.
    let rate_pairs: Vec<Rate> = (0..2)
        .map(|_| Rate {
            count: 4 + steps.next(6) as u32,
            per: Duration::from_secs(1 + steps.next(5)),
        })
        .collect();
    let rates: Vec<(u64, u64)> = rate_pairs.iter().map(|r| algo::gcra_params(*r)).collect();
    // The same rates as limiters (gcra_params of a Rate is what the script is given).
    let limiters: Vec<Limiter> = rate_pairs
        .iter()
        .enumerate()
        .map(|(i, rate)| Limiter {
            key: format!("{prefix}:gcra:{i}"),
            rate: *rate,
        })
        .collect();
    let limiter_refs: Vec<&Limiter> = limiters.iter().collect();
    let mut tats: HashMap<usize, u64> = HashMap::new();
    let mut now = 1_000_000_000_000u64;
    let mut refusals = 0;
    let mut several = 0;
    for step in 0..300 {
        now += 50_000 * steps.next(20);
        // Mostly single units, some several.
        let cost = match steps.next(3) {
            0 => 2 + steps.next(4) as u32,
            _ => 1,
        };
        // algo.rs: every limiter or none.
        let mut next = Vec::new();
        let mut expected = (0u64, 0u64);
        for (i, params) in rates.iter().enumerate() {
            match algo::gcra(tats.get(&i).copied(), now, *params, cost) {
                Ok(tat) => next.push(tat),
                Err(wait) => {
                    expected = (i as u64 + 1, wait);
                    break;
                }
            }
        }
        if expected.0 == 0 {
            tats.extend(next.into_iter().enumerate());
            several += usize::from(cost > 1);
        } else {
            refusals += 1;
        }
        // The script, at the same time.
        let take = Take {
            limiters: &limiter_refs,
            cost,
            ..Take::default()
        };
        let got = match eval_take(&mut conn, now, &take).await {
            Taken::All { used } if used.is_empty() => (0, 0),
            Taken::Limited { index, wait } => (index as u64 + 1, micros(wait)),
            other => panic!("{other:?}"),
        };
        assert_eq!(got, expected, "gcra step {step} at {now}, cost {cost}");
    }
    assert!(refusals > 10, "the steps tested refusals too: {refusals}");
    assert!(
        several > 10,
        "and admitted several units at once: {several}"
    );
    eprintln!("gcra: {rates:?}: {refusals} refused, {several} of several units admitted");

    // The pacing's sliding window: admissions at increasing times.
    let count = 3 + steps.next(3) as u32;
    let window = 1_000_000 * (1 + steps.next(5));
    let key = format!("{prefix}:pace");
    let mut taken = VecDeque::new();
    let mut paced = 0;
    for step in 0..300 {
        now += 50_000 * steps.next(window / 100_000);
        let member = format!("m{step}");
        let expected = algo::slide(&mut taken, now, count, window, &member).err();
        paced += usize::from(expected.is_some());
        let take = Take {
            admission: Some(Admission {
                pacing_key: &key,
                pacing_member: &member,
                pacing_count: count,
                pacing_window: Duration::from_micros(window),
                budgets: &[],
                devices: 1,
            }),
            ..Take::default()
        };
        let got = match eval_take(&mut conn, now, &take).await {
            Taken::All { .. } => None,
            Taken::Refused(Refused::Paced(wait)) => Some(micros(wait)),
            other => panic!("unexpected answer {other:?}"),
        };
        assert_eq!(got, expected, "pacing step {step} at {now}");
    }
    assert!(paced > 10, "the steps tested waits too: {paced}");
}

/// The take script at a fixed time, its answer read as the store reads it.
async fn eval_take(
    conn: &mut redis::aio::MultiplexedConnection,
    now: u64,
    take: &Take<'_>,
) -> Taken {
    let (keys, args) = scripts::take_args(take);
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(scripts::take_at(now)).arg(keys.len());
    for key in keys {
        cmd.arg(key);
    }
    for arg in args {
        cmd.arg(arg);
    }
    let reply: Vec<redis::Value> = cmd.query_async(conn).await.unwrap();
    scripts::parse_take(reply).unwrap()
}

/// The whole take, step by step: random requests with a limiter, an idempotency key from a
/// small set (so some find it held), two budgets and the pacing, against the memory store's
/// `Counters::take` and a map of claims at the same times. Every answer the same: which
/// part refused, its wait or count, and what was taken (the counts the next steps see).
#[tokio::test]
async fn the_take_script_and_algo_agree_on_whole_requests() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let mut conn = redis.connection().await;
    let mut steps = Steps(26);
    let prefix = uuid::Uuid::new_v4().simple().to_string();
    let limiter = Limiter {
        key: format!("{prefix}:rate"),
        rate: Rate {
            count: 8,
            per: Duration::from_secs(1),
        },
    };
    let limiters = [&limiter];
    let window_end = graphgate::state::wall_clock_secs() + 86_400;
    let budget = |name: &str, limit| BudgetCharge {
        key: format!("{prefix}:budget:{name}"),
        limit,
        window_end,
    };
    let budgets = [budget("caller", 150), budget("tenant", 200)];
    let pacing = format!("{prefix}:pace");
    let keys: Vec<String> = (0..200).map(|i| format!("{prefix}:idem:{i}")).collect();
    let mut model = algo::Counters::default();
    let mut claims: HashMap<String, [u8; 32]> = HashMap::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut now = 1_000_000_000_000u64;
    for step in 0..400 {
        now += 20_000 * steps.next(20);
        let devices = 1 + steps.next(3) as u32;
        let fingerprint = [steps.next(2) as u8; 32];
        let key = &keys[steps.next(keys.len() as u64) as usize];
        let owner = format!("o{step}");
        let member = format!("m{step}");
        let with_limiter = steps.next(4) > 0;
        let take = Take {
            limiters: if with_limiter { &limiters } else { &[] },
            cost: devices,
            claim: (steps.next(3) > 0).then(|| {
                let id = ClaimId {
                    key,
                    owner: &owner,
                    fingerprint,
                };
                (id, Duration::from_secs(60))
            }),
            admission: (steps.next(5) > 0).then(|| Admission {
                pacing_key: &pacing,
                pacing_member: &member,
                pacing_count: 2,
                pacing_window: Duration::from_secs(1),
                budgets: &budgets[..1 + steps.next(2) as usize],
                devices,
            }),
        };
        let held = || {
            let (id, _) = take.claim.as_ref()?;
            let fingerprint = *claims.get(id.key)?;
            Some(Held::Running { fingerprint })
        };
        let expected = model.take(&take, held, now, window_end - 86_400);
        if let (Taken::All { .. }, Some((id, _))) = (&expected, &take.claim) {
            claims.insert(id.key.to_owned(), id.fingerprint);
        }
        let got = eval_take(&mut conn, now, &take).await;
        assert_eq!(
            format!("{got:?}"),
            format!("{expected:?}"),
            "take step {step} at {now}: {take:?}"
        );
        let outcome = match expected {
            Taken::All { .. } => "all",
            Taken::Limited { .. } => "limited",
            Taken::Held(_) => "held",
            Taken::Refused(Refused::OverBudget { .. }) => "over budget",
            Taken::Refused(Refused::Paced(_)) => "paced",
        };
        *seen.entry(outcome).or_default() += 1;
    }
    eprintln!("whole takes: {seen:?}");
    for outcome in ["all", "limited", "held", "over budget", "paced"] {
        assert!(
            seen.get(outcome).copied().unwrap_or(0) >= 5,
            "the steps tested {outcome} too: {seen:?}"
        );
    }
}
