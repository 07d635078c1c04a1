//! The console's approvals page in headless Chromium: open and decided approvals, each with
//! its progress, reviews and outcome, read from the state store; one approval's page with
//! its facts, groups and reviews; a hostile reason (the request's and a review's) stays
//! text. The page is read-only: it has no form and no button.

use std::sync::Arc;

use graphgate::admin::AdminOptions;
use graphgate::console::Console;
use http::Method;

use crate::approvals::{
    ALICE, BOB, CAROL, OPS, WIPE_BODY, call, held, policy, review, two_groups, wipe_path,
};
use crate::common::replicas::Replicas;
use crate::common::{DEVICE, Options};
use crate::console::{HOSTILE, assert_no_hostile_markup, chromium_present, dump_dom, get};

/// `key` reviews approval `id` (`action`) with `reason`.
async fn review_with(
    addr: std::net::SocketAddr,
    key: &str,
    id: &str,
    action: &str,
    sha: &str,
    reason: &str,
) -> u16 {
    let body = serde_json::json!({"reason": reason, "request_sha256": sha}).to_string();
    let path = format!("/api/v1/approvals/{id}/{action}");
    call(addr, (Method::POST, &path), key, &[], &body)
        .await
        .status
        .as_u16()
}

#[tokio::test]
async fn the_approvals_page_shows_open_and_decided_approvals_with_reviews_as_text() {
    if !chromium_present() {
        return;
    }
    let r = Replicas::start_with(1, &policy(two_groups()).yaml(), Options::default()).await;
    let addr = r.replicas[0].addr;
    let gw = Arc::clone(&r.replicas[0].gw);
    let ask = |device: &'static str| {
        let path = wipe_path(device);
        async move {
            held(
                &call(
                    addr,
                    (Method::POST, &path),
                    OPS,
                    &[("x-graphgate-reason", HOSTILE)],
                    WIPE_BODY,
                )
                .await,
            )
        }
    };
    // One pending, one run (approved by alice with a hostile reason, then carol), one rejected.
    let (pending, _) = ask(DEVICE).await;
    let (ran, ran_sha) = ask(graphgate_emulator::DEMO_DEVICE_IDS[1]).await;
    assert_eq!(
        review_with(addr, ALICE, &ran, "approve", &ran_sha, HOSTILE).await,
        200
    );
    assert_eq!(
        review(addr, CAROL, &ran, "approve", &ran_sha).await.json()["state"],
        "succeeded"
    );
    let (rejected, rejected_sha) = ask(graphgate_emulator::DEMO_DEVICE_IDS[2]).await;
    assert_eq!(
        review(addr, BOB, &rejected, "reject", &rejected_sha)
            .await
            .status,
        200
    );

    gw.audit().flush().await.unwrap();
    let console = Console::start(&r.replicas[0].audit_path, gw.audit().durable_seq(), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap();
    let options = AdminOptions {
        token: None,
        console: Some(console),
    };
    tokio::spawn(graphgate::admin::serve_with(
        listener,
        Arc::clone(&gw),
        options,
        std::future::pending(),
    ));
    let base = format!("http://{admin}");

    let list = dump_dom(&format!("{base}/audit/approvals")).await;
    assert_no_hostile_markup(&list, "/audit/approvals");
    let open = section(&list, "open-approvals");
    let decided = section(&list, "decided-approvals");
    assert!(
        open.contains(&pending) && !open.contains(&ran) && !open.contains(&rejected),
        "{open}"
    );
    assert!(
        open.contains(r#"<td class="progress">0/1 0/1</td>"#),
        "{open}"
    );
    assert!(
        decided.contains(&ran) && decided.contains(&rejected),
        "{decided}"
    );
    assert!(
        decided.contains(r#"<td class="state">succeeded</td>"#),
        "{decided}"
    );
    assert!(
        decided.contains(r#"<td class="state">rejected</td>"#),
        "{decided}"
    );
    assert!(
        decided.contains(r#"<td class="outcome">204</td>"#),
        "{decided}"
    );
    assert!(
        decided.contains("reject by bob: reject: checked INC-4711"),
        "{decided}"
    );
    assert!(
        list.contains("&lt;b id=\"pwn\"&gt;x&lt;/b&gt;"),
        "the reason, as text: {list}"
    );
    assert!(
        !list.contains("<form") && !list.contains("<button"),
        "read-only"
    );

    let one = dump_dom(&format!("{base}/audit/approvals/{ran}")).await;
    assert_no_hostile_markup(&one, "one approval");
    assert!(
        one.contains(&format!(r#"<code id="approval-id">{ran}</code>"#)),
        "{one}"
    );
    assert!(one.contains(&ran_sha), "{one}");
    let reviews = section(&one, "reviews");
    assert_eq!(
        reviews.matches(r#"<tr class="review">"#).count(),
        2,
        "{reviews}"
    );
    assert!(
        reviews.contains("<td>alice</td>") && reviews.contains("<td>carol</td>"),
        "{reviews}"
    );
    assert!(
        reviews.contains("&lt;img src=x onerror="),
        "a review's reason, as text: {reviews}"
    );
    assert!(one.contains("<dt>Outcome</dt><dd>204</dd>"), "{one}");

    let (status, _, _) = get(
        admin,
        "/audit/approvals/00000000-0000-0000-0000-000000000000",
        None,
    )
    .await;
    assert_eq!(status, 404);
}

/// The table with id `id` in `dom`.
fn section<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!(r#"id="{id}""#))
        .unwrap_or_else(|| panic!("no {id} in {dom}"));
    let rest = &dom[start..];
    &rest[..rest.find("</table>").unwrap()]
}
