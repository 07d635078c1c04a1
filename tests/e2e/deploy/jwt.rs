//! Callers with tokens, as deployed: the caller example (`deploy/kubernetes/examples/caller`)
//! and the `jwt-issuer-keys` component, rendered by `kubectl kustomize` and run. The global
//! overlay with the component starts as-is against the emulator (`launch`), its policy
//! trusting the emulated cluster's service-account issuer through the mounted key file (the
//! ConfigMap the component's comment says to make), and the example's projected token
//! (its namespace, service account and audience) must be allowed. Also: the book's policy (docs/callers.md)
//! examples for each kind, and for the person and the reason, load.

use std::path::Path;

use graphgate::policy::Policy;
use graphgate_emulator::{FederatedIssuer, KUBERNETES_ISSUER};
use serde_json::{Value, json};

use super::kube::{self, Rendered};
use super::launch::{self, Pki, Root, TokenCaller};
use super::{copy_dir, k8s, read, repo, tool_available, yaml};

/// Where the component mounts the issuer's keys, and the file the ConfigMap holds.
const JWKS_DIR: &str = "/etc/graphgate/jwks";
const JWKS_FILE: &str = "jwks.json";

/// The ```yaml blocks of the book's callers page, section `heading`, up to the next section.
fn yaml_blocks(heading: &str) -> Vec<String> {
    let readme = read(&repo().join("docs/callers.md"));
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    let rest = &readme[start + heading.len()..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    section
        .split("```yaml\n")
        .skip(1)
        .map(|b| b[..b.find("```").unwrap()].to_owned())
        .collect()
}

/// The README's placeholders, made concrete.
fn concrete(block: &str) -> String {
    [
        ("<tenant id>", "6babcaad-604b-40ac-a9d7-9fd97c0b779f"),
        (
            "<the caller app's client id>",
            "5b3f8a2c-9d1e-4f60-8a7b-c2d3e4f5a6b7",
        ),
        (
            "<its service principal's object id>",
            "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb",
        ),
        ("<the cluster's service-account issuer>", KUBERNETES_ISSUER),
        ("<issuer>", KUBERNETES_ISSUER),
        ("<sub>", "x"),
    ]
    .into_iter()
    .fold(block.to_owned(), |text, (from, to)| text.replace(from, to))
}

#[test]
fn the_documented_policies_for_callers_with_tokens_load() {
    let blocks = yaml_blocks("## Callers with tokens: Entra, Kubernetes, SPIFFE");
    let policies: Vec<&String> = blocks
        .iter()
        .filter(|b| b.contains("jwt_issuers:"))
        .collect();
    assert_eq!(
        policies.len(),
        3,
        "Entra, Kubernetes and SPIFFE: {blocks:#?}"
    );
    for block in policies {
        let text = format!("version: 1\n{}rules: []\n", concrete(block));
        let policy = Policy::from_yaml(&text, "README").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(policy.callers.len(), 1);
        assert!(policy.callers[0].jwt.is_some());
        assert_eq!(policy.jwt_issuers.len(), 1);
    }
    let projection = blocks
        .iter()
        .find(|b| b.contains("serviceAccountToken"))
        .unwrap();
    assert!(projection.contains("audience: graphgate"), "{projection}");

    let rules = yaml_blocks("## The person and the reason");
    assert_eq!(rules.len(), 1);
    let text = format!(
        "version: 1\ncallers:\n  - name: helpdesk-portal\n    api_key_sha256: \"{}\"\n{}",
        "1".repeat(64),
        rules[0]
    );
    let policy = Policy::from_yaml(&text, "README").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(policy.rules[0].require.initiator && policy.rules[0].require.reason);
    assert_eq!(policy.rules[0].initiators.as_ref().unwrap().len(), 2);
}

/// The caller example's identity, as its rendered manifests give it.
struct CallerExample {
    namespace: String,
    service_account: String,
    audience: String,
    lifetime_secs: i64,
}

impl CallerExample {
    fn subject(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }
}

/// `deploy/kubernetes/examples/caller`, rendered: a ServiceAccount and a Deployment whose
/// pod runs as it and mounts a projected token for graphgate alone.
fn caller_example() -> CallerExample {
    let dir = k8s().join("examples/caller");
    let r = kube::render_dir("examples/caller".into(), &dir);
    let deployment = r.of_kind("Deployment");
    assert_eq!(deployment.len(), 1);
    let spec = &deployment[0]["spec"]["template"]["spec"];
    let sa_name = spec["serviceAccountName"].as_str().unwrap();
    let sa = r.object("ServiceAccount", sa_name);
    let namespace = sa["metadata"]["namespace"].as_str().unwrap();
    assert_eq!(deployment[0]["metadata"]["namespace"], namespace);
    // The token the caller sends: a projected volume, mounted into its container.
    let volumes = spec["volumes"].as_array().unwrap();
    let projected = volumes
        .iter()
        .find(|v| v["projected"].is_object())
        .expect("a projected token volume");
    let source = &projected["projected"]["sources"][0]["serviceAccountToken"];
    let mounts = spec["containers"][0]["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().any(|m| m["name"] == projected["name"]));
    // The subject the kustomization's comment tells the operator to put in the policy.
    let comment = read(&dir.join("kustomization.yaml"));
    let example = CallerExample {
        namespace: namespace.to_owned(),
        service_account: sa_name.to_owned(),
        audience: source["audience"].as_str().unwrap().to_owned(),
        lifetime_secs: source["expirationSeconds"].as_i64().unwrap(),
    };
    assert!(comment.contains(&example.subject()), "{comment}");
    example
}

/// The global overlay with the `jwt-issuer-keys` component, rendered from a copy of
/// `deploy/kubernetes` (kustomize takes relative paths only).
fn overlay_with_component(scratch: &Path) -> Rendered {
    copy_dir(&k8s(), &scratch.join("kubernetes"));
    let check = scratch.join("global-jwt");
    std::fs::create_dir_all(&check).unwrap();
    std::fs::write(
        check.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../kubernetes/overlays/global\ncomponents:\n  - ../kubernetes/components/jwt-issuer-keys\n",
    )
    .unwrap();
    kube::render_dir("global + components/jwt-issuer-keys".into(), &check)
}

/// What the operator adds: the `graphgate-jwks` ConfigMap (`kubectl create configmap
/// graphgate-jwks --from-file=jwks.json`; its content is the emulated cluster's keys, written
/// once the emulator exists), and the issuer, the caller and a rule for it in the policy.
/// The policy's key file path lives under the test's root, like every absolute path.
fn operator_edits(r: &mut Rendered, root: &Root, caller: &CallerExample) {
    let mount = r.container()["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == JWKS_DIR)
        .cloned()
        .expect("the component mounts the key directory");
    let cm_name = r.volume(mount["name"].as_str().unwrap())["configMap"]["name"].clone();
    r.docs.push(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": cm_name},
        "data": {JWKS_FILE: "{\"keys\": []}"},
    }));
    let policy_cm = r
        .docs
        .iter_mut()
        .find(|d| d["kind"] == "ConfigMap" && d["data"]["policy.yaml"].is_string())
        .unwrap();
    let text = policy_cm["data"]["policy.yaml"].as_str().unwrap();
    let mut policy: Value = serde_saphyr::from_str(text).unwrap();
    let key_file = root.map(&format!("{JWKS_DIR}/{JWKS_FILE}"));
    policy["jwt_issuers"] = json!([{
        "issuer": KUBERNETES_ISSUER,
        "audiences": [caller.audience],
        "keys": {"file": key_file},
    }]);
    let name = caller.service_account.clone();
    let callers = policy["callers"].as_array_mut().unwrap();
    callers.push(
        json!({"name": name, "jwt": {"issuer": KUBERNETES_ISSUER, "subject": caller.subject()}}),
    );
    let rules = policy["rules"].as_array_mut().unwrap();
    rules.push(json!({
        "name": "token-caller-updates-room-accounts",
        "callers": [name],
        "operations": ["managedDevices.updateWindowsDeviceAccount"],
    }));
    // JSON is YAML: the edited policy, as the ConfigMap's file.
    policy_cm["data"]["policy.yaml"] = Value::String(policy.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overlay_with_the_issuer_keys_component_allows_the_caller_examples_token() {
    if !tool_available("kubectl", &["version", "--client"]) {
        return;
    }
    // The overlays' replicas share their state in a Redis over TLS: one stands for it.
    let Some(state) = kube::SharedRedis::start().await else {
        return;
    };
    let caller = caller_example();
    let root = Root::new("jwt-issuer-keys");
    let mut rendered = overlay_with_component(&root.dir.join("scratch"));
    operator_edits(&mut rendered, &root, &caller);
    let operator = kube::Operator {
        pki: Pki::new(),
        state_url: state.url(),
    };
    let issuer = FederatedIssuer::generate("https://oidc.smoke.test/cluster").unwrap();
    let (mut shipped, config) = kube::pod_as_shipped(&rendered, &root, &operator, &issuer);
    state.trust(&mut shipped);
    let key_file = root.path(&format!("{JWKS_DIR}/{JWKS_FILE}"));
    let policy = Policy::load(&shipped.policy).unwrap();
    assert_eq!(
        policy.jwt_issuers.len(),
        1,
        "the edited policy is the one mounted"
    );
    shipped.token_caller = Some(TokenCaller {
        name: caller.service_account.clone(),
        prepare: Box::new(move |emulator| {
            // kubectl get --raw /openid/v1/jwks > jwks.json, into the ConfigMap's file.
            let jwks = emulator.kubernetes().jwks().unwrap();
            std::fs::write(&key_file, jwks.to_string()).unwrap();
            // What the kubelet projects into the caller's pod.
            emulator
                .service_account_token(
                    &caller.namespace,
                    &caller.service_account,
                    &[&caller.audience],
                    caller.lifetime_secs,
                )
                .unwrap()
        }),
    });
    launch::prove_all(
        vec![(shipped, config, root)],
        std::sync::Arc::new(operator.pki),
    )
    .await;
}

#[test]
fn the_jwt_issuer_keys_component_mounts_the_key_file_on_every_overlay() {
    let component = k8s().join("components/jwt-issuer-keys");
    let patch = yaml(&component.join("jwks-volume.yaml"));
    let base = yaml(&k8s().join("base/deployment.yaml"));
    assert_eq!(patch["metadata"]["name"], base["metadata"]["name"]);
    assert_eq!(
        patch["spec"]["template"]["spec"]["containers"][0]["name"],
        base["spec"]["template"]["spec"]["containers"][0]["name"],
        "the patch names the gateway's container"
    );
    let Some(overlays) = kube::rendered() else {
        return;
    };
    let scratch = crate::common::temp_dir("kustomize-jwks");
    copy_dir(&k8s(), &scratch.join("kubernetes"));
    for plain in overlays {
        let check = scratch.join(format!("check-{}", plain.overlay));
        std::fs::create_dir_all(&check).unwrap();
        std::fs::write(
            check.join("kustomization.yaml"),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../kubernetes/overlays/{}\ncomponents:\n  - ../kubernetes/components/jwt-issuer-keys\n",
                plain.overlay
            ),
        )
        .unwrap();
        let with = kube::render_dir(plain.overlay.clone(), &check);
        let mounts = |r: &Rendered| -> Vec<Value> {
            r.container()["volumeMounts"].as_array().unwrap().clone()
        };
        let (before, after) = (mounts(plain), mounts(&with));
        assert_eq!(after.len(), before.len() + 1, "{}", plain.overlay);
        assert!(
            before.iter().all(|m| after.contains(m)),
            "{}: the overlay's mounts stay",
            plain.overlay
        );
        let jwks = after.iter().find(|m| m["mountPath"] == JWKS_DIR).unwrap();
        assert_eq!(jwks["readOnly"], true);
        assert!(jwks["subPath"].is_null(), "ConfigMap updates reach the pod");
        let volume = with.volume(jwks["name"].as_str().unwrap());
        assert_eq!(volume["configMap"]["name"], "graphgate-jwks");
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
