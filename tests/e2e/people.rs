//! The person a request is made for, by both of its ids: a delegated token names its user by
//! object id (and by UPN when it has `upn`), rules' `initiators` match either, the audit
//! records both; `preferred_username` never names anyone; a token that says it is
//! delegated but names no user by object id is refused, not taken as an app's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};

use crate::common;

use common::jwt::*;
use common::{Caller, ROTATOR_KEY, TestPolicy};
use graphgate_emulator::{Cloud, DEMO_TENANT_ID, DEMO_USER_OID, DEMO_USER_UPN, entra_issuer};

/// The helpdesk portal's v2 caller (its v2 tokens name the app by `azp`).
const V2_CALLER: &str = "helpdesk-portal-v2";

/// [`policy`] with the helpdesk portal (v1 and v2 tokens) allowed only by `people_rules`.
fn helpdesk_policy(people_rules: &str) -> String {
    let v2_issuer = entra_issuer(Cloud::Global, DEMO_TENANT_ID, 2);
    let v2_jwt = json!({"issuer": v2_issuer, "claims": {"azp": HELPDESK_APP}});
    TestPolicy::parse(&policy(None, 60, people_rules))
        .caller(Caller::named(V2_CALLER).set("jwt", v2_jwt))
        .with_rule("workloads-update-room-accounts", |r| {
            r.without_caller("helpdesk-portal")
        })
        .yaml()
}

/// A delegated token for the demo user through the helpdesk app: v1 (`upn`) or v2
/// (`preferred_username` only).
fn user_token(j: &JwtHarness, version: u8) -> String {
    let api = (version == 2).then_some(API_V2_URI);
    j.h.emulator
        .user_token(
            HELPDESK_APP,
            DEMO_USER_UPN,
            "Devices.Manage",
            api,
            Cloud::Global,
        )
        .unwrap()
}

async fn start(people_rules: &str) -> JwtHarness {
    let j = start_jwt(60, "").await;
    let text = helpdesk_policy(people_rules);
    j.h.gw
        .set_policy(graphgate::policy::Policy::from_yaml(&text, "people").unwrap());
    j
}

const HELPDESK_RULE: &str = "  - name: helpdesk-for-anyone\n    callers: [helpdesk-portal, helpdesk-portal-v2]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n";

#[tokio::test]
async fn a_deny_naming_a_users_object_id_stops_their_delegated_tokens_and_their_upn() {
    let deny = format!(
        "{HELPDESK_RULE}  - name: not-adele\n    effect: deny\n    callers: [helpdesk-portal, helpdesk-portal-v2, rooms-rotator]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    initiators: [\"{}\"]\n",
        DEMO_USER_OID.to_uppercase()
    );
    let j = start(&deny).await;
    let h = &j.h;
    let before = h.graph_count();
    // A v1 token names Adele by UPN and object id; a v2 token by object id only.
    for (version, stated) in [
        (1, None),
        (1, Some(DEMO_USER_UPN)),
        (2, None),
        (2, Some(DEMO_USER_OID)),
    ] {
        let token = user_token(&j, version);
        let headers: Vec<(&str, &str)> = stated
            .map(|who| ("x-graphgate-initiator", who))
            .into_iter()
            .collect();
        let reply = h.post_token(&token, &headers).await;
        reply.assert_graph_error(403, "accessDenied");
        let record = h.last_record().await;
        assert_eq!(
            record["decision"], "denied",
            "v{version} {stated:?}: {record}"
        );
        assert_eq!(record["rule"], "not-adele");
        assert_eq!(record["initiator_source"], "token");
        assert_eq!(record["initiator_oid"], DEMO_USER_OID, "both ids recorded");
        let shown = if version == 1 {
            DEMO_USER_UPN
        } else {
            DEMO_USER_OID
        };
        assert_eq!(record["initiator"], shown);
    }
    assert_eq!(h.graph_count(), before, "nothing forwarded");
    // Another person is not stopped.
    let reply = h
        .post_token(
            ROTATOR_KEY,
            &[("x-graphgate-initiator", "megan@contoso.com")],
        )
        .await;
    assert_eq!(reply.status, 204, "{:?}", reply.body);
    let record = h.last_record().await;
    assert_eq!(record["initiator"], "megan@contoso.com");
    assert_eq!(
        record.get("initiator_oid"),
        None,
        "not known for a UPN stated alone"
    );
}

#[tokio::test]
async fn preferred_username_alone_does_not_name_a_person() {
    let by_upn = format!(
        "  - name: adele-by-upn\n    callers: [helpdesk-portal, helpdesk-portal-v2]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    initiators: [{DEMO_USER_UPN}]\n"
    );
    let j = start(&by_upn).await;
    let h = &j.h;
    let v1 = user_token(&j, 1);
    assert!(emu_claims(&v1)["upn"].is_string());
    let reply = h.post_token(&v1, &[]).await;
    assert_eq!(
        reply.status, 204,
        "the v1 token's upn names her: {:?}",
        reply.body
    );
    // The v2 token carries her address as preferred_username only: she is her object id.
    let v2 = user_token(&j, 2);
    let claims = emu_claims(&v2);
    assert_eq!(claims["preferred_username"], DEMO_USER_UPN);
    assert!(claims.get("upn").is_none());
    let before = h.graph_count();
    let reply = h.post_token(&v2, &[]).await;
    reply.assert_graph_error(403, "accessDenied");
    let record = h.last_record().await;
    assert_eq!(record["initiator"], DEMO_USER_OID);
    assert_eq!(record["decision"], "denied");
    // Stating the address the token only calls her preferred name is someone else.
    let reply = h
        .post_token(&v2, &[("x-graphgate-initiator", DEMO_USER_UPN)])
        .await;
    reply.assert_graph_error(400, "invalidRequest");
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("someone other than the signed-in user"),
        "{message}"
    );
    assert_eq!(h.graph_count(), before, "nothing forwarded");
}

fn emu_claims(token: &str) -> Value {
    common::emu::jwt_part(token, 1)
}

#[tokio::test]
async fn a_token_claiming_to_be_delegated_without_the_users_object_id_is_refused() {
    let j = start(HELPDESK_RULE).await;
    let h = &j.h;
    let real = emu_claims(&user_token(&j, 1));
    let mut without_oid = real.clone();
    without_oid.as_object_mut().unwrap().remove("oid");
    let mut not_a_guid = real.clone();
    not_a_guid["oid"] = json!(DEMO_USER_UPN);
    let mut user_type_only = real.clone();
    let claims = user_type_only.as_object_mut().unwrap();
    claims.remove("scp");
    claims.remove("oid");
    claims.insert("idtyp".into(), json!("user"));
    let mut app_and_user = real.clone();
    app_and_user["idtyp"] = json!("app");
    let before = h.graph_count();
    for (what, claims) in [
        ("no oid", without_oid),
        ("oid not a GUID", not_a_guid),
        ("idtyp user, no oid", user_type_only),
        ("scp and idtyp app", app_and_user),
    ] {
        let token = h.emulator.sign_entra_claims(&claims).unwrap();
        let reply = h.post_token(&token, &[]).await;
        assert_token_refused(
            &reply,
            "delegated (user) token without the user's object id",
        );
        let record = h.last_record().await;
        assert_eq!(record["decision"], "unauthenticated", "{what}");
        assert_eq!(
            record["note"], "token refused: delegated_without_user",
            "{what}"
        );
    }
    assert_eq!(h.graph_count(), before, "nothing forwarded");
    // The same claims with the object id are the user's token, accepted.
    let token = h.emulator.sign_entra_claims(&real).unwrap();
    assert_eq!(h.post_token(&token, &[]).await.status, 204);
}
