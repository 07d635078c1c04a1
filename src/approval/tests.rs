//! The approvals' deadlines and runs against a real (memory) store, on a paused clock: an
//! approved request not run in time expires, a run whose replica died becomes
//! `outcome_unknown` when its lease ends (never sent again), and of many replicas starting
//! one approval exactly one runs it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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
            (Finish::Succeeded, outcome)
        })
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
    let (finish, outcome) = runner.run(&after).await;
    a.settle(&state, &running, (finish, outcome)).await;
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
