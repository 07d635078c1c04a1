//! The approvals' deadlines and runs against a real (memory) store, on a paused clock: an
//! approved request not run in time expires, a run whose replica died becomes
//! `outcome_unknown` when its lease ends (never sent again), and of many replicas starting
//! one approval exactly one runs it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::maa::{Hold, IntuneStatus, Polled, Read};
use super::model::*;
use super::people::{Identity, Names};
use super::run::{Ran, Runner, Running, START_GRACE};
use super::store::{Change, Made};
use super::{Approvals, Settings, rfc3339};
use crate::audit::Audit;
use crate::cloud::Cloud;
use crate::state::{ClaimSettings, Namespace, StateStore};

/// Counts its runs; each succeeds.
#[derive(Default)]
struct Counting(AtomicUsize);

impl Runner for Counting {
    fn run<'a>(&'a self, _: &'a Stored) -> Ran<'a> {
        Box::pin(async move {
            self.0.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            let outcome = Outcome {
                status: 204,
                error_code: None,
                message: None,
                graph_request_id: None,
                audit_id: "run".into(),
                time: rfc3339(0),
                device_action: None,
            };
            (Finish::Succeeded, outcome, None)
        })
    }

    fn read_intune<'a>(&'a self, _: &'a str) -> Read<'a> {
        Box::pin(async { Err("no Intune here".to_owned()) })
    }
}

fn store() -> StateStore {
    let claims = ClaimSettings {
        capacity: 100,
        window: Duration::from_secs(60),
        wait: Duration::from_secs(1),
    };
    StateStore::in_process(Namespace::new(Cloud::Global, "t", "app", "test"), claims)
}

fn approvals() -> Approvals {
    let settings = Settings {
        lease: Duration::from_secs(120),
        ..Settings::default()
    };
    Approvals::new(settings, Audit::disabled())
}

/// An approval already approved (by carol), to be run by `run_by`.
fn approved(a: &Approvals, run_by: RunBy) -> Stored {
    let now = a.clock.now_ms();
    let requester = Identity::of("ops", Names::default());
    let resource = Resource {
        id: uuid::Uuid::new_v4().to_string(),
        state: State::Approved,
        operation: "managedDevices.wipe".into(),
        api_version: "v1.0".into(),
        tier: "destructive".into(),
        method: "POST".into(),
        path: "/v1.0/deviceManagement/managedDevices/x/wipe".into(),
        devices: vec!["x".into()],
        parameters: serde_json::json!({}),
        caller: "ops".into(),
        initiator: None,
        reason: None,
        rule: "wipes".into(),
        request_sha256: "ab".repeat(32),
        policy_sha256: "cd".repeat(32),
        created: rfc3339(now),
        expires: rfc3339(now + 3_600_000),
        execute_by: Some(rfc3339(now + 900_000)),
        run_by,
        groups: vec![Group {
            approvers: vec!["carol".into()],
            required: 1,
            approvals: vec!["carol".into()],
        }],
        deny: 1,
        reviews: Vec::new(),
        break_glass: None,
        outcome: None,
        maa: None,
    };
    let held = Held {
        body: HeldBody("{}".into()),
        initiator_source: None,
        initiator_upn: None,
        initiator_oid: None,
        requester,
        reviewers: Vec::new(),
        approvers: vec![vec!["carol".into()]],
        created_ms: now,
        expires_ms: now + 3_600_000,
        execute_within_ms: 900_000,
        execute_by_ms: Some(now + 900_000),
        lease_ms: None,
        run_token: None,
        open_claim: None,
        break_glass_claim: None,
        maa_poll: None,
    };
    Stored { resource, held }
}

async fn made(a: &Approvals, state: &StateStore, s: Stored) -> String {
    let id = s.resource.id.clone();
    assert!(matches!(
        a.make(state, s, None, "requested").await.unwrap(),
        Made::New(_)
    ));
    id
}

async fn state_of(a: &Approvals, state: &StateStore, id: &str) -> Stored {
    a.load(state, id).await.unwrap().unwrap().1
}

#[tokio::test(start_paused = true)]
async fn an_approved_request_not_run_within_execute_within_expires() {
    let (a, state, runner) = (approvals(), store(), Counting::default());
    let id = made(&a, &state, approved(&a, RunBy::Requester)).await;
    tokio::time::advance(Duration::from_secs(899)).await;
    a.sweep(&state, &runner).await;
    assert_eq!(
        state_of(&a, &state, &id).await.resource.state,
        State::Approved
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    a.sweep(&state, &runner).await;
    assert_eq!(
        state_of(&a, &state, &id).await.resource.state,
        State::Expired
    );
    assert_eq!(runner.0.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_run_whose_replica_died_becomes_outcome_unknown_and_is_never_sent_again() {
    let (a, state, runner) = (approvals(), store(), Counting::default());
    let id = made(&a, &state, approved(&a, RunBy::Gateway)).await;
    // Another replica took the run, under its lease, and died.
    a.change(&state, &id, |s, now| {
        s.held.lease_ms = Some(now + 120_000);
        s.held.run_token = Some("the replica that died".into());
        Ok(Some(Change::of(Step::Start)))
    })
    .await
    .unwrap();
    tokio::time::advance(START_GRACE * 2).await;
    a.sweep(&state, &runner).await;
    assert_eq!(
        state_of(&a, &state, &id).await.resource.state,
        State::Executing
    );
    assert!(a.run_approved(&state, &runner, &id).await.is_ok());
    tokio::time::advance(Duration::from_secs(120)).await;
    a.sweep(&state, &runner).await;
    let after = state_of(&a, &state, &id).await;
    assert_eq!(after.resource.state, State::OutcomeUnknown);
    a.sweep(&state, &runner).await;
    assert_eq!(runner.0.load(Ordering::SeqCst), 0, "never sent again");
    // Its outcome arriving late changes nothing either.
    let running = Running {
        id: id.clone(),
        request_sha256: after.resource.request_sha256.clone(),
        break_glass: false,
    };
    let ended = runner.run(&after).await;
    a.settle(&state, &running, ended).await;
    assert_eq!(
        state_of(&a, &state, &id).await.resource.state,
        State::OutcomeUnknown
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_many_starts_of_one_approval_exactly_one_runs_it() {
    let (a, state, runner) = (
        Arc::new(approvals()),
        Arc::new(store()),
        Arc::new(Counting::default()),
    );
    let id = made(&a, &state, approved(&a, RunBy::Gateway)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (a, state, runner, id) = (a.clone(), state.clone(), runner.clone(), id.clone());
        tasks.spawn(async move { a.run_approved(&state, runner.as_ref(), &id).await.unwrap() });
    }
    tasks.join_all().await;
    assert_eq!(runner.0.load(Ordering::SeqCst), 1);
    let after = state_of(&a, &state, &id).await;
    assert_eq!(after.resource.state, State::Succeeded);
    assert_eq!(after.resource.outcome.unwrap().status, 204);
}

#[tokio::test(start_paused = true)]
async fn an_approved_request_nobody_started_is_started_by_the_sweeper_after_its_grace() {
    let (a, state, runner) = (approvals(), store(), Counting::default());
    let id = made(&a, &state, approved(&a, RunBy::Gateway)).await;
    a.sweep(&state, &runner).await;
    assert_eq!(
        runner.0.load(Ordering::SeqCst),
        0,
        "its own replica runs it first"
    );
    tokio::time::advance(START_GRACE).await;
    a.sweep(&state, &runner).await;
    assert_eq!(runner.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        state_of(&a, &state, &id).await.resource.state,
        State::Succeeded
    );
}

/// Intune, as the gateway reads it: a scripted answer; counts reads and re-sends.
struct Intune {
    answer: std::sync::Mutex<Result<Polled, String>>,
    reads: AtomicUsize,
    runs: Counting,
}

impl Intune {
    fn saying(answer: Result<Polled, String>) -> Self {
        Intune {
            answer: std::sync::Mutex::new(answer),
            reads: AtomicUsize::new(0),
            runs: Counting::default(),
        }
    }

    fn say(&self, answer: Result<Polled, String>) {
        *self.answer.lock().unwrap() = answer;
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    fn runs(&self) -> usize {
        self.runs.0.load(Ordering::SeqCst)
    }
}

impl Runner for Intune {
    fn run<'a>(&'a self, approval: &'a Stored) -> Ran<'a> {
        self.runs.run(approval)
    }

    fn read_intune<'a>(&'a self, _: &'a str) -> Read<'a> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let answer = self.answer.lock().unwrap().clone();
        Box::pin(async move { answer })
    }
}

fn status(status: IntuneStatus) -> Result<Polled, String> {
    Ok(Polled {
        status,
        expires_ms: None,
    })
}

/// An approval Intune holds (as a direct call's would be), read first after 30 s.
async fn held_by_intune(a: &Approvals, state: &StateStore) -> String {
    let mut s = approved(a, RunBy::Gateway);
    s.resource.state = State::ExternalApprovalPending;
    let hold = Hold {
        code: "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb".into(),
        status: 403,
    };
    a.mark_held(&mut s, &hold, false, a.clock.now_ms());
    made(a, state, s).await
}

#[tokio::test(start_paused = true)]
async fn intune_is_read_with_backoff_from_30_s_to_15_min_and_a_graph_that_is_down_is_read_again_later()
 {
    let (a, state) = (approvals(), store());
    let intune = Intune::saying(Err("Graph could not be reached".into()));
    let id = held_by_intune(&a, &state).await;
    let mut reads_at = Vec::new();
    for second in 1..=3_600u64 {
        tokio::time::advance(Duration::from_secs(1)).await;
        let before = intune.reads();
        a.sweep(&state, &intune).await;
        if intune.reads() > before {
            reads_at.push(second);
        }
    }
    // After 30 s, then waits of 30, 60, 120, 240, 480 s, then every 900 s.
    assert_eq!(reads_at[..6], [30, 60, 120, 240, 480, 960]);
    assert_eq!(reads_at[6] - reads_at[5], 900);
    let s = state_of(&a, &state, &id).await;
    assert_eq!(s.resource.state, State::ExternalApprovalPending);
    let maa = s.resource.maa.unwrap();
    assert_eq!(maa.polls as usize, reads_at.len());
    assert_eq!(
        maa.last_error.as_deref(),
        Some("Graph could not be reached")
    );
    // Graph back, the request approved: sent again once.
    intune.say(status(IntuneStatus::Approved));
    tokio::time::advance(Duration::from_secs(900)).await;
    a.sweep(&state, &intune).await;
    assert_eq!(intune.runs(), 1);
    let s = state_of(&a, &state, &id).await;
    assert_eq!(s.resource.state, State::Succeeded);
    assert!(s.resource.maa.unwrap().resent);
}

#[tokio::test(start_paused = true)]
async fn an_answer_that_never_changes_ends_at_intune_s_expiry_and_nothing_is_sent() {
    let (a, state) = (approvals(), store());
    let intune = Intune::saying(status(IntuneStatus::NeedsApproval));
    let id = held_by_intune(&a, &state).await;
    for _ in 0..(72 * 4) {
        tokio::time::advance(Duration::from_secs(900)).await;
        a.sweep(&state, &intune).await;
    }
    let s = state_of(&a, &state, &id).await;
    assert_eq!(s.resource.state, State::Expired);
    assert!(intune.reads() < 72 * 4 + 10, "paced: {}", intune.reads());
    let reads = intune.reads();
    tokio::time::advance(Duration::from_secs(3_600)).await;
    a.sweep(&state, &intune).await;
    assert_eq!(intune.reads(), reads, "no longer read");
    assert_eq!(intune.runs(), 0);
}

#[tokio::test(start_paused = true)]
async fn approved_in_intune_after_graphgate_s_deadline_is_not_sent() {
    let (a, state) = (approvals(), store());
    let id = held_by_intune(&a, &state).await;
    // Intune's request says it expired a while ago, yet "approved".
    let intune = Intune::saying(Ok(Polled {
        status: IntuneStatus::Approved,
        expires_ms: Some(a.clock.now_ms()),
    }));
    tokio::time::advance(Duration::from_secs(30)).await;
    a.sweep(&state, &intune).await;
    assert_eq!(intune.reads(), 1);
    assert_eq!(
        state_of(&a, &state, &id).await.resource.state,
        State::Expired
    );
    assert_eq!(intune.runs(), 0);
}

#[tokio::test(start_paused = true)]
async fn completed_in_intune_without_graphgate_s_re_send_is_outcome_unknown_and_never_sent() {
    let (a, state) = (approvals(), store());
    let id = held_by_intune(&a, &state).await;
    let intune = Intune::saying(status(IntuneStatus::Completed));
    tokio::time::advance(Duration::from_secs(30)).await;
    a.sweep(&state, &intune).await;
    let s = state_of(&a, &state, &id).await;
    assert_eq!(s.resource.state, State::OutcomeUnknown);
    assert_eq!(intune.runs(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_many_replicas_reading_one_approved_hold_exactly_one_sends_it_again() {
    let (a, state) = (Arc::new(approvals()), Arc::new(store()));
    let intune = Arc::new(Intune::saying(status(IntuneStatus::Approved)));
    let id = held_by_intune(&a, &state).await;
    // Its read is due now.
    a.change(&state, &id, |s, now| {
        if let Some(p) = s.held.maa_poll.as_mut() {
            p.next_ms = now;
        }
        Ok(Some(Change::of(Step::Poll)))
    })
    .await
    .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (a, state, intune, id) = (a.clone(), state.clone(), intune.clone(), id.clone());
        tasks.spawn(async move { a.poll_intune(&state, intune.as_ref(), &id).await.unwrap() });
    }
    tasks.join_all().await;
    assert_eq!(intune.reads(), 1, "one replica reads each due time");
    assert_eq!(intune.runs(), 1, "and one sends it again");
    let after = state_of(&a, &state, &id).await;
    assert_eq!(after.resource.state, State::Succeeded);
}
