//! The console's approvals page in headless Chromium: open and decided approvals, each with
//! its progress, reviews and outcome, read from the state store; one approval's page with
//! its facts, groups and reviews; a hostile reason (the request's and a review's) stays
//! text. The page is read-only: it has no form and no button.

use std::sync::Arc;
use std::time::Duration;

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

    let admin = admin_listener(&r).await;
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
    assert!(!one.contains(r#"id="maa""#), "Intune never held it: {one}");

    let (status, _, _) = get(
        admin,
        "/audit/approvals/00000000-0000-0000-0000-000000000000",
        None,
    )
    .await;
    assert_eq!(status, 404);
}

/// An approval held by Intune's Multi Admin Approval shows Intune's side on its page: the
/// approval code, Intune's status, how Graph answered, the reads so far, all as text.
#[tokio::test]
async fn an_approval_held_by_intune_shows_its_multi_admin_approval_state() {
    if !chromium_present() {
        return;
    }
    let r = crate::maa::start(
        1,
        &crate::maa::direct_policy(),
        graphgate::state::StateConfig::default(),
        412,
    )
    .await;
    let path = wipe_path(DEVICE);
    let reply = call(
        r.replicas[0].addr,
        (Method::POST, &path),
        OPS,
        &[("x-graphgate-reason", HOSTILE)],
        WIPE_BODY,
    )
    .await;
    let (id, code) = crate::maa::held_by_intune(&reply, 412);
    let admin = admin_listener(&r).await;
    let page = format!("http://{admin}/audit/approvals/{id}");
    let until = async |what: &str, done: &dyn Fn(&serde_json::Value) -> bool| {
        crate::common::eventually(what, Duration::from_secs(20), async || {
            let doc = crate::approvals::show(r.replicas[0].addr, OPS, &id)
                .await
                .json();
            done(&doc["maa"]).then_some(doc)
        })
        .await
    };

    // Intune answers a status that is markup: the failed read shows, as text.
    r.emulator.set_maa_document_override(Some(
        serde_json::json!({"id": code, "status": r#"<b id="pwn">x</b>"#}),
    ));
    until("a failed read", &|maa| !maa["last_error"].is_null()).await;
    let one = dump_dom(&page).await;
    assert_no_hostile_markup(&one, "an approval held by Intune");
    let failed = r#"<dt>Last read failed</dt><dd>an approval request in unknown status '&lt;b id="pwn"&gt;x&lt;/b&gt;'</dd>"#;
    assert!(maa_facts(&one).contains(failed), "{one}");

    r.emulator.set_maa_document_override(None);
    crate::maa::intune(&r, &code, "reject").await;
    let doc = until("Intune's rejection read", &|maa| {
        maa["status"] == "rejected"
    })
    .await;
    let one = dump_dom(&page).await;
    let maa = maa_facts(&one);
    for fact in [
        format!("<dt>Approval code</dt><dd>{code}</dd>"),
        "<dt>Intune status</dt><dd>rejected</dd>".to_owned(),
        format!(
            "<dt>Expires</dt><dd>{}</dd>",
            doc["maa"]["expires"].as_str().unwrap()
        ),
        "<dt>Graph answered</dt><dd>412</dd>".to_owned(),
        format!("<dt>Status reads</dt><dd>{}</dd>", doc["maa"]["polls"]),
        "<dt>Sent again</dt><dd>no</dd>".to_owned(),
    ] {
        assert!(maa.contains(&fact), "{fact} in {maa}");
    }
}

/// The Multi Admin Approval facts of an approval's page.
fn maa_facts(dom: &str) -> &str {
    let start = dom
        .find(r#"<dl id="maa">"#)
        .unwrap_or_else(|| panic!("no maa in {dom}"));
    let rest = &dom[start..];
    &rest[..rest.find("</dl>").unwrap()]
}

/// An admin listener with the console over replica 0's audit log (flushed first); its address.
async fn admin_listener(r: &Replicas) -> std::net::SocketAddr {
    let gw = Arc::clone(&r.replicas[0].gw);
    gw.audit().flush().await.unwrap();
    let console = Console::start(&r.replicas[0].audit_path, gw.audit().durable_seq(), None);
    crate::console::serve_console(gw, console).await
}

/// The table with id `id` in `dom`.
fn section<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!(r#"id="{id}""#))
        .unwrap_or_else(|| panic!("no {id} in {dom}"));
    let rest = &dom[start..];
    &rest[..rest.find("</table>").unwrap()]
}
