//! The shared state store as deploy/ ships it: every overlay (2 to 4 replicas) takes its
//! `GRAPHGATE_STATE` from the graphgate-state Secret and may reach a Redis over TLS (the
//! cloud's Azure Cache for Redis domain, under Cilium); the in-cluster Redis component,
//! rendered onto every overlay, is what docs/scaling.md asks of a Redis and is reached with the
//! URL its own instructions put in that Secret; the systemd environment files run in
//! memory, with a commented Redis for their cloud that graphgate accepts.

use std::path::PathBuf;
use std::process::Command;

use graphgate::cloud::Cloud;
use graphgate::state::StateConfig;
use graphgate::state::config::StateOptions;
use serde_json::Value;

use super::kube::rendered;
use super::{deploy, k8s, read, tool_available};
use crate::common::temp_dir;

/// Each cloud's Azure Cache for Redis domain.
pub fn cache_domain(cloud: Cloud) -> &'static str {
    match cloud {
        Cloud::Global => "redis.cache.windows.net",
        Cloud::UsGov | Cloud::UsDod => "redis.cache.usgovcloudapi.net",
        Cloud::China => "redis.cache.chinacloudapi.cn",
    }
}

/// The graphgate NetworkPolicy's egress rules open to any host on `port`.
fn open_egress(policy: &Value, port: u64) -> usize {
    let rules = policy["spec"]["egress"].as_array().unwrap();
    rules
        .iter()
        .filter(|rule| rule["to"].is_null() && rule["ports"][0]["port"] == port)
        .count()
}

#[test]
fn every_overlay_shares_its_state_through_the_graphgate_state_secret() {
    let Some(rendered) = rendered() else { return };
    for r in rendered {
        let env = r.container()["env"].as_array().unwrap();
        let state: Vec<&Value> = env
            .iter()
            .filter(|e| e["name"] == "GRAPHGATE_STATE")
            .collect();
        assert_eq!(state.len(), 1, "{}", r.overlay);
        let from = &state[0]["valueFrom"]["secretKeyRef"];
        assert_eq!(from["name"], "graphgate-state", "{}", r.overlay);
        assert_eq!(from["key"], "url", "{}", r.overlay);
        assert!(
            from["optional"] != true,
            "{}: no start without it",
            r.overlay
        );
        assert!(state[0]["value"].is_null(), "{}", r.overlay);
        let replicas = r.of_kind("Deployment")[0]["spec"]["replicas"].as_u64();
        assert!(replicas.unwrap() >= 2, "{}: shared by replicas", r.overlay);

        // Egress to the cache's TLS port: anywhere, or (Cilium) the cloud's cache domain only.
        let cilium = r.overlay.ends_with("-cilium");
        let np = r.object("NetworkPolicy", "graphgate");
        assert_eq!(open_egress(np, 6380), usize::from(!cilium), "{}", r.overlay);
        if cilium {
            let cnp = r.object("CiliumNetworkPolicy", "graphgate-egress-fqdn");
            let pattern = format!("*.{}", cache_domain(r.cloud()));
            let rule = &cnp["spec"]["egress"][2];
            assert_eq!(rule["toFQDNs"][0]["matchPattern"], pattern.as_str());
            assert_eq!(rule["toFQDNs"].as_array().unwrap().len(), 1);
            assert_eq!(rule["toPorts"][0]["ports"][0]["port"], "6380");
            let dns = cnp["spec"]["egress"][0]["toPorts"][0]["rules"]["dns"].clone();
            let looked_up = dns.as_array().unwrap().iter();
            assert!(
                looked_up
                    .filter(|d| d["matchPattern"] == pattern.as_str())
                    .count()
                    == 1,
                "{}: the cache's name may be resolved",
                r.overlay
            );
        }
    }
}

/// `overlay` with `component` added, as `kubectl kustomize` renders it; `None` (skipped)
/// without kubectl.
fn render_with(overlay: &str, component: &str) -> Option<Vec<Value>> {
    if !tool_available("kubectl", &["version", "--client"]) {
        return None;
    }
    let dir = temp_dir("state-deploy");
    // kustomize takes no absolute roots: name the shipped directories from the temporary one.
    let up = "../".repeat(dir.components().count() - 1);
    let from_root = |p: PathBuf| format!("{up}{}", p.display().to_string().trim_start_matches('/'));
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\ncomponents:\n  - {}\n",
        from_root(k8s().join("overlays").join(overlay)),
        from_root(k8s().join("components").join(component))
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
    let _ = std::fs::remove_dir_all(&dir);
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

/// The `--from-literal=<key>="..."` value of the component's `create secret generic <name>`
/// instruction, with `$PASSWORD` as `password`.
fn instructed(kustomization: &str, name: &str, key: &str, password: &str) -> String {
    let line = kustomization
        .lines()
        .find(|l| l.contains(&format!("create secret generic {name} ")))
        .unwrap_or_else(|| panic!("no instruction creates {name}"));
    let literal = format!("--from-literal={key}=\"");
    let value = &line[line.find(&literal).unwrap() + literal.len()..];
    value[..value.find('"').unwrap()].replace("$PASSWORD", password)
}

#[test]
fn the_redis_component_gives_every_overlay_a_redis_graphgate_can_use() {
    let instructions = read(&k8s().join("components/redis-state/kustomization.yaml"));
    // The URL the instructions put in graphgate-state reaches the component's Service with
    // the password they give Redis.
    let url = instructed(&instructions, "graphgate-state", "url", "pw-1");
    assert_eq!(
        instructed(&instructions, "graphgate-redis", "password", "pw-1"),
        "pw-1"
    );
    let Ok(StateConfig::Redis(settings)) = StateConfig::parse(&url, StateOptions::default()) else {
        panic!("{url}: not a Redis graphgate accepts")
    };
    assert_eq!(settings.shown(), "redis://graphgate-redis:6379/0");
    assert!(url.contains(":pw-1@"), "{url}");
    for cloud in Cloud::ALL {
        let Some(docs) = render_with(cloud.name(), "redis-state") else {
            return;
        };
        let service = find(&docs, "Service", "graphgate-redis");
        assert_eq!(service["spec"]["ports"][0]["port"], 6379);
        let redis = find(&docs, "StatefulSet", "graphgate-redis");
        assert_eq!(
            service["spec"]["selector"], redis["spec"]["template"]["metadata"]["labels"],
            "{cloud}: the Service selects the Redis pods"
        );
        let container = &redis["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<&str> = container["args"]
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
        let password = &container["env"][0]["valueFrom"]["secretKeyRef"];
        assert_eq!(password["name"], "graphgate-redis");
        assert_eq!(password["key"], "password");
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
        let egress = find(&docs, "NetworkPolicy", "graphgate")["spec"]["egress"].clone();
        let to_redis = egress.as_array().unwrap().iter().find(|rule| {
            rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                == "graphgate-redis"
        });
        assert_eq!(to_redis.unwrap()["ports"][0]["port"], 6379, "{cloud}");
        let fence = find(&docs, "NetworkPolicy", "graphgate-redis");
        let from = &fence["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"];
        assert_eq!(from["app.kubernetes.io/name"], "graphgate", "{cloud}");
    }
}

#[test]
fn each_systemd_env_file_runs_in_memory_and_shows_a_shared_state_for_its_cloud() {
    for cloud in Cloud::ALL {
        let env = super::systemd::env_file(cloud);
        let state: Vec<&str> = env
            .iter()
            .filter(|(k, _)| k == "GRAPHGATE_STATE")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(state, ["memory"], "{cloud}: one host alone");
        let text = read(&deploy().join(format!("systemd/env/{cloud}.env")));
        let example = text
            .lines()
            .find_map(|l| l.strip_prefix("#GRAPHGATE_STATE="))
            .unwrap_or_else(|| panic!("{cloud}.env has no #GRAPHGATE_STATE= example"));
        assert!(
            example.starts_with("rediss://") && example.contains(cache_domain(cloud)),
            "{cloud}: {example}"
        );
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
