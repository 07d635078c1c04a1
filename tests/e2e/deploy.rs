//! Keeps deploy/ honest: every YAML file parses; kustomizations name files that exist and
//! patch objects that exist; one overlay per cloud of `Cloud::ALL`, naming exactly that
//! cloud's hosts; probes hit the admin endpoints; the pod is locked down; the policy in
//! the ConfigMap is valid; the systemd unit verifies; the README covers every cloud.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use graphgate::cloud::Cloud;
use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
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

fn yaml_files() -> Vec<PathBuf> {
    let mut all = Vec::new();
    files(&deploy(), &mut all);
    all.retain(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"));
    all.sort();
    all
}

fn k8s() -> PathBuf {
    deploy().join("kubernetes")
}

fn overlay(cloud: Cloud) -> PathBuf {
    k8s().join("overlays").join(cloud.name())
}

fn base_object(kind: &str, name: &str) -> Value {
    let base = k8s().join("base");
    let k = yaml(&base.join("kustomization.yaml"));
    k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| yaml(&base.join(r.as_str().unwrap())))
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in the base"))
}

fn deployment_container() -> Value {
    base_object("Deployment", "graphgate")["spec"]["template"]["spec"]["containers"][0].clone()
}

fn env(container: &Value, name: &str) -> Option<String> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(str::to_owned))
}

#[test]
fn every_yaml_file_parses() {
    let files = yaml_files();
    assert!(files.len() >= 20, "{files:?}");
    for f in files {
        let v = yaml(&f);
        assert!(v.is_object(), "{}: not a mapping", f.display());
    }
}

/// Objects (kind, name) a kustomization directory produces, following its resources.
fn objects(dir: &Path) -> BTreeSet<(String, String)> {
    let k = yaml(&dir.join("kustomization.yaml"));
    let mut out = BTreeSet::new();
    for r in k["resources"].as_array().unwrap() {
        let path = dir.join(r.as_str().unwrap());
        assert!(
            path.exists(),
            "{}: resource {} is missing",
            dir.display(),
            path.display()
        );
        if path.is_dir() {
            assert!(
                path.join("kustomization.yaml").exists(),
                "{}",
                path.display()
            );
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
                assert_eq!(
                    p["metadata"]["name"].as_str(),
                    Some(key.1.as_str()),
                    "{path}"
                );
            }
        }
    }
}

#[test]
fn one_overlay_per_cloud_pins_the_cloud_and_names_exactly_its_hosts() {
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
        let patch = yaml(&overlay(cloud).join("deployment-cloud.yaml"));
        let container = &patch["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["name"], "graphgate");
        assert_eq!(
            env(container, "GRAPHGATE_CLOUD").as_deref(),
            Some(cloud.name())
        );

        let mut hosts: BTreeSet<&str> = e.login_aliases.iter().copied().collect();
        hosts.insert(e.login_host);
        hosts.insert(e.graph_host);
        let cnp = yaml(
            &k8s()
                .join("overlays")
                .join(format!("{}-cilium", cloud.name()))
                .join("egress-fqdn.yaml"),
        );
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
        assert_eq!(
            cnp["spec"]["egress"][1]["toPorts"][0]["ports"][0]["port"],
            "443"
        );

        // The overlay's comment lists the same hosts for non-Cilium egress firewalls.
        let text = std::fs::read_to_string(overlay(cloud).join("kustomization.yaml")).unwrap();
        for h in &hosts {
            assert!(text.contains(&format!("{h}:443")), "{cloud}: {h}");
        }
        for other in Cloud::ALL.iter().filter(|c| **c != cloud) {
            let o = other.endpoints().graph_host;
            assert!(!text.contains(&format!("- {o}:")), "{cloud} names {o}");
        }

        // The systemd environment file for the same cloud.
        let env_file = std::fs::read_to_string(
            deploy()
                .join("systemd/env")
                .join(format!("{}.env", cloud.name())),
        )
        .unwrap();
        let get = |k: &str| {
            env_file
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("{cloud}: {k} missing"))
                .to_owned()
        };
        assert_eq!(get("GRAPHGATE_CLOUD").parse::<Cloud>().unwrap(), cloud);
        graphgate::credential::authority_host(cloud, Some(&get("AZURE_AUTHORITY_HOST")))
            .unwrap_or_else(|e| panic!("{cloud}: {e}"));
        assert!(
            env_file.contains(e.graph_host),
            "{cloud}: names its Graph host"
        );
    }
}

#[test]
fn probes_hit_the_admin_endpoints_on_the_admin_port() {
    let c = deployment_container();
    let admin = env(&c, "GRAPHGATE_ADMIN_LISTEN").unwrap();
    assert!(
        admin.starts_with("0.0.0.0:"),
        "in a pod the admin listener must not be loopback"
    );
    let admin_port: u64 = admin.rsplit(':').next().unwrap().parse().unwrap();
    let port = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .unwrap();
    assert_eq!(port["containerPort"], admin_port);
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert!(
            get["port"] == "admin" || get["port"] == admin_port,
            "{probe}"
        );
    }
    let listen = env(&c, "GRAPHGATE_LISTEN").unwrap();
    let http = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "http")
        .unwrap();
    assert_eq!(
        http["containerPort"].to_string(),
        listen.rsplit(':').next().unwrap()
    );
}

#[test]
fn the_pod_is_non_root_read_only_and_without_capabilities() {
    let pod = &base_object("Deployment", "graphgate")["spec"]["template"];
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["spec"]["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = deployment_container();
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert_eq!(
        pod["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
    let sa = base_object("ServiceAccount", "graphgate");
    assert!(sa["metadata"]["annotations"]["azure.workload.identity/client-id"].is_string());
    assert_eq!(pod["spec"]["serviceAccountName"], "graphgate");
    for kind in ["PodDisruptionBudget", "HorizontalPodAutoscaler"] {
        base_object(kind, "graphgate");
    }
    let hpa = base_object("HorizontalPodAutoscaler", "graphgate");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "graphgate");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
}

#[test]
fn the_policy_comes_from_a_mounted_directory_and_is_valid() {
    let c = deployment_container();
    let policy_path = env(&c, "GRAPHGATE_POLICY").unwrap();
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "policy")
        .unwrap();
    assert!(
        mount.get("subPath").is_none(),
        "subPath would stop ConfigMap updates propagating"
    );
    let dir = mount["mountPath"].as_str().unwrap();
    assert_eq!(policy_path, format!("{dir}/policy.yaml"));
    let cm = base_object("ConfigMap", "graphgate-policy");
    graphgate::policy::Policy::from_yaml(cm["data"]["policy.yaml"].as_str().unwrap(), "configmap")
        .unwrap();
    let audit = env(&c, "GRAPHGATE_AUDIT_LOG").unwrap();
    assert!(audit.contains("$(POD_NAME)"), "one audit file per replica");
    let audit_mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "audit")
        .unwrap();
    assert!(audit.starts_with(audit_mount["mountPath"].as_str().unwrap()));
    let creds = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "credentials")
        .unwrap();
    assert!(creds.get("subPath").is_none() && creds["readOnly"] == true);
}

#[test]
fn the_collector_receives_otlp_http_on_4318_and_the_image_is_non_root() {
    let otel = yaml(&deploy().join("otel-collector.yaml"));
    let endpoint = otel["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
        .as_str()
        .unwrap();
    assert!(endpoint.ends_with(":4318"));
    for pipeline in ["traces", "logs"] {
        // Traces, and the audit records shipped as OTLP log records.
        assert!(
            otel["service"]["pipelines"][pipeline]["receivers"]
                .as_array()
                .unwrap()
                .contains(&Value::from("otlp")),
            "{pipeline}"
        );
    }
    let docker = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    assert!(
        docker.lines().filter(|l| l.starts_with("FROM ")).count() >= 2,
        "multi-stage"
    );
    let user = docker
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .unwrap();
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "{user}"
    );
    assert!(docker.contains("--bin graphgate"));
}

#[test]
fn the_systemd_unit_is_sandboxed_and_verifies() {
    let unit = std::fs::read_to_string(deploy().join("systemd/graphgate@.service")).unwrap();
    for line in [
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ReadWritePaths=/var/lib/graphgate/audit",
        "User=graphgate",
        "EnvironmentFile=/etc/graphgate/%i.env",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
    assert_eq!(
        unit.matches("ReadWritePaths=").count(),
        1,
        "the audit directory only"
    );
    let Ok(out) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("note: systemd-analyze not found; skipping `systemd-analyze verify`");
        return;
    };
    assert!(out.status.success());
    let dir = std::env::temp_dir().join(format!("graphgate-unit-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit = unit
        .replace("/usr/local/bin/graphgate", env!("CARGO_BIN_EXE_graphgate"))
        .replace(
            "/etc/graphgate/%i.env",
            &deploy().join("systemd/env/%i.env").display().to_string(),
        );
    let path = dir.join("graphgate@us-gov.service");
    std::fs::write(&path, unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

#[test]
fn kubectl_kustomize_builds_every_overlay_where_available() {
    if std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        eprintln!(
            "note: kubectl not found; the structural checks above stand in for `kubectl kustomize`"
        );
        return;
    }
    for cloud in Cloud::ALL {
        for dir in [cloud.name().to_owned(), format!("{}-cilium", cloud.name())] {
            let out = std::process::Command::new("kubectl")
                .arg("kustomize")
                .arg(k8s().join("overlays").join(&dir))
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{dir}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                stdout.contains(&format!("value: {}\n", cloud.name())),
                "{dir}"
            );
            assert_eq!(stdout.matches("name: GRAPHGATE_CLOUD").count(), 1, "{dir}");
            assert!(!stdout.contains("unset-use-an-overlay"), "{dir}");
            // The Cilium variant drops the broad HTTPS rule from the NetworkPolicy.
            let np = stdout
                .split("---")
                .find(|d| d.contains("kind: NetworkPolicy"))
                .unwrap();
            assert_eq!(np.contains("port: 443"), !dir.ends_with("-cilium"), "{dir}");
        }
    }
}

#[test]
fn the_readme_deploys_every_cloud() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for cloud in Cloud::ALL {
        let e = cloud.endpoints();
        assert!(
            readme.contains(&format!("deploy/kubernetes/overlays/{}", cloud.name())),
            "{cloud}"
        );
        assert!(
            readme.contains(&format!("graphgate@{}", cloud.name())),
            "{cloud}"
        );
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
        "Scaling out",
    ] {
        assert!(readme.contains(var), "README does not mention {var}");
    }
}
