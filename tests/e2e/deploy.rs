//! Keeps deploy/ honest by running what it ships: every Kubernetes overlay (as `kubectl
//! kustomize` renders it) and every systemd environment file (with the unit's ExecStart)
//! starts the real binary into a ready gateway that answers an allowed request over mTLS;
//! the Dockerfile's COPY lines are enough for cargo; every `serve` flag has an environment
//! variable (the generated command-line reference lists them). Submodules: `launch` (running one shipped
//! configuration), `kube`, `jwt` (callers with tokens, as deployed), `state` (the shared
//! state store), `monitoring` (the Prometheus Operator component), `systemd`, `witness`
//! (the witness's unit and manifest), `docker`,
//! `flags`, `docs`. Here: shared helpers and
//! the checks that need no external tool.

mod docker;
mod docs;
mod flags;
mod jwt;
mod kube;
mod launch;
mod monitoring;
mod state;
mod systemd;
mod witness;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use graphgate::cloud::Cloud;
use serde_json::Value;

/// The repository root.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy() -> PathBuf {
    repo().join("deploy")
}

fn k8s() -> PathBuf {
    deploy().join("kubernetes")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether `tool` runs (`tool <version_args>` succeeds). Without it the calling test is
/// skipped with a visible note, except under `CI=true`, where a missing tool is a failure
/// (`.ci/run` installs or demands every tool these tests use).
fn tool_available(tool: &str, version_args: &[&str]) -> bool {
    let found = Command::new(tool)
        .args(version_args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is required when CI=true (.ci/run checks for it); it was not found"
        );
        // Straight to stderr: the test harness would swallow an eprintln! of a passing test.
        let note = format!("SKIPPED: {tool} not found; install it to run this deploy test\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), note.as_bytes());
    }
    found
}

/// Copies the tree at `from` to `to` (kustomize takes relative paths only, so a test's
/// kustomization lives beside a copy of what it includes).
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

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn every_yaml_file_parses() {
    let mut all = Vec::new();
    files(&deploy(), &mut all);
    all.retain(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"));
    assert!(all.len() >= 20, "{all:?}");
    for f in all {
        assert!(yaml(&f).is_object(), "{}: not a mapping", f.display());
    }
}

/// Objects (kind, name) a kustomization directory produces, following its resources.
fn objects(dir: &Path) -> BTreeSet<(String, String)> {
    let k = yaml(&dir.join("kustomization.yaml"));
    let mut out = BTreeSet::new();
    for r in k["resources"].as_array().unwrap() {
        let path = dir.join(r.as_str().unwrap());
        assert!(path.exists(), "{}: resource {r} is missing", dir.display());
        if path.is_dir() {
            out.extend(objects(&path));
        } else {
            let o = yaml(&path);
            out.insert((
                o["kind"].as_str().unwrap().to_owned(),
                o["metadata"]["name"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

#[test]
fn kustomizations_name_existing_files_and_patch_existing_objects() {
    let mut dirs = vec![k8s().join("base")];
    for entry in std::fs::read_dir(k8s().join("overlays")).unwrap() {
        dirs.push(entry.unwrap().path());
    }
    for dir in dirs {
        let k = yaml(&dir.join("kustomization.yaml"));
        assert_eq!(k["kind"], "Kustomization", "{}", dir.display());
        let produced = objects(&dir);
        for patch in k["patches"].as_array().into_iter().flatten() {
            let target = &patch["target"];
            let key = (
                target["kind"].as_str().unwrap().to_owned(),
                target["name"].as_str().unwrap().to_owned(),
            );
            assert!(
                produced.contains(&key),
                "{}: patch targets missing {key:?}",
                dir.display()
            );
            if let Some(path) = patch["path"].as_str() {
                let p = yaml(&dir.join(path));
                assert_eq!(p["kind"].as_str(), Some(key.0.as_str()), "{path}");
                assert_eq!(p["metadata"]["name"].as_str(), Some(key.1.as_str()));
            }
        }
    }
}

#[test]
fn one_overlay_and_one_env_file_per_cloud_naming_exactly_its_hosts() {
    let mut names: Vec<String> = std::fs::read_dir(k8s().join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with("-cilium"))
        .collect();
    names.sort();
    let mut expected: Vec<String> = Cloud::ALL.iter().map(|c| c.name().to_owned()).collect();
    expected.sort();
    assert_eq!(names, expected);

    for cloud in Cloud::ALL {
        let e = cloud.endpoints();
        let mut hosts: BTreeSet<&str> = e.login_aliases.iter().copied().collect();
        hosts.insert(e.login_host);
        hosts.insert(e.graph_host);
        let overlays = k8s().join("overlays");
        let cnp = yaml(&overlays.join(format!("{cloud}-cilium/egress-fqdn.yaml")));
        assert_eq!(cnp["kind"], "CiliumNetworkPolicy");
        assert_eq!(cnp["metadata"]["namespace"], "graphgate");
        let fqdns: BTreeSet<&str> = cnp["spec"]["egress"][1]["toFQDNs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["matchName"].as_str().unwrap())
            .collect();
        assert_eq!(
            fqdns, hosts,
            "{cloud}: egress names exactly the cloud's hosts"
        );
        let port = &cnp["spec"]["egress"][1]["toPorts"][0]["ports"][0]["port"];
        assert_eq!(port, "443");

        // The overlay's comment lists the same hosts for non-Cilium egress firewalls.
        let text = read(&overlays.join(format!("{cloud}/kustomization.yaml")));
        for h in &hosts {
            assert!(text.contains(&format!("{h}:443")), "{cloud}: {h}");
        }
        for other in Cloud::ALL.iter().filter(|c| **c != cloud) {
            let o = other.endpoints().graph_host;
            assert!(!text.contains(&format!("- {o}:")), "{cloud} names {o}");
        }

        // The systemd environment file for the same cloud.
        let env = systemd::env_file(cloud);
        let get = |k: &str| {
            env.iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{cloud}.env: {k} missing"))
        };
        assert_eq!(get("GRAPHGATE_CLOUD").parse::<Cloud>().unwrap(), cloud);
        graphgate::credential::authority_host(cloud, Some(&get("AZURE_AUTHORITY_HOST")))
            .unwrap_or_else(|e| panic!("{cloud}: {e}"));
        let text = read(&deploy().join(format!("systemd/env/{cloud}.env")));
        assert!(text.contains(e.graph_host), "{cloud}: names its Graph host");
    }
}

#[test]
fn the_collector_receives_otlp_http_on_4318() {
    let otel = yaml(&deploy().join("otel-collector.yaml"));
    let endpoint = otel["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
        .as_str()
        .unwrap();
    assert!(endpoint.ends_with(":4318"));
    let pipelines = &otel["service"]["pipelines"];
    for pipeline in ["traces", "logs"] {
        // Traces, and the audit records shipped as OTLP log records.
        let receivers = pipelines[pipeline]["receivers"].as_array().unwrap();
        assert!(receivers.contains(&Value::from("otlp")), "{pipeline}");
        // Every exporter a pipeline names is defined.
        let exporters = pipelines[pipeline]["exporters"].as_array().unwrap();
        assert!(!exporters.is_empty(), "{pipeline}");
        for exporter in exporters {
            let name = exporter.as_str().unwrap();
            assert!(!otel["exporters"][name].is_null(), "{pipeline}: {name}");
        }
    }
    // The audit records are not scrubbed: a changed attribute or body would break the hash.
    let processors = pipelines["logs"]["processors"].as_array().unwrap();
    assert!(!processors.contains(&Value::from("attributes/scrub")));
}

#[test]
fn the_deployment_chapter_deploys_every_cloud() {
    let readme =
        read(&repo().join("docs/deployment.md")) + &read(&repo().join("docs/configuration.md"));
    for cloud in Cloud::ALL {
        let e = cloud.endpoints();
        let overlay = format!("deploy/kubernetes/overlays/{cloud}");
        assert!(readme.contains(&overlay), "{cloud}");
        assert!(readme.contains(&format!("graphgate@{cloud}")), "{cloud}");
        assert!(
            readme.contains(e.graph_host) && readme.contains(e.login_host),
            "{cloud}"
        );
    }
    for var in [
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_CLIENT_SECRET_FILE",
        "AZURE_FEDERATED_TOKEN_FILE",
        "GRAPHGATE_CREDENTIAL",
        "AZURE_POD_IDENTITY_AUTHORITY_HOST",
        "(scaling.md",
        "(deploy.md)",
        "(operations.md)",
    ] {
        assert!(
            readme.contains(var),
            "docs/deployment.md does not mention {var}"
        );
    }
}
