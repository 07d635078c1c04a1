//! Unit tests of the policy's limits on the memory store, on Tokio's paused clock.

use super::*;
use crate::cloud::Cloud;
use crate::state::ClaimSettings;

const H: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const OP: &str = "managedDevices.updateWindowsDeviceAccount";

fn store() -> StateStore {
    let claims = ClaimSettings {
        capacity: 10,
        window: Duration::from_secs(60),
        wait: Duration::from_secs(1),
    };
    StateStore::in_process(Namespace::new(Cloud::Global, "t", "app", "test"), claims)
}

/// What one unkeyed request of `devices` takes from the store, not yet settled.
async fn reserve<'p>(
    l: &'p PolicyLimits,
    s: &StateStore,
    devices: u32,
) -> Result<Reservation<'p>, LimitRefusal> {
    match l.take(s, (0, 0), op(), (devices, false), None).await? {
        Taken::Run(reservation) => Ok(reservation),
        Taken::Duplicate(d) => panic!("an unkeyed request is no duplicate: {d:?}"),
    }
}

/// One unkeyed request of `devices`, sent.
async fn send(l: &PolicyLimits, s: &StateStore, devices: u32) -> Result<(), LimitRefusal> {
    reserve(l, s, devices).await?.settle(s, true, None).await;
    Ok(())
}

fn policy(caller_extra: &str, rule_extra: &str, tail: &str) -> Policy {
    let text = format!(
        "version: 1\ncallers:\n  - name: a\n    api_key_sha256: \"{H}\"\n{caller_extra}rules:\n  - name: r\n    callers: [a]\n    operations: [{OP}]\n{rule_extra}{tail}"
    );
    Policy::from_yaml(&text, "t").unwrap_or_else(|e| panic!("{e}"))
}

fn limits(p: &Policy, s: &StateStore) -> PolicyLimits {
    PolicyLimits::new(p, s.namespace())
}

fn op() -> &'static Operation {
    crate::operation::catalog::by_name(OP).unwrap()
}

#[tokio::test(start_paused = true)]
async fn rate_limits_run_out_say_when_to_retry_and_refill_on_the_paused_clock() {
    let s = store();
    let l = limits(&policy("    rate_limit: 2 per minute\n", "", ""), &s);
    assert!(send(&l, &s, 1).await.is_ok());
    assert!(send(&l, &s, 1).await.is_ok());
    // Time stands still: the first slot comes back exactly 30 s after it was taken.
    let Err(LimitRefusal::RateLimited { scope, retry }) = send(&l, &s, 1).await else {
        panic!("the third is refused")
    };
    assert_eq!(
        (scope, retry),
        ("caller", RetryAfter(Duration::from_secs(30)))
    );
    assert_eq!(retry.secs(), 30);
    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(matches!(
        send(&l, &s, 1).await,
        Err(LimitRefusal::RateLimited { retry: RetryAfter(d), .. }) if d == Duration::from_secs(1)
    ));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(send(&l, &s, 1).await.is_ok(), "one slot refilled");
    assert!(send(&l, &s, 1).await.is_err(), "only one");
}

#[tokio::test(start_paused = true)]
async fn a_rule_refusal_costs_the_caller_nothing() {
    let s = store();
    let l = limits(
        &policy(
            "    rate_limit: 2 per hour\n",
            "    rate_limit: 1 per hour\n",
            "",
        ),
        &s,
    );
    assert!(send(&l, &s, 1).await.is_ok());
    let refused = send(&l, &s, 1).await.unwrap_err();
    assert!(
        matches!(refused, LimitRefusal::RateLimited { scope: "rule", .. }),
        "{refused:?}"
    );
    // The caller still has its second slot: the rule's refusal took nothing.
    let caller_only = limits(&policy("    rate_limit: 2 per hour\n", "", ""), &s);
    assert!(send(&caller_only, &s, 1).await.is_ok());
    assert!(send(&caller_only, &s, 1).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn rate_limits_count_devices_and_a_request_past_the_burst_is_refused_outright() {
    let s = store();
    let l = limits(&policy("    rate_limit: 10 per 10s\n", "", ""), &s);
    assert!(send(&l, &s, 7).await.is_ok(), "7 devices of 10");
    let Err(LimitRefusal::RateLimited { scope, retry }) = send(&l, &s, 4).await else {
        panic!("4 more devices do not fit")
    };
    assert_eq!((scope, retry.0), ("caller", Duration::from_secs(1)));
    assert!(send(&l, &s, 3).await.is_ok(), "3 do");
    let over = send(&l, &s, 11).await.unwrap_err();
    assert!(
        matches!(over, LimitRefusal::OverRate { devices: 11, .. }),
        "{over:?}"
    );
    assert!(
        over.to_string().contains("allows at most 10 at once"),
        "{over}"
    );
}

#[tokio::test(start_paused = true)]
async fn pacing_waits_for_a_slot_up_to_its_limit_then_refuses() {
    let s = store();
    let l = limits(
        &policy(
            "",
            "",
            "pacing:\n  tenant_writes: 1 per 10s\n  max_wait_ms: 5000\n",
        ),
        &s,
    );
    let start = crate::clock::Instant::now();
    drop(reserve(&l, &s, 1).await.unwrap());
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "the first write goes at once"
    );
    tokio::time::advance(Duration::from_secs(6)).await;
    drop(reserve(&l, &s, 1).await.unwrap());
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(10) + PACING_MARGIN,
        "the second waited for the first slot to free (window plus margin) on the paused clock"
    );
    // The next slot is 10.25 s away, past the 5 s limit: refused at once, nothing waited.
    let Err(LimitRefusal::Paced(retry)) = reserve(&l, &s, 1).await else {
        panic!("refused")
    };
    assert_eq!(retry, RetryAfter(Duration::from_secs(10) + PACING_MARGIN));
    assert_eq!(retry.secs(), 11);
    assert_eq!(start.elapsed(), Duration::from_secs(10) + PACING_MARGIN);
}

#[tokio::test(start_paused = true)]
async fn a_write_that_was_not_sent_gives_its_pacing_slot_back() {
    let s = store();
    let l = limits(
        &policy(
            "",
            "",
            "pacing:\n  tenant_writes: 1 per 10s\n  max_wait_ms: 0\n",
        ),
        &s,
    );
    // No token, say: nothing reached Graph, so the slot is free again at once.
    reserve(&l, &s, 1)
        .await
        .unwrap()
        .settle(&s, false, None)
        .await;
    reserve(&l, &s, 1)
        .await
        .unwrap()
        .settle(&s, true, None)
        .await;
    assert!(matches!(
        reserve(&l, &s, 1).await,
        Err(LimitRefusal::Paced(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn reloads_keep_budgets_unless_the_rate_changes() {
    let s = store();
    let first = limits(&policy("    rate_limit: 1 per hour\n", "", ""), &s);
    assert!(send(&first, &s, 1).await.is_ok());
    let same = limits(&policy("    rate_limit: 1 per hour\n", "", ""), &s);
    assert!(
        send(&same, &s, 1).await.is_err(),
        "the spent budget survives a reload"
    );
    let changed = limits(&policy("    rate_limit: 2 per hour\n", "", ""), &s);
    assert!(
        send(&changed, &s, 1).await.is_ok(),
        "a new rate starts a new budget"
    );
}

#[tokio::test]
async fn budgets_count_devices_and_refuse_until_the_next_utc_window() {
    let s = store();
    let p = policy(
        "    budget: 5 per day\n",
        "    budget: 100 per hour\n",
        &format!("tenant_budgets:\n  {OP}: 1000 per day\n"),
    );
    let l = limits(&p, &s);
    // A bulk request of 3 devices counts 3 on each budget...
    drop(reserve(&l, &s, 3).await.unwrap());
    let err = reserve(&l, &s, 3).await.unwrap_err();
    // ...so one of 3 more does not fit the caller's 5, whole: nothing is taken.
    let LimitRefusal::OverBudget {
        budget,
        limit,
        retry,
    } = err
    else {
        panic!("over budget: {err:?}")
    };
    assert_eq!(
        (budget.as_str(), limit.to_string()),
        ("caller:a", "5 per day".to_owned())
    );
    let to_midnight = 86_400 - wall_clock_secs() % 86_400;
    assert!(
        retry.0.as_secs().abs_diff(to_midnight) <= 2,
        "retry after {retry:?}, midnight UTC is {to_midnight} s away"
    );
    drop(reserve(&l, &s, 2).await.unwrap());
    assert!(reserve(&l, &s, 1).await.is_err(), "5 of 5 used");
    let text = crate::metrics::encode();
    assert!(
        text.contains("graphgate_budget_used{budget=\"rule:r\"} 5"),
        "{text}"
    );
    assert!(text.contains(
        "graphgate_budget_limit{budget=\"tenant:managedDevices.updateWindowsDeviceAccount\"} 1000"
    ));
}

#[tokio::test]
async fn a_request_that_was_not_sent_gives_its_budget_back() {
    let s = store();
    let l = limits(&policy("    budget: 2 per hour\n", "", ""), &s);
    let r = reserve(&l, &s, 2).await.unwrap();
    r.settle(&s, false, None).await;
    let kept = reserve(&l, &s, 2).await.unwrap();
    kept.settle(&s, true, None).await;
    assert!(matches!(
        reserve(&l, &s, 1).await,
        Err(LimitRefusal::OverBudget { .. })
    ));
}
