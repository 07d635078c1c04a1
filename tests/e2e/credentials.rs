//! End-to-end: every credential kind (client secret, secret file, certificate, workload
//! identity, managed identity) gets a token from the emulator in every cloud and the action
//! reaches Graph; files rotate without a restart or a failed request; the least-privilege
//! report names missing and excess permissions; the emulator refuses bad assertions with
//! Entra's codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use common::{ACTION_PATH, Options, ROTATOR_KEY, body, policy_text};
use graphgate::cloud::Cloud;
use graphgate::credential::{
    AssertionAlg, ClientAuth, ClientCertificate, Credential, TokenError, request_token,
};
use graphgate::gateway::Gateway;
use graphgate::operation::catalog::PRIV_OPS;
use graphgate::policy::Policy;
use graphgate::secret::Secret;
use graphgate::upstream::{self, HttpClient, UpstreamConfig};
use graphgate_emulator::{
    AdditionalSecret, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID, Emulator, EmulatorConfig,
    Faults, FederatedCredential, FederatedIssuer, RegisteredCertificate, TOKEN_EXCHANGE_AUDIENCE,
    TestCertificate,
};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const ISSUER: &str = "https://oidc.aks.example/11111111-2222-3333-4444-555555555555/";
const SUBJECT: &str = "system:serviceaccount:graphgate:graphgate";
const MI_CLIENT_ID: &str = "7d5e0a3c-0f1e-4b6a-9c8d-1a2b3c4d5e6f";

/// RSA key generation is slow: each test asset is made once per test binary.
fn cert_a() -> &'static TestCertificate {
    static C: OnceLock<TestCertificate> = OnceLock::new();
    C.get_or_init(|| TestCertificate::generate("graphgate-a").unwrap())
}
fn cert_b() -> &'static TestCertificate {
    static C: OnceLock<TestCertificate> = OnceLock::new();
    C.get_or_init(|| TestCertificate::generate("graphgate-b").unwrap())
}
fn issuer() -> &'static FederatedIssuer {
    static I: OnceLock<FederatedIssuer> = OnceLock::new();
    I.get_or_init(|| FederatedIssuer::generate(ISSUER).unwrap())
}

/// The emulator with every credential kind registered on the demo app (and a managed
/// identity with the same permission).
fn full_config(roles: &[&str]) -> EmulatorConfig {
    let mut config = EmulatorConfig::default();
    config.apps[0].roles = roles.iter().map(|r| (*r).to_owned()).collect();
    let mut mi = config.apps[0].clone();
    mi.client_id = MI_CLIENT_ID.into();
    mi.client_secret = graphgate_emulator::Secret::new(uuid::Uuid::new_v4().to_string());
    config.apps.push(mi);
    config.managed_identities = vec![MI_CLIENT_ID.into()];
    config.additional_secrets = vec![AdditionalSecret {
        client_id: DEMO_CLIENT_ID.into(),
        secret: graphgate_emulator::Secret::new("rotated-secret-2"),
    }];
    config.certificates = [cert_a(), cert_b()]
        .iter()
        .map(|c| RegisteredCertificate {
            client_id: DEMO_CLIENT_ID.into(),
            certificate_der: c.cert_der.clone(),
        })
        .collect();
    config.federated_credentials = vec![FederatedCredential {
        client_id: DEMO_CLIENT_ID.into(),
        issuer: ISSUER.into(),
        subject: SUBJECT.into(),
        audience: TOKEN_EXCHANGE_AUDIENCE.into(),
        jwks: issuer().jwks(),
    }];
    config
}

struct TempDir(PathBuf);
impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!("graphgate-creds-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    /// Writes `name` atomically (write + rename), as a Secret/CSI volume update does.
    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).unwrap();
        let path = self.0.join(name);
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Secret,
    SecretFile,
    Certificate(AssertionAlg),
    WorkloadIdentity,
    ManagedIdentity,
}

fn credential(kind: Kind, dir: &TempDir, imds: SocketAddr) -> Credential {
    let tenant_id = DEMO_TENANT_ID.to_owned();
    let client_id = DEMO_CLIENT_ID.to_owned();
    match kind {
        Kind::Secret => Credential::ClientSecret {
            tenant_id,
            client_id,
            secret: Secret::new(DEMO_CLIENT_SECRET),
        },
        Kind::SecretFile => Credential::ClientSecretFile {
            tenant_id,
            client_id,
            path: dir.write("client-secret", &format!("{DEMO_CLIENT_SECRET}\n")),
        },
        Kind::Certificate(alg) => Credential::Certificate {
            tenant_id,
            client_id,
            path: dir.write("cert.pem", &cert_a().combined_pem()),
            send_chain: false,
            alg,
        },
        Kind::WorkloadIdentity => Credential::WorkloadIdentity {
            tenant_id,
            client_id,
            token_file: dir.write(
                "azure-identity-token",
                &issuer()
                    .token(SUBJECT, TOKEN_EXCHANGE_AUDIENCE, 3600)
                    .unwrap(),
            ),
        },
        Kind::ManagedIdentity => Credential::ManagedIdentity {
            client_id: Some(MI_CLIENT_ID.into()),
            tenant_id: None,
            endpoint: format!("http://{imds}"),
        },
    }
}

/// The emulator (TLS + IMDS) and a gateway using `kind`, on loopback ports.
struct Rig {
    emulator: Arc<Emulator>,
    gw: Arc<Gateway>,
    addr: SocketAddr,
    http: HttpClient,
    client: Client<HttpConnector, Full<Bytes>>,
    dir: TempDir,
    ms: common::Microsoft,
    _running: common::Running,
}

async fn rig(cloud: Cloud, config: EmulatorConfig, kind: Kind) -> Rig {
    rig_with(cloud, config, kind, &policy_text()).await
}

async fn rig_with(cloud: Cloud, config: EmulatorConfig, kind: Kind, policy: &str) -> Rig {
    let ms = common::Microsoft::start(config).await;
    let imds = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let imds_addr = imds.local_addr().unwrap();
    tokio::spawn(Arc::clone(&ms.emulator).serve_imds(imds, ms.until_stopped()));
    let dir = TempDir::new();
    let opts = Options {
        cloud,
        credential: Some(credential(kind, &dir, imds_addr)),
        policy: Some(policy.to_owned()),
        audit: common::AuditMode::Disabled,
        ..Options::default()
    };
    let running = common::Running::start(common::serve_config(&ms, &opts, &dir.0)).await;
    let http = upstream::build_client(&UpstreamConfig {
        connect_to: ms.connect_to(None),
        extra_ca_pem: Some(ms.emulator.ca_pem().to_owned()),
        connect_timeout: Duration::from_secs(5),
        pool_idle_timeout: Duration::from_secs(30),
    })
    .unwrap();
    Rig {
        emulator: Arc::clone(&ms.emulator),
        gw: Arc::clone(&running.gw),
        addr: running.addr,
        http,
        client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        dir,
        ms,
        _running: running,
    }
}

impl Rig {
    async fn call(&self) -> (u16, Bytes) {
        let req = http::Request::post(format!("http://{}{ACTION_PATH}", self.addr))
            .header("authorization", format!("Bearer {ROTATOR_KEY}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body())))
            .unwrap();
        let resp = self.client.request(req).await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.into_body().collect().await.unwrap().to_bytes())
    }

    /// Drops the cached token, as its expiry would.
    async fn expire_token(&self) {
        let t = self.gw.broker().token().await.unwrap();
        self.gw.broker().forget(&t).await;
    }

    fn last_credential(&self) -> String {
        let records = self.emulator.token_requests();
        let last = records.last().expect("a token request");
        assert_eq!(last.status, 200, "{last:?}");
        last.credential.clone().unwrap()
    }
}

#[tokio::test]
async fn every_credential_kind_reaches_graph_in_every_cloud() {
    let kinds = [
        Kind::Secret,
        Kind::SecretFile,
        Kind::Certificate(AssertionAlg::Ps256),
        Kind::Certificate(AssertionAlg::Rs256),
        Kind::WorkloadIdentity,
        Kind::ManagedIdentity,
    ];
    for cloud in Cloud::ALL {
        for kind in kinds {
            let r = rig(cloud, full_config(&[PRIV_OPS]), kind).await;
            let (status, body) = r.call().await;
            assert_eq!(status, 204, "{cloud} {kind:?}: {body:?}");
            let tokens = r.emulator.token_requests();
            assert_eq!(tokens.len(), 1, "{cloud} {kind:?}");
            let t = &tokens[0];
            let e = cloud.endpoints();
            let used = t.credential.clone().unwrap();
            match kind {
                Kind::ManagedIdentity => {
                    assert_eq!(used, "managed_identity");
                    assert_eq!(
                        t.scope.as_deref(),
                        Some(e.resource),
                        "IMDS takes the resource"
                    );
                    assert_eq!(t.client_id.as_deref(), Some(MI_CLIENT_ID));
                }
                _ => {
                    assert_eq!(t.host, e.login_host, "{cloud} {kind:?}");
                    assert_eq!(t.scope.as_deref(), Some(e.scope));
                }
            }
            let expected = match kind {
                Kind::Secret | Kind::SecretFile => "client_secret#0".to_owned(),
                Kind::Certificate(AssertionAlg::Ps256) => {
                    format!("certificate PS256 x5t#S256={}", thumbprint_s256(cert_a()))
                }
                Kind::Certificate(AssertionAlg::Rs256) => {
                    format!("certificate RS256 x5t={}", thumbprint_sha1(cert_a()))
                }
                Kind::WorkloadIdentity => format!("federated {ISSUER} {SUBJECT}"),
                Kind::ManagedIdentity => "managed_identity".into(),
            };
            assert_eq!(used, expected, "{cloud} {kind:?}");
            let graph = r.emulator.graph_requests();
            assert_eq!(graph[0].host, e.graph_host);
            assert_eq!(graph[0].token_claims.as_ref().unwrap()["aud"], e.resource);
        }
    }
}

fn thumbprint_s256(c: &TestCertificate) -> String {
    ClientCertificate::from_pem(c.combined_pem().as_bytes())
        .unwrap()
        .thumbprint_sha256
}
fn thumbprint_sha1(c: &TestCertificate) -> String {
    ClientCertificate::from_pem(c.combined_pem().as_bytes())
        .unwrap()
        .thumbprint_sha1
}

#[tokio::test]
async fn ps256_refused_falls_back_to_rs256_and_stays_there() {
    let r = rig(
        Cloud::UsGov,
        full_config(&[PRIV_OPS]),
        Kind::Certificate(AssertionAlg::Ps256),
    )
    .await;
    // The token fetched at start was a PS256 one; from now on Entra refuses PS256.
    r.emulator.set_faults(Faults::rs256_only());
    r.expire_token().await;
    let before = r.emulator.token_requests().len();
    assert_eq!(r.call().await.0, 204);
    let tokens = r.emulator.token_requests();
    assert_eq!(tokens.len() - before, 2);
    assert_eq!(tokens[before].error_code, Some(700027));
    assert!(r.last_credential().starts_with("certificate RS256 x5t="));
    r.expire_token().await;
    assert_eq!(r.call().await.0, 204);
    assert_eq!(
        r.emulator.token_requests().len() - before,
        3,
        "no second PS256 attempt"
    );
}

#[tokio::test]
async fn the_certificate_chain_is_sent_on_request() {
    let r = rig(
        Cloud::Global,
        full_config(&[PRIV_OPS]),
        Kind::Certificate(AssertionAlg::Ps256),
    )
    .await;
    let path = r.dir.write("cert.pem", &cert_a().combined_pem());
    let cred = Credential::Certificate {
        tenant_id: DEMO_TENANT_ID.into(),
        client_id: DEMO_CLIENT_ID.into(),
        path,
        send_chain: true,
        alg: AssertionAlg::Ps256,
    };
    let source = graphgate::credential::source(
        r.http.clone(),
        cred,
        Cloud::Global,
        "login.microsoftonline.com".into(),
    )
    .unwrap();
    use graphgate::credential::TokenSource;
    source.fetch().await.unwrap();
    assert!(r.last_credential().ends_with(" x5c"));
}

#[tokio::test]
async fn bad_assertions_are_refused_with_entra_codes() {
    let r = rig(Cloud::China, full_config(&[PRIV_OPS]), Kind::Secret).await;
    let host = Cloud::China.endpoints().login_host;
    let url = format!("https://{host}/{DEMO_TENANT_ID}/oauth2/v2.0/token");
    let scope = Cloud::China.endpoints().scope;
    let now = jsonwebtoken::get_current_timestamp();
    let cert = ClientCertificate::from_pem(cert_a().combined_pem().as_bytes()).unwrap();
    let stranger = TestCertificate::generate("not-registered").unwrap();
    let stranger = ClientCertificate::from_pem(stranger.combined_pem().as_bytes()).unwrap();
    let global_url =
        format!("https://login.microsoftonline.com/{DEMO_TENANT_ID}/oauth2/v2.0/token");
    let cases: Vec<(&str, Secret, u32)> = vec![
        (
            "unregistered certificate",
            stranger
                .assertion(AssertionAlg::Ps256, DEMO_CLIENT_ID, &url, false, now)
                .unwrap(),
            700027,
        ),
        (
            "another cloud's audience",
            cert.assertion(AssertionAlg::Ps256, DEMO_CLIENT_ID, &global_url, false, now)
                .unwrap(),
            50012,
        ),
        (
            "expired",
            cert.assertion(AssertionAlg::Rs256, DEMO_CLIENT_ID, &url, false, now - 3600)
                .unwrap(),
            500133,
        ),
        (
            "not yet valid",
            cert.assertion(AssertionAlg::Ps256, DEMO_CLIENT_ID, &url, false, now + 3600)
                .unwrap(),
            500133,
        ),
        (
            "federated: unknown issuer",
            Secret::new(
                FederatedIssuer::generate("https://evil.example/")
                    .unwrap()
                    .token(SUBJECT, TOKEN_EXCHANGE_AUDIENCE, 600)
                    .unwrap(),
            ),
            700211,
        ),
        (
            "federated: other subject",
            Secret::new(
                issuer()
                    .token(
                        "system:serviceaccount:default:default",
                        TOKEN_EXCHANGE_AUDIENCE,
                        600,
                    )
                    .unwrap(),
            ),
            700213,
        ),
        (
            "federated: expired",
            Secret::new(
                issuer()
                    .token(SUBJECT, TOKEN_EXCHANGE_AUDIENCE, -3600)
                    .unwrap(),
            ),
            500133,
        ),
        (
            "federated: wrong audience",
            Secret::new(issuer().token(SUBJECT, "api://other", 600).unwrap()),
            50012,
        ),
    ];
    for (what, assertion, code) in cases {
        let err = request_token(
            &r.http,
            DEMO_CLIENT_ID,
            &url,
            scope,
            ClientAuth::Assertion(assertion),
        )
        .await
        .unwrap_err();
        match err {
            TokenError::Refused { aadsts, .. } => assert_eq!(aadsts, Some(code), "{what}"),
            other => panic!("{what}: {other}"),
        }
    }
    // And the good one, for contrast.
    let ok = cert
        .assertion(AssertionAlg::Ps256, DEMO_CLIENT_ID, &url, false, now)
        .unwrap();
    request_token(
        &r.http,
        DEMO_CLIENT_ID,
        &url,
        scope,
        ClientAuth::Assertion(ok),
    )
    .await
    .unwrap();
}

/// Requests keep flowing while `rotate` swaps the credential file and tokens expire.
async fn no_request_fails_while(r: &Rig, rotate: impl AsyncFnOnce()) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let stop = Arc::clone(&stop);
        let client = r.client.clone();
        let addr = r.addr;
        load.push(tokio::spawn(async move {
            let mut done = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || done == 0 {
                let req = http::Request::post(format!("http://{addr}{ACTION_PATH}"))
                    .header("authorization", format!("Bearer {ROTATOR_KEY}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body())))
                    .unwrap();
                let resp = client.request(req).await.unwrap();
                assert_eq!(resp.status(), 204, "a request failed during rotation");
                done += 1;
            }
            done
        }));
    }
    rotate().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        assert!(l.await.unwrap() > 0);
    }
}

#[tokio::test]
async fn a_rotated_secret_file_is_used_by_the_next_token_without_failures() {
    let r = rig(Cloud::Global, full_config(&[PRIV_OPS]), Kind::SecretFile).await;
    assert_eq!(r.call().await.0, 204);
    assert_eq!(r.last_credential(), "client_secret#0");
    no_request_fails_while(&r, async || {
        r.dir.write("client-secret", "rotated-secret-2\n");
        // The cached token stays in use until it expires: no token request yet.
        let before = r.emulator.token_request_count();
        assert_eq!(r.call().await.0, 204);
        assert_eq!(r.emulator.token_request_count(), before);
        r.expire_token().await;
        assert_eq!(r.call().await.0, 204);
    })
    .await;
    assert_eq!(r.last_credential(), "client_secret#1");
}

#[tokio::test]
async fn a_rotated_certificate_is_used_by_the_next_token_and_a_broken_file_keeps_the_last_good() {
    let r = rig(
        Cloud::UsDod,
        full_config(&[PRIV_OPS]),
        Kind::Certificate(AssertionAlg::Ps256),
    )
    .await;
    assert_eq!(r.call().await.0, 204);
    assert!(r.last_credential().ends_with(&thumbprint_s256(cert_a())));
    no_request_fails_while(&r, async || {
        r.dir.write("cert.pem", &cert_b().combined_pem());
        r.expire_token().await;
        assert_eq!(r.call().await.0, 204);
    })
    .await;
    assert!(r.last_credential().ends_with(&thumbprint_s256(cert_b())));
    // A half-written file: the last good certificate keeps tokens coming.
    r.dir
        .write("cert.pem", "-----BEGIN CERTIFICATE-----\ngarbage");
    r.expire_token().await;
    assert_eq!(r.call().await.0, 204);
    assert!(r.last_credential().ends_with(&thumbprint_s256(cert_b())));
}

#[tokio::test]
async fn the_federated_token_file_is_read_for_every_token_request() {
    let r = rig(
        Cloud::Global,
        full_config(&[PRIV_OPS]),
        Kind::WorkloadIdentity,
    )
    .await;
    assert_eq!(r.call().await.0, 204);
    // The kubelet writes an (here: expired) token; the next token request must use it.
    r.dir.write(
        "azure-identity-token",
        &issuer()
            .token(SUBJECT, TOKEN_EXCHANGE_AUDIENCE, -3600)
            .unwrap(),
    );
    let t = r.gw.broker().token().await.unwrap();
    r.gw.broker().forget(&t).await;
    let err = r.gw.broker().token().await.unwrap_err();
    assert!(err.to_string().contains("AADSTS500133"), "{err}");
    r.dir.write(
        "azure-identity-token",
        &issuer()
            .token(SUBJECT, TOKEN_EXCHANGE_AUDIENCE, 3600)
            .unwrap(),
    );
    assert_eq!(r.call().await.0, 204);
}

#[tokio::test]
async fn a_missing_permission_is_named_and_an_excess_one_reported() {
    // Under-consent: the app holds nothing the policy needs.
    let r = rig(Cloud::Global, full_config(&["User.Read.All"]), Kind::Secret).await;
    // The gateway fetched its first token at start: the report is known before any request.
    let report = r.gw.least_privilege().unwrap();
    assert_eq!(report.missing, vec![PRIV_OPS]);
    assert_eq!(report.excess, vec!["User.Read.All"]);
    assert!(!report.is_sufficient());
    // Readiness fails and names the missing role.
    let (ready, detail) = graphgate::admin::readiness(&r.gw).await;
    assert!(!ready, "{detail}");
    assert_eq!(
        detail["checks"]["permissions"]["missing"],
        serde_json::json!([PRIV_OPS])
    );
    assert_eq!(
        detail["checks"]["permissions"]["excess"],
        serde_json::json!(["User.Read.All"])
    );
    // Graph refuses the action, as Entra-issued tokens without the role would be.
    assert_eq!(r.call().await.0, 403);

    // Over-consent: the needed permission and one more.
    let r = rig(
        Cloud::UsGov,
        full_config(&[PRIV_OPS, "DeviceManagementConfiguration.ReadWrite.All"]),
        Kind::ManagedIdentity,
    )
    .await;
    assert_eq!(r.call().await.0, 204);
    let report = r.gw.least_privilege().unwrap();
    assert!(report.missing.is_empty());
    assert_eq!(
        report.excess,
        vec!["DeviceManagementConfiguration.ReadWrite.All"]
    );
    // Excess privilege is a warning: still ready, and visible in the detail. (And in the
    // graphgate_app_permissions gauge: checked in tests/e2e/metrics.rs, in a process of its
    // own, because here every test's readiness check sets the one process-wide gauge.)
    let (ready, detail) = graphgate::admin::readiness(&r.gw).await;
    assert!(ready, "{detail}");
    assert_eq!(
        detail["checks"]["permissions"]["excess"],
        serde_json::json!(["DeviceManagementConfiguration.ReadWrite.All"])
    );

    // A policy reload that allows nothing makes every granted permission excess.
    r.gw.set_policy(Policy::from_yaml("version: 1\n", "empty").unwrap());
    assert_eq!(r.gw.least_privilege().unwrap().excess.len(), 2);
}

#[tokio::test]
async fn exact_consent_reports_nothing() {
    let r = rig(
        Cloud::China,
        full_config(&[PRIV_OPS]),
        Kind::Certificate(AssertionAlg::Ps256),
    )
    .await;
    r.gw.broker().token().await.ok();
    let report = r.gw.least_privilege().unwrap();
    assert!(
        report.missing.is_empty() && report.excess.is_empty(),
        "{report:?}"
    );
}

#[tokio::test]
async fn imds_insists_on_the_metadata_header_and_a_known_identity() {
    let r = rig(
        Cloud::Global,
        full_config(&[PRIV_OPS]),
        Kind::ManagedIdentity,
    )
    .await;
    // The gateway's own IMDS request passes the checks below (the emulator records it as
    // answered 200, for the user-assigned identity asked for, by resource).
    assert_eq!(r.call().await.0, 204);
    let imds_requests = r.emulator.token_requests();
    let mine = imds_requests.last().unwrap();
    assert_eq!(mine.status, 200, "{mine:?}");
    assert_eq!(mine.credential.as_deref(), Some("managed_identity"));
    assert_eq!(mine.client_id.as_deref(), Some(MI_CLIENT_ID));
    assert_eq!(
        mine.scope.as_deref(),
        Some(Cloud::Global.endpoints().resource)
    );
    // Then the refusals, against the emulator's IMDS directly.
    let imds = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = imds.local_addr().unwrap();
    tokio::spawn(Arc::clone(&r.emulator).serve_imds(imds, std::future::pending()));
    let get = async |query: &str, header: bool| {
        let mut req = http::Request::get(format!(
            "http://{addr}/metadata/identity/oauth2/token?{query}"
        ));
        if header {
            req = req.header("Metadata", "true");
        }
        let resp = r
            .client
            .request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        (status, body)
    };
    let ok = "api-version=2018-02-01&resource=https://graph.microsoft.com/";
    let (status, body) = get(ok, true).await;
    assert_eq!(status, 200);
    assert!(body["expires_in"].is_string(), "{body}");
    assert!(body["expires_on"].is_string() && body["not_before"].is_string());
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(get(ok, false).await.0, 400);
    assert_eq!(
        get(
            "api-version=2018-02-01&scope=https://graph.microsoft.com/.default",
            true
        )
        .await
        .0,
        400
    );
    assert_eq!(
        get(
            &format!("{ok}&client_id=00000000-0000-0000-0000-000000000000"),
            true
        )
        .await
        .0,
        400
    );
}

#[tokio::test]
async fn replicas_each_hold_their_own_token() {
    // Two gateways (replicas) against one Entra: each fetches and caches its own token.
    let a = rig(Cloud::Global, full_config(&[PRIV_OPS]), Kind::Secret).await;
    let opts = Options {
        credential: Some(credential(
            Kind::Secret,
            &a.dir,
            "127.0.0.1:1".parse().unwrap(),
        )),
        audit: common::AuditMode::Disabled,
        ..Options::default()
    };
    let b_dir = common::temp_dir("replica-b");
    let b = common::Running::start(common::serve_config(&a.ms, &opts, &b_dir)).await;
    let b = &b.gw;
    for _ in 0..3 {
        assert_eq!(a.call().await.0, 204);
        b.broker().token().await.unwrap();
    }
    assert_eq!(a.emulator.token_request_count(), 2, "one token per replica");
}
