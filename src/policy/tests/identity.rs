//! Unit tests for JWT callers and issuers, and for the person and reason on rules.

use std::borrow::Cow;

use crate::operation::catalog::{self, ApiVersion};
use crate::operation::schema::Params;
use crate::policy::*;

const TENANT: &str = "6babcaad-604b-40ac-a9d7-9fd97c0b779f";
const APP: &str = "3f0c1d8e-5a4b-4c2d-9e8f-7a6b5c4d3e2f";
const OID: &str = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";

fn issuers() -> String {
    format!(
        "jwt_issuers:
  - issuer: https://login.microsoftonline.com/{TENANT}/v2.0
    audiences: [api://graphgate]
    keys: {{ discovery: https://login.microsoftonline.com/{TENANT}/v2.0/.well-known/openid-configuration }}
    algorithms: [RS256]
  - issuer: https://kubernetes.default.svc.cluster.local
    audiences: [graphgate]
    keys: {{ jwks_url: https://kubernetes.default.svc.cluster.local/openid/v1/jwks }}
    leeway_secs: 10
  - issuer: spiffe://corp.example
    audiences: [graphgate]
    keys: {{ file: /etc/graphgate/bundle.json }}
    algorithms: [ES256]
"
    )
}

fn compile(callers: &str, rules: &str) -> Result<Policy, PolicyError> {
    let rules = if rules.is_empty() { " []\n" } else { rules };
    let text = format!(
        "version: 1\n{}callers:\n{callers}rules:\n{rules}",
        issuers()
    );
    Policy::from_yaml(&text, "p.yaml")
}

const CALLERS: &str = "  - name: rooms-rotator
    jwt: { issuer: \"https://login.microsoftonline.com/6babcaad-604b-40ac-a9d7-9fd97c0b779f/v2.0\", claims: { appid: \"3F0C1D8E-5A4B-4C2D-9E8F-7A6B5C4D3E2F\", oid: \"0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb\" } }
  - name: k8s-job
    jwt: { issuer: https://kubernetes.default.svc.cluster.local, subject: \"system:serviceaccount:rooms:rotator\" }
  - name: svid
    jwt: { issuer: spiffe://corp.example, subject: spiffe://corp.example/ns/rooms/sa/svid }
";

fn messages(err: &PolicyError) -> String {
    err.issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_three_kinds_compile_and_their_tokens_find_their_caller() {
    let p = compile(CALLERS, "").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.jwt_issuers.len(), 3);
    let entra = &p.jwt_issuers[0];
    assert_eq!(entra.algorithms, vec![jsonwebtoken::Algorithm::RS256]);
    assert_eq!(entra.leeway.as_secs(), 60, "the default leeway");
    assert_eq!(
        p.jwt_issuers[1].algorithms.len(),
        3,
        "RS256, PS256, ES256 by default"
    );
    assert_eq!(
        p.callers[0].jwt.as_ref().unwrap().claims,
        vec![("azp".into(), APP.into()), ("oid".into(), OID.into())],
        "appid is written as azp, GUIDs in lower case"
    );
    let claims = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| Cow::Borrowed(*v))
        }
    };
    assert_eq!(
        p.jwt_caller(0, claims(&[("azp", APP), ("oid", OID), ("sub", "x")])),
        Some(0)
    );
    assert_eq!(
        p.jwt_caller(0, claims(&[("azp", APP)])),
        None,
        "every claim must be there"
    );
    assert_eq!(
        p.jwt_caller(1, claims(&[("sub", "system:serviceaccount:rooms:rotator")])),
        Some(1)
    );
    assert_eq!(
        p.jwt_caller(0, claims(&[("sub", "system:serviceaccount:rooms:rotator")])),
        None,
        "per issuer"
    );
    let entra_iss = format!("https://login.microsoftonline.com/{TENANT}/v2.0");
    assert_eq!(p.jwt_issuer_for(Some(&entra_iss), None), Some(0));
    assert_eq!(p.jwt_issuer_for(Some("https://evil.example"), None), None);
    assert_eq!(
        p.jwt_issuer_for(None, Some("spiffe://corp.example/ns/x")),
        Some(2),
        "a JWT-SVID without iss"
    );
    assert_eq!(
        p.jwt_issuer_for(None, Some("spiffe://corp.example.evil/ns/x")),
        None
    );
    assert_eq!(
        p.jwt_issuer_for(None, Some("system:serviceaccount:a:b")),
        None
    );
}

#[test]
fn unsafe_or_incomplete_issuers_are_refused_with_every_problem() {
    let text = "version: 1
jwt_issuers:
  - issuer: http://plain.example
    audiences: []
    keys: { jwks_url: http://plain.example/keys }
    algorithms: [none, HS256, RS384, ES256]
  - issuer: spiffe://Corp/path
    audiences: [graphgate]
    keys: { discovery: https://x.example/.well-known/openid-configuration }
  - issuer: https://two.example
    audiences: [graphgate]
    keys: { jwks_url: https://two.example/k, file: /k.json }
    leeway_secs: 3600
  - issuer: https://two.example
    audiences: [graphgate]
    keys: { file: /k.json }
callers: []
";
    let err = Policy::from_yaml(text, "p.yaml").unwrap_err();
    let all = messages(&err);
    for needle in [
        "3:13: jwt issuer \"http://plain.example\" must be an https:// URL",
        "4:16: audiences must list at least one",
        "\"http://plain.example/keys\" must be an https:// URL",
        "algorithm \"none\" is not accepted",
        "algorithm \"HS256\" is not accepted",
        "algorithm \"RS384\" is not accepted",
        "is not a SPIFFE trust domain",
        "use 'file' (or 'jwks_url'), not 'discovery'",
        "keys needs exactly one of",
        "leeway_secs must be from 0 to 300",
        "duplicate jwt issuer \"https://two.example\"",
    ] {
        assert!(all.contains(needle), "{needle}:\n{all}");
    }
    assert!(!all.contains("\"ES256\""), "{all}");
}

#[test]
fn jwt_callers_must_name_a_listed_issuer_and_usable_claims() {
    let err = compile(
        "  - name: ghost
    jwt: { issuer: https://elsewhere.example, subject: x }
  - name: reserved
    jwt: { issuer: https://kubernetes.default.svc.cluster.local, claims: { aud: graphgate } }
  - name: nothing
    jwt: { issuer: https://kubernetes.default.svc.cluster.local }
  - name: foreign-svid
    jwt: { issuer: spiffe://corp.example, subject: spiffe://other.example/x }
",
        "",
    )
    .unwrap_err();
    let all = messages(&err);
    for needle in [
        "jwt issuer \"https://elsewhere.example\" is not listed in jwt_issuers",
        "claims cannot test \"aud\"",
        "jwt needs 'subject' or 'claims'",
        "a SPIFFE caller needs 'subject': its SPIFFE id, spiffe://corp.example/...",
    ] {
        assert!(all.contains(needle), "{needle}:\n{all}");
    }
}

#[test]
fn callers_one_token_could_both_be_are_refused_at_load() {
    let k8s = "https://kubernetes.default.svc.cluster.local";
    let two = |a: &str, b: &str| {
        compile(
            &format!(
                "  - name: first\n    jwt: {{ issuer: {k8s}, {a} }}\n  - name: second\n    jwt: {{ issuer: {k8s}, {b} }}\n"
            ),
            "",
        )
    };
    let same = two("subject: s1", "claims: { sub: s1 }").unwrap_err();
    assert!(
        messages(&same).contains("also caller \"first\"'s"),
        "{}",
        messages(&same)
    );
    let disjoint = two("claims: { azp: a }", "claims: { oid: b }").unwrap_err();
    assert!(messages(&disjoint).contains("could be both this caller and caller \"first\""));
    let agreeing = two("claims: { sub: s, azp: a }", "claims: { sub: s, oid: b }").unwrap_err();
    assert!(
        messages(&agreeing).contains("could be both"),
        "{}",
        messages(&agreeing)
    );
    assert!(
        two("subject: s1", "claims: { sub: s2, oid: b }").is_ok(),
        "they differ on sub"
    );
    assert!(two("subject: s1", "subject: s2").is_ok());
    let other_issuer = compile(
        &format!(
            "  - name: first\n    jwt: {{ issuer: {k8s}, subject: s }}\n  - name: second\n    jwt: {{ issuer: spiffe://corp.example, subject: spiffe://corp.example/s }}\n  - name: third\n    jwt: {{ issuer: \"https://login.microsoftonline.com/{TENANT}/v2.0\", subject: s }}\n"
        ),
        "",
    );
    assert!(
        other_issuer.is_ok(),
        "the same subject under two issuers is two callers"
    );
}

#[test]
fn many_jwt_callers_are_indexed_without_comparing_every_pair() {
    let mut callers = String::new();
    for i in 0..5_000 {
        callers.push_str(&format!(
            "  - name: c{i}\n    jwt: {{ issuer: https://kubernetes.default.svc.cluster.local, subject: \"system:serviceaccount:ns:sa{i}\" }}\n  - name: d{i}\n    jwt: {{ issuer: https://kubernetes.default.svc.cluster.local, claims: {{ sub: \"system:serviceaccount:other:sa{i}\", azp: x }} }}\n"
        ));
    }
    // Real time on purpose: a quadratic index over 10,000 callers would take minutes.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let p = compile(&callers, "").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let sub = "system:serviceaccount:ns:sa4321";
    assert_eq!(
        p.jwt_caller(1, |n| (n == "sub").then_some(Cow::Borrowed(sub))),
        p.caller_index("c4321")
    );
}

const RULE: &str = "  - name: r\n    callers: [k8s-job]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n";

#[test]
fn require_and_initiators_are_validated() {
    let err = compile(
        CALLERS,
        &format!("{RULE}    require: [initiator, reason, ticket, reason]\n    initiators: [alice, \"@contoso.com\", .corp.example, {OID}, \"contoso.com\"]\n  - name: d\n    effect: deny\n    callers: [k8s-job]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    require: [reason]\n    initiators: []\n"),
    )
    .unwrap_err();
    let all = messages(&err);
    for needle in [
        "require takes 'initiator' and 'reason', not \"ticket\"",
        "\"reason\" is required twice",
        "initiator \"alice\" is not a user principal name",
        "initiator \"contoso.com\" is not a user principal name",
        "require belongs on allow rules",
        "an empty initiators list can never match",
    ] {
        assert!(all.contains(needle), "{needle}:\n{all}");
    }
    assert_eq!(err.issues.len(), 6, "{all}");
    let p = compile(CALLERS, &format!("{RULE}    require: [reason]\n")).unwrap();
    assert_eq!(
        p.rules[0].require,
        Require {
            initiator: false,
            reason: true
        }
    );
}

fn decide(p: &Policy, initiator: Option<&str>) -> (bool, Option<String>) {
    decide_for(p, initiator.map(Person::stated).as_ref())
}

fn decide_for(p: &Policy, initiator: Option<&Person>) -> (bool, Option<String>) {
    let params = Params(vec![]);
    let d = p.decide(&Facts {
        caller: p.caller_index("k8s-job").unwrap(),
        op: catalog::by_name("managedDevices.updateWindowsDeviceAccount").unwrap(),
        version: ApiVersion::V1,
        device: OID,
        params: &params,
        initiator,
    });
    (d.allowed, d.rule_name().map(str::to_owned))
}

#[test]
fn initiators_are_a_condition_of_their_rule() {
    let p = compile(
        CALLERS,
        &format!("{RULE}    initiators: [\"@contoso.com\", {OID}]\n  - name: no-interns\n    effect: deny\n    callers: [k8s-job]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    initiators: [intern@contoso.com]\n"),
    )
    .unwrap();
    let allowed = (true, Some("r".to_owned()));
    assert_eq!(decide(&p, Some("Alice@CONTOSO.com")), allowed);
    assert_eq!(decide(&p, Some(OID)), allowed);
    assert_eq!(decide(&p, Some("alice@evilcontoso.com")), (false, None));
    assert_eq!(
        decide(&p, None),
        (false, None),
        "no initiator stated: the rule does not match"
    );
    assert_eq!(
        decide(&p, Some("intern@contoso.com")),
        (false, Some("no-interns".into()))
    );
    // Before the body, a deny with initiators depends on what the request states.
    let scope = Scope {
        caller: p.caller_index("k8s-job").unwrap(),
        op: catalog::by_name("managedDevices.updateWindowsDeviceAccount").unwrap(),
        version: ApiVersion::V1,
        device: OID,
    };
    assert!(p.decide_before_body(&scope).is_none());
}

#[test]
fn a_person_known_by_both_ids_is_matched_by_either() {
    const USER_OID: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
    let p = compile(
        CALLERS,
        &format!("{RULE}    initiators: [\"@contoso.com\"]\n  - name: not-bob\n    effect: deny\n    callers: [k8s-job]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    initiators: [{USER_OID}]\n"),
    )
    .unwrap();
    let both = Person {
        upn: Some("bob@contoso.com".into()),
        oid: Some(USER_OID.into()),
    };
    assert_eq!(
        decide_for(&p, Some(&both)),
        (false, Some("not-bob".into())),
        "the deny lists the object id; the person is stated by UPN and object id"
    );
    let upn_only = Person::stated("bob@contoso.com");
    assert_eq!(decide_for(&p, Some(&upn_only)), (true, Some("r".into())));
    let oid_only = Person::stated(&USER_OID.to_uppercase());
    assert_eq!(oid_only.oid.as_deref(), Some(USER_OID));
    assert_eq!(
        decide_for(&p, Some(&oid_only)),
        (false, Some("not-bob".into()))
    );
    assert_eq!(both.primary(), "bob@contoso.com");
    assert!(both.is("BOB@contoso.com") && both.is(&USER_OID.to_uppercase()));
    assert!(!both.is("alice@contoso.com"));
    // The deny names bob by object id only: `policy check` says a UPN alone slips past it.
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(p.warnings[0].contains("deny rule 'not-bob' names people by object ids only"));
    let both_ids = compile(
        CALLERS,
        &format!("{RULE}  - name: not-bob\n    effect: deny\n    callers: [k8s-job]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n    initiators: [{USER_OID}, bob@contoso.com]\n"),
    )
    .unwrap();
    assert!(both_ids.warnings.is_empty(), "{:?}", both_ids.warnings);
}

/// The names serde expects in `T`: from its refusal of an unknown field (`deny_unknown_fields`
/// lists them), so a field added to the file format is found here without a list to keep.
fn field_names<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> Vec<String> {
    let err = serde_saphyr::from_str::<T>("not_a_field_of_this: 1\n").unwrap_err();
    let text = err.to_string();
    // "...unknown field `not_a_field_of_this`, expected one of a, b, c" on its first line.
    let first = text.lines().next().unwrap_or_default();
    let (_, expected) = first
        .split_once("expected one of ")
        .unwrap_or_else(|| panic!("no field list in: {text}"));
    let names: Vec<String> = expected.split(", ").map(|n| n.trim().to_owned()).collect();
    assert!(names.len() > 1, "{text}");
    names
}

/// The section of the book's callers page headed `heading`, up to the next section. (Read at
/// run time: the image's build context has no docs, see `tests/e2e/deploy/docker.rs`.)
fn callers_section(heading: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/callers.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let start = readme.find(heading).unwrap_or_else(|| panic!("{heading}"));
    let rest = &readme[start + heading.len()..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_owned()
}

#[test]
fn every_key_of_jwt_issuers_callers_and_rules_is_in_the_readme() {
    let tokens = callers_section("## Callers with tokens: Entra, Kubernetes, SPIFFE");
    let names = [
        field_names::<jwt::JwtIssuerEntry>(),
        field_names::<jwt::JwtKeysEntry>(),
        field_names::<jwt::JwtCallerEntry>(),
    ];
    for name in names.iter().flatten() {
        assert!(
            tokens.contains(&format!("{name}:")),
            "jwt_issuers / jwt key '{name}' is not in docs/callers.md's example"
        );
    }
    let person = callers_section("## The person and the reason");
    let rule_keys = field_names::<file::RuleEntry>();
    for name in ["require", "initiators"] {
        assert!(rule_keys.iter().any(|k| k == name), "{rule_keys:?}");
        assert!(person.contains(&format!("{name}:")), "rule key '{name}'");
    }
}

#[test]
fn jwks_hosts_are_pinned_for_entra_issuers_by_default_and_on_request_for_others() {
    let p = compile(CALLERS, "").unwrap_or_else(|e| panic!("{e}"));
    let (entra, k8s) = (&p.jwt_issuers[0], &p.jwt_issuers[1]);
    assert!(entra.pin_jwks_host, "on by default for Entra");
    assert!(!k8s.pin_jwks_host, "off by default for other issuers");
    let discovery =
        format!("https://login.microsoftonline.com/{TENANT}/v2.0/.well-known/openid-configuration");
    assert!(entra.jwks_host_allowed(&discovery, "login.microsoftonline.com"));
    assert!(entra.jwks_host_allowed(&discovery, "LOGIN.microsoftonline.com"));
    for elsewhere in [
        "evil.example",
        "login.microsoftonline.com.evil.example",
        "login.microsoftonline.us",
    ] {
        assert!(
            !entra.jwks_host_allowed(&discovery, elsewhere),
            "{elsewhere}"
        );
    }
    assert!(k8s.jwks_host_allowed(
        "https://k8s.example/.well-known/openid-configuration",
        "anywhere.example"
    ));
    // v1 issuers are on sts.windows.net; their keys on the cloud's authority.
    assert!(jwt::is_entra_issuer(&format!(
        "https://sts.windows.net/{TENANT}/"
    )));
    assert!(jwt::is_entra_issuer(&format!(
        "https://login.partner.microsoftonline.cn/{TENANT}/v2.0"
    )));
    assert!(!jwt::is_entra_issuer(
        "https://kubernetes.default.svc.cluster.local"
    ));
    assert!(!jwt::is_entra_issuer(
        "https://sts.windows.net.evil.example/x/"
    ));
    assert_eq!(
        jwt::url_host("https://u@h.example:8443/p?q"),
        Some("h.example")
    );
    // Turned on for another issuer, off for an Entra one.
    let flipped = issuers()
        .replacen(
            "    algorithms: [RS256]\n",
            "    algorithms: [RS256]\n    pin_jwks_host: false\n",
            1,
        )
        .replacen(
            "    leeway_secs: 10\n",
            "    leeway_secs: 10\n    pin_jwks_host: true\n",
            1,
        );
    let text = format!("version: 1\n{flipped}callers:\n{CALLERS}rules: []\n");
    let p = Policy::from_yaml(&text, "p.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert!(!p.jwt_issuers[0].pin_jwks_host && p.jwt_issuers[1].pin_jwks_host);
}
