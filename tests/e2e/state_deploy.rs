//! The shipped examples of a shared state store: the Kubernetes components (each rendered
//! onto every cloud's overlay by `kubectl kustomize`) point graphgate at a Redis that the
//! same render provides or names, with what the README asks of it; the systemd environment
//! files carry a state setting for their cloud that graphgate accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

use graphgate::state::StateConfig;
use graphgate::state::config::StateOptions;
use serde_json::Value;

use crate::common::{require_tool, temp_dir};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

const CLOUDS: [(&str, &str); 4] = [
    ("global", "redis.cache.windows.net"),
    ("us-gov", "redis.cache.usgovcloudapi.net"),
    ("us-dod", "redis.cache.usgovcloudapi.net"),
    ("china", "redis.cache.chinacloudapi.cn"),
];

/// `overlay` with `component` added, as `kubectl kustomize` renders it; `None` (skipped)
/// without kubectl.
fn render(overlay: &str, component: &str) -> Option<Vec<Value>> {
    if !require_tool(
        "kubectl",
        &["kubectl", "version", "--client"],
        "https://kubernetes.io/docs/tasks/tools/#kubectl",
    ) {
        return None;
    }
    let k8s = deploy().join("kubernetes");
    let dir = temp_dir("state-deploy");
    // kustomize takes no absolute roots: name the shipped directories from the temporary one.
    let up = "../".repeat(dir.components().count() - 1);
    let from_root = |p: PathBuf| format!("{up}{}", p.display().to_string().trim_start_matches('/'));
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\ncomponents:\n  - {}\n",
        from_root(k8s.join("overlays").join(overlay)),
        from_root(k8s.join("components").join(component))
    );
    std::fs::write(dir.join("kustomization.yaml"), kustomization).unwrap();
    let out = Command::new("kubectl")
        .args(["kustomize", "--load-restrictor", "LoadRestrictionsNone"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{overlay} + {component}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        text.split("\n---\n")
            .map(|d| serde_saphyr::from_str(d).unwrap())
            .collect(),
    )
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

fn env<'a>(container: &'a Value, name: &str) -> &'a str {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("no {name}"))
}

/// The graphgate container, with its state URL accepted by graphgate and its password file
/// on a mounted Secret.
fn graphgate_state(docs: &[Value]) -> String {
    let pod = &find(docs, "Deployment", "graphgate")["spec"]["template"]["spec"];
    let container = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "graphgate")
        .unwrap();
    let url = env(container, "GRAPHGATE_STATE").to_owned();
    let config = StateConfig::parse(&url, StateOptions::default()).unwrap();
    assert!(matches!(config, StateConfig::Redis(_)), "{url}");
    let password = Path::new(env(container, "GRAPHGATE_STATE_PASSWORD_FILE"));
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| Path::new(m["mountPath"].as_str().unwrap()) == password.parent().unwrap())
        .expect("the password file's directory is mounted");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(volume["secret"]["secretName"], "graphgate-redis");
    url
}

fn egress_ports(policy: &Value) -> Vec<u64> {
    policy["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["port"].as_u64())
        .collect()
}

#[test]
fn the_redis_component_gives_every_overlay_a_redis_graphgate_can_use() {
    for (cloud, _) in CLOUDS {
        let Some(docs) = render(cloud, "redis-state") else {
            return;
        };
        assert_eq!(
            graphgate_state(&docs),
            "redis://graphgate-redis:6379",
            "{cloud}"
        );
        let service = find(&docs, "Service", "graphgate-redis");
        assert_eq!(service["spec"]["ports"][0]["port"], 6379);
        let redis = find(&docs, "StatefulSet", "graphgate-redis");
        assert_eq!(
            service["spec"]["selector"], redis["spec"]["template"]["metadata"]["labels"],
            "{cloud}: the Service selects the Redis pods"
        );
        let args: Vec<&str> = redis["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        for pair in [
            ["--maxmemory-policy", "noeviction"],
            ["--appendonly", "yes"],
            ["--requirepass", "$(REDIS_PASSWORD)"],
        ] {
            assert!(
                args.windows(2).any(|w| w == pair),
                "{cloud}: {pair:?} in {args:?}"
            );
        }
        for (kind, name) in [
            ("StatefulSet", "graphgate-redis"),
            ("Service", "graphgate-redis"),
            ("NetworkPolicy", "graphgate-redis"),
        ] {
            assert_eq!(
                find(&docs, kind, name)["metadata"]["namespace"],
                "graphgate"
            );
        }
        // graphgate may reach Redis; only graphgate may.
        assert!(egress_ports(find(&docs, "NetworkPolicy", "graphgate")).contains(&6379));
        let fence = find(&docs, "NetworkPolicy", "graphgate-redis");
        let from = &fence["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"];
        assert_eq!(from["app.kubernetes.io/name"], "graphgate", "{cloud}");
    }
}

#[test]
fn the_azure_cache_component_uses_tls_to_a_cache() {
    for (cloud, _) in CLOUDS {
        let Some(docs) = render(cloud, "azure-cache-state") else {
            return;
        };
        let url = graphgate_state(&docs);
        assert!(
            url.starts_with("rediss://") && url.ends_with(":6380"),
            "{cloud}: {url}"
        );
        assert!(egress_ports(find(&docs, "NetworkPolicy", "graphgate")).contains(&6380));
    }
}

#[test]
fn each_systemd_env_file_shows_a_shared_state_for_its_cloud() {
    for (cloud, suffix) in CLOUDS {
        let path = deploy().join("systemd/env").join(format!("{cloud}.env"));
        let text = std::fs::read_to_string(&path).unwrap();
        let example = text
            .lines()
            .find_map(|l| l.strip_prefix("#GRAPHGATE_STATE="))
            .unwrap_or_else(|| panic!("{cloud}.env has no #GRAPHGATE_STATE= example"));
        assert!(example.contains(suffix), "{cloud}: {example}");
        assert!(matches!(
            StateConfig::parse(example, StateOptions::default()),
            Ok(StateConfig::Redis(_))
        ));
        assert!(
            text.contains("#GRAPHGATE_STATE_PASSWORD_FILE="),
            "{cloud}.env: the password comes from a file"
        );
    }
}
