//! The Kubernetes overlays as a cluster would run them: `kubectl kustomize` renders each, and
//! the Deployment's container (command, args, env, mounted ConfigMaps and Secrets, probes)
//! starts as-is against the emulator (`launch`), the test playing the operator (the Secrets
//! docs/deploy.md says to create, the shared state store among them: a real redis-server
//! over TLS with a password) and the workload-identity webhook (what it injects).
//! Also the rendered objects' shape: probes on the admin port, the pod locked down, the
//! NetworkPolicy never trusting a pod label alone.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use graphgate::cloud::Cloud;
use graphgate_emulator::{FederatedCredential, FederatedIssuer, TOKEN_EXCHANGE_AUDIENCE};
use serde_json::Value;

use super::launch::{self, BIN, Pki, Root, Shipped, Tenant};
use super::{deploy, docker, k8s, read, repo, tool_available, yaml};
use crate::common::redis::RedisServer;
use crate::common::temp_dir;

/// The pod name the test gives the `metadata.name` field reference.
const POD_NAME: &str = "graphgate-5d8f7c9b6-smoke";
/// Where the workload-identity webhook projects the service-account token.
const WI_TOKEN: &str = "/var/run/secrets/azure/tokens/azure-identity-token";

/// One overlay, rendered.
pub struct Rendered {
    pub overlay: String,
    pub docs: Vec<Value>,
}

impl Rendered {
    pub fn object(&self, kind: &str, name: &str) -> &Value {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{}: no {kind}/{name}", self.overlay))
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    /// The pod template of the one Deployment.
    pub fn pod(&self) -> &Value {
        let deployments = self.of_kind("Deployment");
        assert_eq!(deployments.len(), 1, "{}", self.overlay);
        &deployments[0]["spec"]["template"]
    }

    pub fn container(&self) -> &Value {
        let c = &self.pod()["spec"]["containers"][0];
        assert_eq!(c["name"], "graphgate", "{}", self.overlay);
        c
    }

    /// The container's literal env value `name`.
    pub fn env(&self, name: &str) -> Option<&str> {
        let env = self.container()["env"].as_array()?;
        env.iter().find(|e| e["name"] == name)?["value"].as_str()
    }

    pub fn cloud(&self) -> Cloud {
        self.env("GRAPHGATE_CLOUD").unwrap().parse().unwrap()
    }

    /// The pod's volume named `name`.
    pub fn volume(&self, name: &str) -> &Value {
        let volumes = self.pod()["spec"]["volumes"].as_array().unwrap();
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{}: no volume {name}", self.overlay))
    }
}

/// Every overlay, rendered once by `kubectl kustomize`; `None` (skipped) without kubectl.
pub fn rendered() -> Option<&'static [Rendered]> {
    static RENDERED: OnceLock<Option<Vec<Rendered>>> = OnceLock::new();
    RENDERED
        .get_or_init(|| tool_available("kubectl", &["version", "--client"]).then(render_all))
        .as_deref()
}

fn render_all() -> Vec<Rendered> {
    let mut names: Vec<String> = std::fs::read_dir(k8s().join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names.into_iter().map(render).collect()
}

fn render(overlay: String) -> Rendered {
    let dir = k8s().join("overlays").join(&overlay);
    render_dir(overlay, &dir)
}

/// The kustomization in `dir`, rendered by `kubectl kustomize`, named `overlay`.
pub fn render_dir(overlay: String, dir: &std::path::Path) -> Rendered {
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = stdout
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str(d).unwrap_or_else(|e| panic!("{overlay}: {e}\n{d}")))
        .collect();
    Rendered { overlay, docs }
}

/// The cert-manager Certificate the docs tell the operator to apply.
fn certificate() -> Value {
    yaml(&k8s().join("cert-manager/certificate.yaml"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_overlay_starts_a_ready_gateway_that_answers_an_allowed_mtls_request() {
    let Some(rendered) = rendered() else { return };
    // The overlays' replicas share a Redis over TLS (the graphgate-state Secret): one real
    // redis-server stands for it, shared by every overlay like one cache by several clouds.
    let Some(state) = SharedRedis::start().await else {
        return;
    };
    let operator = Operator {
        pki: Pki::new(),
        state_url: state.url(),
    };
    let issuer = FederatedIssuer::generate("https://oidc.smoke.test/cluster").unwrap();
    let runs = rendered
        .iter()
        .map(|r| {
            let root = Root::new(&r.overlay);
            let (mut shipped, config) = pod_as_shipped(r, &root, &operator, &issuer);
            state.trust(&mut shipped);
            (shipped, config, root)
        })
        .collect();
    launch::prove_all(runs, std::sync::Arc::new(operator.pki)).await;
}

/// What the operator provides: the certificate authorities and the state store's URL.
pub(super) struct Operator {
    pub(super) pki: Pki,
    /// The `url` of the graphgate-state Secret.
    pub(super) state_url: String,
}

/// The Redis the overlays' state URL names: a redis-server requiring a password and TLS,
/// with a certificate from a CA of the test's own.
pub(super) struct SharedRedis {
    server: RedisServer,
    password: String,
    ca_file: std::path::PathBuf,
}

impl SharedRedis {
    /// `None` (skipped, failing under `CI=true`) without redis-server.
    pub(super) async fn start() -> Option<SharedRedis> {
        let ca = crate::common::pki::Ca::new("deploy smoke state CA");
        let leaf = ca.server();
        let dir = temp_dir("deploy-state");
        let file = |name: &str, pem: &str| {
            std::fs::write(dir.join(name), pem).unwrap();
            dir.join(name).display().to_string()
        };
        let (cert, key) = (
            file("cert.pem", &leaf.cert_pem),
            file("key.pem", &leaf.key_pem),
        );
        let ca_file = file("ca.pem", &ca.pem).into();
        let password = uuid::Uuid::new_v4().simple().to_string();
        let args = [
            "--tls-port",
            "{port}",
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-auth-clients",
            "no",
            "--requirepass",
            &password,
        ];
        let server = RedisServer::start_with(&args).await?;
        Some(SharedRedis {
            server,
            password,
            ca_file,
        })
    }

    /// What the operator puts in the Secret: TLS, the password in the URL.
    pub(super) fn url(&self) -> String {
        format!("rediss://:{}@localhost:{}", self.password, self.server.port)
    }

    /// A managed cache's certificate chains to the system's roots; this one's to the test's
    /// CA, which the gateway is told of like the emulator's (`launch`'s additions).
    pub(super) fn trust(&self, shipped: &mut Shipped) {
        let ca = self.ca_file.display().to_string();
        shipped.env.push(("GRAPHGATE_STATE_CA_FILE".into(), ca));
    }
}

/// The overlay's pod as the kubelet would start it, with the webhook's injection.
pub fn pod_as_shipped(
    r: &Rendered,
    root: &Root,
    operator: &Operator,
    issuer: &FederatedIssuer,
) -> (Shipped, graphgate_emulator::EmulatorConfig) {
    materialise_volumes(r, root, operator);
    let mut env = container_env(r, root, operator);
    let (tenant, federated) = workload_identity(r, root, issuer, &mut env);
    let mut config = tenant.emulator_config();
    config.federated_credentials.push(federated);
    let var = |name: &str| -> std::path::PathBuf {
        let v = env.iter().find(|(k, _)| k == name);
        v.unwrap_or_else(|| panic!("{}: {name} is not set", r.overlay))
            .1
            .clone()
            .into()
    };
    let shipped = Shipped {
        name: format!("overlay {}", r.overlay),
        argv: argv(r, root),
        policy: var("GRAPHGATE_POLICY"),
        audit_log: var("GRAPHGATE_AUDIT_LOG"),
        env,
        cwd: root.dir.clone(),
        probes: probe_paths(r),
        server_name: certificate()["spec"]["dnsNames"][0]
            .as_str()
            .unwrap()
            .to_owned(),
        token_caller: None,
    };
    (shipped, config)
}

/// The image's ENTRYPOINT and CMD (from the Dockerfile) unless the container overrides them.
fn argv(r: &Rendered, root: &Root) -> Vec<String> {
    let strings = |v: &Value| -> Option<Vec<String>> {
        let items = v.as_array()?;
        Some(
            items
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect(),
        )
    };
    let c = r.container();
    let (command, args) = match strings(&c["command"]) {
        Some(command) => (command, strings(&c["args"]).unwrap_or_default()),
        None => (
            docker::entrypoint(),
            strings(&c["args"]).unwrap_or_else(docker::cmd),
        ),
    };
    assert_eq!(command[0], docker::installed_binary(), "{}", r.overlay);
    let mut argv = vec![BIN.to_owned()];
    argv.extend(command[1..].iter().chain(&args).map(|a| root.map(a)));
    argv
}

/// The container's env in order, `$(VAR)` references expanded as the kubelet does, and
/// `secretKeyRef`s filled from the Secrets the operator created.
fn container_env(r: &Rendered, root: &Root, operator: &Operator) -> Vec<(String, String)> {
    let mut raw: Vec<(String, String)> = Vec::new();
    for e in r.container()["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_owned();
        let from = &e["valueFrom"];
        let value = match (e["value"].as_str(), &from["fieldRef"]["fieldPath"]) {
            (Some(v), _) => expand(v, &raw),
            (None, f) if f == "metadata.name" => POD_NAME.to_owned(),
            _ if from["secretKeyRef"].is_object() => secret_key(r, &from["secretKeyRef"], operator),
            _ => panic!("{}: env {name}: the test cannot provide {e}", r.overlay),
        };
        raw.push((name, value));
    }
    raw.into_iter().map(|(k, v)| (k, root.map(&v))).collect()
}

/// One key of a Secret the operator created, as text; a required one must exist.
fn secret_key(r: &Rendered, reference: &Value, operator: &Operator) -> String {
    let (name, key) = (
        reference["name"].as_str().unwrap(),
        reference["key"].as_str().unwrap(),
    );
    assert!(
        reference["optional"] != true,
        "{}: {name} is optional",
        r.overlay
    );
    let data = secret_data(name, operator).unwrap_or_else(|| {
        panic!(
            "{}: env from Secret {name}, unknown to this test",
            r.overlay
        )
    });
    let bytes = data
        .get(key)
        .unwrap_or_else(|| panic!("{}: {name} has no key {key}", r.overlay));
    String::from_utf8(bytes.clone()).unwrap()
}

/// Kubernetes' `$(VAR)` expansion against the variables defined before.
fn expand(value: &str, defined: &[(String, String)]) -> String {
    let mut out = value.to_owned();
    for (k, v) in defined {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

/// Each mounted volume's files under the root: ConfigMaps from the rendered objects, Secrets
/// as the operator creates them (`secret_data`), claims and emptyDirs empty.
fn materialise_volumes(r: &Rendered, root: &Root, operator: &Operator) {
    for mount in r.container()["volumeMounts"].as_array().unwrap() {
        let dir = mount["mountPath"].as_str().unwrap();
        assert!(mount["subPath"].is_null(), "{}: subPath", r.overlay);
        std::fs::create_dir_all(root.path(dir)).unwrap();
        let volume = r.volume(mount["name"].as_str().unwrap());
        let (source, data) = if let Some(cm) = volume.get("configMap") {
            let object = r.object("ConfigMap", cm["name"].as_str().unwrap());
            let data = object["data"].as_object().unwrap().iter();
            let data = data.map(|(k, v)| (k.clone(), v.as_str().unwrap().as_bytes().to_vec()));
            (cm, data.collect())
        } else if let Some(secret) = volume.get("secret") {
            let name = secret["secretName"].as_str().unwrap();
            match secret_data(name, operator) {
                Some(data) => (secret, data),
                None if secret["optional"] == true => continue,
                None => panic!("{}: mounts Secret {name}, unknown to this test", r.overlay),
            }
        } else if volume.get("persistentVolumeClaim").is_some() || volume.get("emptyDir").is_some()
        {
            continue;
        } else {
            panic!(
                "{}: volume {volume} is of a kind the test cannot provide",
                r.overlay
            );
        };
        let mode = source["defaultMode"].as_u64().unwrap_or(0o644) as u32;
        for (path, bytes) in projected(source, &data, &r.overlay) {
            root.write(&format!("{dir}/{path}"), bytes, mode);
        }
    }
}

/// The files a ConfigMap or Secret volume shows: its `items`, or every key.
fn projected<'a>(
    source: &Value,
    data: &'a BTreeMap<String, Vec<u8>>,
    overlay: &str,
) -> Vec<(String, &'a [u8])> {
    let Some(items) = source["items"].as_array() else {
        return data
            .iter()
            .map(|(k, v)| (k.clone(), v.as_slice()))
            .collect();
    };
    items
        .iter()
        .map(|item| {
            let key = item["key"].as_str().unwrap();
            let bytes = data
                .get(key)
                .unwrap_or_else(|| panic!("{overlay}: {source} has no key {key}"));
            (item["path"].as_str().unwrap().to_owned(), bytes.as_slice())
        })
        .collect()
}

/// The Secrets docs/deploy.md tells the operator to create, as this test creates them.
fn secret_data(name: &str, operator: &Operator) -> Option<BTreeMap<String, Vec<u8>>> {
    let pki = &operator.pki;
    let data: Vec<(&str, Vec<u8>)> = match name {
        "graphgate-tls" => {
            let names = certificate()["spec"]["dnsNames"].clone();
            let names: Vec<&str> = names.as_array()?.iter().filter_map(Value::as_str).collect();
            let leaf = pki.server_ca.server_named(&names);
            vec![
                ("tls.crt", leaf.cert_pem.into_bytes()),
                ("tls.key", leaf.key_pem.into_bytes()),
                ("ca.crt", pki.server_ca.pem.clone().into_bytes()),
            ]
        }
        "graphgate-client-ca" => vec![("ca.crt", pki.client_ca.pem.clone().into_bytes())],
        "graphgate-audit-hmac" => {
            let key = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            vec![("hmac.key", key.into_bytes())]
        }
        "graphgate-state" => vec![("url", operator.state_url.clone().into_bytes())],
        "graphgate-audit-signing" => {
            vec![("signing.key", launch::audit_signing_key().private.clone())]
        }
        "graphgate-otlp-ca" => vec![("ca.crt", pki.server_ca.pem.clone().into_bytes())],
        "graphgate-admin-token" => {
            let token = uuid::Uuid::new_v4().simple().to_string();
            vec![("token", token.into_bytes())]
        }
        _ => return None,
    };
    Some(data.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// What the AKS workload-identity webhook injects into a pod labelled for it: the service
/// account's client and tenant ids, the projected token, and the cluster cloud's authority.
fn workload_identity(
    r: &Rendered,
    root: &Root,
    issuer: &FederatedIssuer,
    env: &mut Vec<(String, String)>,
) -> (Tenant, FederatedCredential) {
    let pod = r.pod();
    let label = &pod["metadata"]["labels"]["azure.workload.identity/use"];
    assert_eq!(
        label, "true",
        "{}: the webhook would skip the pod",
        r.overlay
    );
    let sa_name = pod["spec"]["serviceAccountName"].as_str().unwrap();
    let sa = r.object("ServiceAccount", sa_name);
    let annotation = |a: &str| {
        let v = &sa["metadata"]["annotations"][format!("azure.workload.identity/{a}")];
        v.as_str().unwrap().to_owned()
    };
    let tenant = Tenant {
        tenant_id: annotation("tenant-id"),
        client_id: annotation("client-id"),
    };
    let namespace = sa["metadata"]["namespace"].as_str().unwrap();
    let subject = format!("system:serviceaccount:{namespace}:{sa_name}");
    let token = issuer
        .token(&subject, TOKEN_EXCHANGE_AUDIENCE, 3600)
        .unwrap();
    root.write(WI_TOKEN, token.as_bytes(), 0o644);
    // The webhook's authority for the cluster's cloud (its AZURE_ENVIRONMENT).
    let authority = match r.cloud() {
        Cloud::Global => "https://login.microsoftonline.com/",
        Cloud::UsGov | Cloud::UsDod => "https://login.microsoftonline.us/",
        Cloud::China => "https://login.chinacloudapi.cn/",
    };
    let injected = [
        ("AZURE_CLIENT_ID", tenant.client_id.clone()),
        ("AZURE_TENANT_ID", tenant.tenant_id.clone()),
        ("AZURE_FEDERATED_TOKEN_FILE", root.map(WI_TOKEN)),
        ("AZURE_AUTHORITY_HOST", authority.to_owned()),
    ];
    for (name, value) in injected {
        if !env.iter().any(|(k, _)| k == name) {
            env.push((name.to_owned(), value));
        }
    }
    let federated = FederatedCredential {
        client_id: tenant.client_id.clone(),
        issuer: issuer.issuer.clone(),
        subject,
        audience: TOKEN_EXCHANGE_AUDIENCE.to_owned(),
        jwks: issuer.jwks(),
    };
    (tenant, federated)
}

/// The probes' paths, readiness first; each on the admin port.
fn probe_paths(r: &Rendered) -> Vec<String> {
    let c = r.container();
    let mut paths = Vec::new();
    for probe in ["readinessProbe", "startupProbe", "livenessProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["port"], "admin", "{}: {probe}", r.overlay);
        // The admin port serves TLS (the token never in clear): the kubelet probes it so.
        if r.env("GRAPHGATE_ADMIN_TLS_CERT").is_some() {
            assert_eq!(get["scheme"], "HTTPS", "{}: {probe}", r.overlay);
        }
        paths.push(get["path"].as_str().unwrap().to_owned());
    }
    paths
}

#[test]
fn every_overlay_pins_its_cloud_and_only_cilium_drops_broad_https() {
    let Some(rendered) = rendered() else { return };
    assert_eq!(rendered.len(), 2 * Cloud::ALL.len());
    for r in rendered {
        let cloud = r.overlay.trim_end_matches("-cilium");
        assert_eq!(r.cloud().name(), cloud, "{}", r.overlay);
        let c = r.container();
        let env = c["env"].as_array().unwrap();
        let clouds = env
            .iter()
            .filter(|e| e["name"] == "GRAPHGATE_CLOUD")
            .count();
        assert_eq!(clouds, 1, "{}", r.overlay);
        let np = r.object("NetworkPolicy", "graphgate");
        let broad_https = np["spec"]["egress"]
            .as_array()
            .unwrap()
            .iter()
            .any(|rule| rule["to"].is_null() && rule["ports"][0]["port"] == 443);
        assert_eq!(
            broad_https,
            !r.overlay.ends_with("-cilium"),
            "{}",
            r.overlay
        );
    }
}

#[test]
fn probes_and_ports_match_the_listeners_and_the_callers_port_is_tls() {
    let Some(rendered) = rendered() else { return };
    for r in rendered {
        let c = r.container();
        let port = |name: &str| {
            let ports = c["ports"].as_array().unwrap();
            let p = ports.iter().find(|p| p["name"] == name);
            p.unwrap_or_else(|| panic!("{}: no port {name}", r.overlay))["containerPort"]
                .as_u64()
                .unwrap()
        };
        let port_of = |var: &str| -> u64 {
            let addr: std::net::SocketAddr = r.env(var).unwrap().parse().unwrap();
            assert!(
                !addr.ip().is_loopback(),
                "{}: {var} unreachable in a pod",
                r.overlay
            );
            u64::from(addr.port())
        };
        assert_eq!(port("admin"), port_of("GRAPHGATE_ADMIN_LISTEN"));
        assert_eq!(port("https"), port_of("GRAPHGATE_LISTEN"));
        for var in ["GRAPHGATE_TLS_CERT", "GRAPHGATE_TLS_KEY"] {
            assert!(r.env(var).is_some(), "{}: {var}", r.overlay);
        }
        assert_eq!(probe_paths(r), ["/readyz", "/healthz", "/healthz"]);
        let service = r.object("Service", "graphgate");
        let service_port = &service["spec"]["ports"][0];
        assert_eq!(service_port["targetPort"], "https", "{}", r.overlay);
    }
}

#[test]
fn the_pod_is_non_root_read_only_and_without_capabilities() {
    let Some(rendered) = rendered() else { return };
    for r in rendered {
        let pod = r.pod();
        let security = &pod["spec"]["securityContext"];
        assert_eq!(security["runAsNonRoot"], true);
        assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
        let c = r.container();
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"][0], "ALL");
        assert!(c["resources"]["limits"]["memory"].is_string());
        // The kubelet's SIGKILL comes after the gateway's own shutdown grace and flush.
        let grace = super::flags::serve_default("--shutdown-grace-secs").unwrap();
        let pod_grace = pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap();
        assert!(
            pod_grace >= grace.parse::<u64>().unwrap() + 5,
            "{}: {pod_grace}",
            r.overlay
        );
        let hpa = r.object("HorizontalPodAutoscaler", "graphgate");
        assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
        r.object("PodDisruptionBudget", "graphgate");
    }
}

#[test]
fn policy_audit_and_key_come_from_volumes_shared_as_designed() {
    let Some(rendered) = rendered() else { return };
    for r in rendered {
        let c = r.container();
        let mount_of = |var: &str| {
            let path = r.env(var).unwrap_or_else(|| panic!("{}: {var}", r.overlay));
            let mounts = c["volumeMounts"].as_array().unwrap();
            let m = mounts
                .iter()
                .find(|m| path.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap())));
            r.volume(
                m.unwrap_or_else(|| panic!("{var} on no volume"))["name"]
                    .as_str()
                    .unwrap(),
            )
        };
        // The policy from the ConfigMap, valid (no subPath: edits reach the pod).
        let cm_name = mount_of("GRAPHGATE_POLICY")["configMap"]["name"]
            .as_str()
            .unwrap();
        let cm = r.object("ConfigMap", cm_name);
        let text = cm["data"]["policy.yaml"].as_str().unwrap();
        graphgate::policy::Policy::from_yaml(text, "configmap").unwrap();
        // One audit file per replica, on the shared claim.
        assert!(
            r.env("GRAPHGATE_AUDIT_LOG")
                .unwrap()
                .contains("$(POD_NAME)")
        );
        assert!(mount_of("GRAPHGATE_AUDIT_LOG")["persistentVolumeClaim"].is_object());
        // One HMAC key Secret for every replica, required (no start without it).
        let key = &mount_of("GRAPHGATE_AUDIT_HMAC_KEY_FILE")["secret"];
        assert!(key.is_object() && key["optional"] != true, "{}", r.overlay);
        for var in ["GRAPHGATE_TLS_CERT", "GRAPHGATE_CLIENT_CA"] {
            assert!(mount_of(var)["secret"]["optional"] != true, "{var}");
        }
    }
}

#[test]
fn the_network_policy_admits_callers_by_namespace_and_label_never_by_label_alone() {
    let Some(rendered) = rendered() else { return };
    for r in rendered {
        let np = r.object("NetworkPolicy", "graphgate");
        for rule in np["spec"]["ingress"].as_array().unwrap() {
            let peers = rule["from"].as_array();
            let peers = peers.unwrap_or_else(|| panic!("{}: open ingress {rule}", r.overlay));
            for peer in peers {
                let ns = &peer["namespaceSelector"];
                let narrowed = ns["matchLabels"].as_object().is_some_and(|m| !m.is_empty())
                    || ns["matchExpressions"]
                        .as_array()
                        .is_some_and(|m| !m.is_empty());
                assert!(narrowed, "{}: {peer} admits every namespace", r.overlay);
            }
        }
    }
}

#[test]
fn traces_and_audit_records_go_to_the_collector_over_tls_checked_against_its_ca() {
    let Some(rendered) = rendered() else { return };
    for r in rendered {
        let endpoint = r.env("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap();
        assert!(
            endpoint.starts_with("https://"),
            "{}: {endpoint}",
            r.overlay
        );
        let ca = r.env("OTEL_EXPORTER_OTLP_CERTIFICATE").unwrap();
        let mounts = r.container()["volumeMounts"].as_array().unwrap();
        let mount = mounts
            .iter()
            .find(|m| ca.starts_with(m["mountPath"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("{}: {ca} is not mounted", r.overlay));
        let volume = r.volume(mount["name"].as_str().unwrap());
        assert_eq!(volume["secret"]["secretName"], "graphgate-otlp-ca");
        assert!(
            volume["secret"]["optional"] != true,
            "required: never in clear"
        );
    }
    // The collector's example configuration accepts TLS on the port graphgate sends to.
    let collector = yaml(&deploy().join("otel-collector.yaml"));
    let http = &collector["receivers"]["otlp"]["protocols"]["http"];
    assert_eq!(http["endpoint"], "0.0.0.0:4318");
    assert!(http["tls"]["cert_file"].is_string(), "{http}");
    assert!(http["tls"]["key_file"].is_string(), "{http}");
}

#[test]
fn the_certificate_names_the_service_and_fills_the_mounted_tls_secret() {
    let Some(rendered) = rendered() else { return };
    let cert = certificate();
    assert_eq!(cert["kind"], "Certificate");
    let names = cert["spec"]["dnsNames"].as_array().unwrap();
    for r in rendered {
        let service = r.object("Service", "graphgate");
        let ns = service["metadata"]["namespace"].as_str().unwrap();
        assert_eq!(cert["metadata"]["namespace"], ns);
        let svc = Value::from(format!("graphgate.{ns}.svc"));
        assert!(names.contains(&svc), "{svc} not in {names:?}");
        let tls = r.volume("tls");
        assert_eq!(tls["secret"]["secretName"], cert["spec"]["secretName"]);
    }
}

#[test]
fn the_deploy_readme_creates_every_secret_the_deployment_needs() {
    let Some(rendered) = rendered() else { return };
    let created = readme_secrets();
    for r in rendered {
        // Variables from a Secret's key (the state store's URL).
        for e in r.container()["env"].as_array().unwrap() {
            let from = &e["valueFrom"]["secretKeyRef"];
            let Some(name) = from["name"].as_str() else {
                continue;
            };
            let keys = created.get(name);
            let keys = keys.unwrap_or_else(|| panic!("docs/deploy.md never creates {name}"));
            let key = from["key"].as_str().unwrap().to_owned();
            assert!(keys.contains(&key), "{name}: no key {key}");
        }
        for volume in r.pod()["spec"]["volumes"].as_array().unwrap() {
            let Some(secret) = volume.get("secret") else {
                continue;
            };
            let name = secret["secretName"].as_str().unwrap();
            if secret["optional"] == true {
                continue;
            }
            let keys = created.get(name);
            let keys = keys.unwrap_or_else(|| panic!("docs/deploy.md never creates {name}"));
            for item in secret["items"].as_array().into_iter().flatten() {
                let key = item["key"].as_str().unwrap();
                assert!(keys.contains(&key.to_owned()), "{name}: no key {key}");
            }
        }
    }
}

/// `kubectl ... create secret <type> <name> ...` commands in docs/deploy.md: the keys each
/// one creates (`tls`: tls.crt and tls.key; `--from-file=[key=]path`, `--from-literal=key=`).
fn readme_secrets() -> BTreeMap<String, Vec<String>> {
    let readme = read(&repo().join("docs/deploy.md"));
    let mut out = BTreeMap::new();
    for line in readme.lines() {
        let Some(rest) = line.split("create secret ").nth(1) else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let mut keys: Vec<String> = Vec::new();
        if words[0] == "tls" {
            keys.extend(["tls.crt".into(), "tls.key".into()]);
        }
        for w in &words[2..] {
            if let Some(spec) = w.strip_prefix("--from-file=") {
                let key = spec
                    .split_once('=')
                    .map_or(spec.rsplit('/').next().unwrap(), |s| s.0);
                keys.push(key.to_owned());
            } else if let Some(spec) = w.strip_prefix("--from-literal=") {
                keys.push(spec.split('=').next().unwrap().to_owned());
            }
        }
        out.insert(words[1].to_owned(), keys);
    }
    out
}
