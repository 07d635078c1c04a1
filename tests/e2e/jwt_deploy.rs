//! The documentation of callers with tokens, checked: the README's policy examples for
//! each kind and for the person and the reason compile; the caller example's projected
//! token is for graphgate's audience; the jwt-issuer-keys component builds on every
//! overlay (with kubectl, where it is installed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use graphgate::cloud::Cloud;
use graphgate::policy::Policy;
use serde_json::Value;

use crate::common;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The ```yaml blocks of the README section headed `heading`, up to the next heading.
fn yaml_blocks(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    let rest = &readme[start + heading.len()..];
    let section = &rest[..rest.find("\n### ").unwrap_or(rest.len())];
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
        (
            "<the cluster's service-account issuer>",
            "https://kubernetes.default.svc.cluster.local",
        ),
        ("<issuer>", "https://kubernetes.default.svc.cluster.local"),
        ("<sub>", "x"),
    ]
    .into_iter()
    .fold(block.to_owned(), |text, (from, to)| text.replace(from, to))
}

#[test]
fn the_readme_policies_for_callers_with_tokens_compile() {
    let blocks = yaml_blocks("### Callers with tokens: Entra, Kubernetes, SPIFFE");
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
    }
    let projection = blocks
        .iter()
        .find(|b| b.contains("serviceAccountToken"))
        .unwrap();
    assert!(projection.contains("audience: graphgate"), "{projection}");

    let rules = yaml_blocks("### The person and the reason");
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

#[test]
fn the_caller_example_projects_a_token_for_graphgate() {
    let dir = repo().join("deploy/kubernetes/examples/caller");
    let k = yaml(&dir.join("kustomization.yaml"));
    assert_eq!(k["namespace"], "rooms");
    let deployment = yaml(&dir.join("deployment.yaml"));
    let spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(spec["serviceAccountName"], "room-rotator");
    let source = &spec["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(source["audience"], "graphgate");
    assert_eq!(
        spec["containers"][0]["volumeMounts"][0]["name"],
        spec["volumes"][0]["name"]
    );
    // The subject graphgate sees is the one the example's comment puts in the policy.
    assert!(
        std::fs::read_to_string(dir.join("kustomization.yaml"))
            .unwrap()
            .contains("system:serviceaccount:rooms:room-rotator")
    );
    if !common::require_tool(
        "kubectl",
        &["kubectl", "version", "--client"],
        "kubectl with kustomize v5 (https://kubernetes.io/docs/tasks/tools/)",
    ) {
        return;
    }
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("audience: graphgate") && text.contains("namespace: rooms"),
        "{text}"
    );
}

#[test]
fn the_jwt_issuer_keys_component_mounts_the_key_file_on_every_overlay() {
    let component = repo().join("deploy/kubernetes/components/jwt-issuer-keys");
    let patch = yaml(&component.join("jwks-volume.yaml"));
    let base = yaml(&repo().join("deploy/kubernetes/base/deployment.yaml"));
    assert_eq!(patch["metadata"]["name"], base["metadata"]["name"]);
    assert_eq!(
        patch["spec"]["template"]["spec"]["containers"][0]["name"],
        base["spec"]["template"]["spec"]["containers"][0]["name"],
        "the patch names the gateway's container"
    );
    if !common::require_tool(
        "kubectl",
        &["kubectl", "version", "--client"],
        "kubectl with kustomize v5 (https://kubernetes.io/docs/tasks/tools/)",
    ) {
        return;
    }
    // kustomize takes relative paths only: a copy of deploy/kubernetes beside a check.
    let dir = common::temp_dir("kustomize-jwks");
    copy_dir(&repo().join("deploy/kubernetes"), &dir.join("kubernetes"));
    for cloud in Cloud::ALL {
        let check = dir.join(format!("check-{}", cloud.name()));
        std::fs::create_dir_all(&check).unwrap();
        std::fs::write(
            check.join("kustomization.yaml"),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../kubernetes/overlays/{}\ncomponents:\n  - ../kubernetes/components/jwt-issuer-keys\n",
                cloud.name()
            ),
        )
        .unwrap();
        let out = std::process::Command::new("kubectl")
            .arg("kustomize")
            .arg(&check)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("mountPath: /etc/graphgate/jwks")
                && text.contains("name: graphgate-jwks"),
            "{text}"
        );
        assert!(
            text.contains("mountPath: /etc/graphgate/policy"),
            "the base's mounts stay"
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
