//! Callers with tokens: a policy trusting the emulator's issuers (Entra v1 and v2 in every
//! cloud, the Kubernetes service-account issuer, the SPIFFE trust domain through a bundle
//! file), a gateway enforcing it, and requests carrying a token.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use bytes::Bytes;
use graphgate::cloud::Cloud;
use graphgate_emulator::Secret;
use graphgate_emulator::{
    self, AppRegistration, DEMO_TENANT_ID, EmulatorConfig, ExposedApi, KUBERNETES_ISSUER,
    entra_issuer,
};
use http::Method;
use http_body_util::Full;

use super::{ACTION_PATH, Harness, Options, Reply, body, emu, start_with};

/// The caller app (a service with its own app registration) calling graphgate.
pub const CALLER_APP: &str = "5b3f8a2c-9d1e-4f60-8a7b-c2d3e4f5a6b7";
pub const CALLER_SECRET: &str = "caller-app-secret-for-tests";
/// A user-facing app (a helpdesk portal) that calls graphgate for its signed-in user.
pub const HELPDESK_APP: &str = "2a4c6e8f-1b3d-4f5a-9c7e-0d2f4a6c8e1b";
/// graphgate's second API registration, for which Entra issues v2 tokens.
pub const API_V2_URI: &str = "api://graphgate-v2";
pub const API_V2_CLIENT: &str = "7e6d5c4b-3a29-4817-9605-f4e3d2c1b0a9";
/// The audience of workload tokens.
pub const AUDIENCE: &str = "graphgate";
pub const NAMESPACE: &str = "rooms";
pub const SERVICE_ACCOUNT: &str = "rotator";
pub const SVID: &str = "spiffe://corp.example/ns/rooms/sa/rotator";

/// The emulator with the caller app and both of graphgate's API registrations.
pub fn emulator_config() -> EmulatorConfig {
    let mut config = EmulatorConfig::default();
    config.apps.push(AppRegistration {
        client_id: CALLER_APP.into(),
        client_secret: Secret::new(CALLER_SECRET),
        roles: vec![],
    });
    config.apps.push(AppRegistration {
        client_id: HELPDESK_APP.into(),
        client_secret: Secret::new("helpdesk-secret-for-tests"),
        roles: vec![],
    });
    config.exposed_apis.push(ExposedApi {
        app_id_uri: API_V2_URI.into(),
        client_id: API_V2_CLIENT.into(),
        token_version: 2,
    });
    config
}

/// The clouds whose Entra issuers differ (L4 and L5 share one authority).
pub const ENTRA_CLOUDS: [Cloud; 3] = [Cloud::Global, Cloud::UsGov, Cloud::China];

/// The caller name for Entra tokens of `cloud` and `version`.
pub fn entra_caller(cloud: Cloud, version: u8) -> String {
    format!("entra-{}-v{version}", cloud.endpoints().name)
}

/// The `jwt_issuers` entry of one Entra issuer, keys by its discovery document.
fn entra_issuer_yaml(cloud: Cloud, version: u8) -> String {
    let host = cloud.endpoints().login_host;
    let (audience, discovery) = match version {
        1 => (
            graphgate_emulator::DEMO_API_URI,
            format!("https://{host}/{DEMO_TENANT_ID}/.well-known/openid-configuration"),
        ),
        _ => (
            API_V2_CLIENT,
            format!("https://{host}/{DEMO_TENANT_ID}/v2.0/.well-known/openid-configuration"),
        ),
    };
    format!(
        "  - issuer: \"{}\"\n    audiences: [\"{audience}\"]\n    keys: {{ discovery: \"{discovery}\" }}\n    algorithms: [RS256]\n",
        entra_issuer(super::ms_cloud(cloud), DEMO_TENANT_ID, version)
    )
}

/// A policy trusting every emulated issuer (the SPIFFE trust domain too if its `bundle`
/// file is given), with a caller per issuer allowed the standard action, the API-key caller
/// of the default policy, and `extra_rules` appended. The Kubernetes issuer refreshes for
/// unknown kids at most every `kid_refresh_secs`.
pub fn policy(
    bundle: Option<&std::path::Path>,
    kid_refresh_secs: u64,
    extra_rules: &str,
) -> String {
    let mut issuers = String::from("jwt_issuers:\n");
    let mut callers = format!(
        "  - name: rooms-rotator\n    api_key_sha256: \"{}\"\n",
        graphgate::identity::api_key_sha256(super::ROTATOR_KEY)
    );
    let oid = graphgate_emulator::service_principal_id(DEMO_TENANT_ID, CALLER_APP);
    let mut names = vec!["rooms-rotator".to_owned()];
    for cloud in ENTRA_CLOUDS {
        for version in [1, 2] {
            issuers.push_str(&entra_issuer_yaml(cloud, version));
            let name = entra_caller(cloud, version);
            callers.push_str(&format!(
                "  - name: {name}\n    jwt: {{ issuer: \"{}\", claims: {{ azp: \"{CALLER_APP}\", oid: \"{oid}\" }} }}\n",
                entra_issuer(super::ms_cloud(cloud), DEMO_TENANT_ID, version)
            ));
            names.push(name);
        }
    }
    issuers.push_str(&format!(
        "  - issuer: {KUBERNETES_ISSUER}\n    audiences: [{AUDIENCE}]\n    keys: {{ discovery: {KUBERNETES_ISSUER}/.well-known/openid-configuration }}\n    unknown_kid_refresh_secs: {kid_refresh_secs}\n    fetch_timeout_ms: 2000\n    leeway_secs: 30\n"
    ));
    if let Some(bundle) = bundle {
        issuers.push_str(&format!(
            "  - issuer: spiffe://corp.example\n    audiences: [{AUDIENCE}]\n    keys: {{ file: \"{}\" }}\n    algorithms: [ES256]\n    unknown_kid_refresh_secs: 1\n",
            bundle.display()
        ));
        callers.push_str(&format!(
            "  - name: svid-rotator\n    jwt: {{ issuer: spiffe://corp.example, subject: {SVID} }}\n"
        ));
        names.push("svid-rotator".to_owned());
    }
    callers.push_str(&format!(
        "  - name: helpdesk-portal\n    jwt: {{ issuer: \"{}\", claims: {{ appid: \"{HELPDESK_APP}\" }} }}\n",
        entra_issuer(graphgate_emulator::Cloud::Global, DEMO_TENANT_ID, 1)
    ));
    names.push("helpdesk-portal".to_owned());
    callers.push_str(&format!(
        "  - name: k8s-rotator\n    jwt: {{ issuer: {KUBERNETES_ISSUER}, subject: \"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}\" }}\n"
    ));
    names.push("k8s-rotator".to_owned());
    format!(
        "version: 1\n{issuers}callers:\n{callers}rules:\n  - name: workloads-update-room-accounts\n    callers: [{}]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n{extra_rules}",
        names.join(", ")
    )
}

/// A fresh token of the policy's Kubernetes caller (its service account, graphgate's
/// audience, an hour's lifetime), signed with the emulated cluster's current key.
pub fn sa_token(h: &Harness) -> String {
    h.emulator
        .service_account_token(NAMESPACE, SERVICE_ACCOUNT, &[AUDIENCE], 3600)
        .unwrap()
}

/// A gateway trusting the emulator's issuers, its SPIFFE bundle written to a file first.
pub struct JwtHarness {
    pub h: Harness,
    pub bundle: PathBuf,
}

/// Starts the emulator and a gateway enforcing [`policy`].
pub async fn start_jwt(kid_refresh_secs: u64, extra_rules: &str) -> JwtHarness {
    start_jwt_with(kid_refresh_secs, extra_rules, Options::default()).await
}

/// [`start_jwt`] with other options (the policy and emulator are this module's).
pub async fn start_jwt_with(kid_refresh_secs: u64, extra_rules: &str, opts: Options) -> JwtHarness {
    let h = start_with(Options {
        emulator: emulator_config(),
        policy: Some(policy(None, kid_refresh_secs, extra_rules)),
        ..opts
    })
    .await;
    // The SPIFFE trust domain's keys come from a bundle file: write the emulator's, then
    // trust the domain (its key store starts with the file in place).
    let bundle = super::temp_dir("bundle").join("bundle.json");
    write_bundle(&h, &bundle);
    let full = policy(Some(&bundle), kid_refresh_secs, extra_rules);
    h.gw.set_policy(graphgate::policy::Policy::from_yaml(&full, "jwt-policy").unwrap());
    JwtHarness { h, bundle }
}

impl JwtHarness {
    /// The policy text in force (see [`policy`]).
    pub fn policy(&self, kid_refresh_secs: u64, extra_rules: &str) -> String {
        policy(Some(&self.bundle), kid_refresh_secs, extra_rules)
    }
}

/// Writes the emulator's current SPIFFE bundle to `path` (atomically, as SPIRE's helper does).
pub fn write_bundle(h: &Harness, path: &std::path::Path) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, h.emulator.spiffe_bundle().unwrap().to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

impl Harness {
    /// POSTs the standard body to the action with `token` as the bearer, plus `headers`.
    pub async fn post_token(&self, token: &str, headers: &[(&str, &str)]) -> Reply {
        self.post_token_to(ACTION_PATH, token, headers, &body())
            .await
    }

    /// POSTs `body` to `path` with `token` and `headers`.
    pub async fn post_token_to(
        &self,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut req = self
            .request(path)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
            .await
    }

    /// A request to the emulator over HTTPS, as `host`.
    pub async fn to_emulator(
        &self,
        host: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> emu::Reply {
        let req = emu::request(host, method, path, headers, body);
        emu::send_to(self.emulator_addr, self.emulator.ca_pem(), host, req, false)
            .await
            .unwrap()
    }

    /// The caller app's client-credentials token for graphgate's API `api_uri`, from the
    /// emulated Entra of `cloud` (a real token request, as an Azure SDK makes it).
    pub async fn client_credentials(&self, cloud: Cloud, api_uri: &str) -> String {
        let host = cloud.endpoints().login_host;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", CALLER_APP)
            .append_pair("client_secret", CALLER_SECRET)
            .append_pair("scope", &format!("{api_uri}/.default"))
            .finish();
        let reply = self
            .to_emulator(
                host,
                Method::POST,
                &format!("/{DEMO_TENANT_ID}/oauth2/v2.0/token"),
                &[("content-type", "application/x-www-form-urlencoded")],
                &form,
            )
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        reply.json()["access_token"].as_str().unwrap().to_owned()
    }

    /// A projected service-account token from the emulated cluster's TokenRequest endpoint.
    pub async fn service_account_token(&self, audiences: &[&str]) -> String {
        let body = serde_json::json!({"spec": {"audiences": audiences, "expirationSeconds": 3600}});
        let reply = self
            .to_emulator(
                graphgate_emulator::KUBERNETES_HOST,
                Method::POST,
                &format!(
                    "/_emulator/kubernetes/serviceaccounts/{NAMESPACE}/{SERVICE_ACCOUNT}/token"
                ),
                &[("content-type", "application/json")],
                &body.to_string(),
            )
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        reply.json()["status"]["token"].as_str().unwrap().to_owned()
    }

    /// Graph requests the emulator has received so far.
    pub fn graph_count(&self) -> usize {
        self.emulator.graph_requests().len()
    }

    /// The last audit record written (after everything queued is durable).
    pub async fn last_record(&self) -> serde_json::Value {
        self.audit_records().await.pop().unwrap()
    }
}

/// Hex SHA-256 of a token, as `sha256sum` prints it.
pub fn sha256_hex(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Asserts a 401 for a refused token: Graph's error JSON, the RFC 6750 challenge.
pub fn assert_token_refused(reply: &Reply, message_part: &str) {
    reply.assert_graph_error(401, "InvalidAuthenticationToken");
    assert_eq!(
        reply.headers["www-authenticate"],
        r#"Bearer realm="graphgate", error="invalid_token""#
    );
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains(message_part), "{message}");
}
