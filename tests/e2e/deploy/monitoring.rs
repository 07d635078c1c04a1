//! The monitoring component (deploy/monitoring) added to each overlay as docs/deploy.md
//! says (`components: [../../../monitoring]` in the overlay's kustomization.yaml) and
//! rendered by `kubectl kustomize`: the ServiceMonitor scrapes the admin port of exactly the
//! gateway's pods with the admin token the Deployment itself reads, Prometheus may reach that
//! port, and the PrometheusRule and the dashboard ConfigMap carry the shipped files as they
//! are. Also the overlays' `images:` entry, which sets the image with kubectl alone.

use std::path::Path;

use serde_json::Value;

use super::kube::{self, Rendered};
use super::{copy_dir, deploy, k8s, read, repo, yaml};
use crate::common::temp_dir;

/// The objects the component adds, as (kind, name).
const ADDED: [(&str, &str); 4] = [
    ("PrometheusRule", "graphgate"),
    ("ServiceMonitor", "graphgate"),
    ("Service", "graphgate-admin"),
    ("ConfigMap", "graphgate-dashboard"),
];

/// `overlay` rendered from a copy of deploy/ in `scratch`, its kustomization.yaml first
/// changed by `edit`.
fn render_edited(scratch: &Path, overlay: &str, edit: impl FnOnce(&str) -> String) -> Rendered {
    let copy = scratch.join(overlay);
    copy_dir(&deploy(), &copy);
    let file = copy
        .join("kubernetes/overlays")
        .join(overlay)
        .join("kustomization.yaml");
    let text = read(&file);
    std::fs::write(&file, edit(&text)).unwrap();
    kube::render_dir(overlay.to_owned(), file.parent().unwrap())
}

/// Whether every pair of `selector` (a label map) is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| labels[k] == *v)
}

#[test]
fn the_monitoring_component_scrapes_each_pods_admin_port_with_the_admin_token() {
    let Some(overlays) = kube::rendered() else {
        return;
    };
    let scratch = temp_dir("kustomize-monitoring");
    for plain in overlays {
        let r = render_edited(&scratch, &plain.overlay, |text| {
            assert!(!text.contains("components:"), "{}", plain.overlay);
            format!("{text}components:\n  - ../../../monitoring\n")
        });
        let o = &r.overlay;
        assert_eq!(r.docs.len(), plain.docs.len() + ADDED.len(), "{o}");
        for (kind, name) in ADDED {
            assert_eq!(
                r.object(kind, name)["metadata"]["namespace"],
                "graphgate",
                "{o}: {kind}"
            );
        }
        let pod_labels = &r.pod()["metadata"]["labels"];
        let monitor = r.object("ServiceMonitor", "graphgate");
        let selector = &monitor["spec"]["selector"]["matchLabels"];
        let services: Vec<&Value> = r
            .of_kind("Service")
            .into_iter()
            .filter(|s| selects(selector, &s["metadata"]["labels"]))
            .collect();
        assert_eq!(
            services.len(),
            1,
            "{o}: the ServiceMonitor selects one Service"
        );
        let service = services[0];
        assert_eq!(service["metadata"]["name"], "graphgate-admin");
        assert_eq!(
            service["spec"]["clusterIP"], "None",
            "{o}: one target per pod"
        );
        assert!(selects(&service["spec"]["selector"], pod_labels), "{o}");

        // The endpoint's port is the container's admin port, where GRAPHGATE_ADMIN_LISTEN
        // listens.
        let endpoints = monitor["spec"]["endpoints"].as_array().unwrap();
        assert_eq!(endpoints.len(), 1);
        let endpoint = &endpoints[0];
        assert_eq!(endpoint["path"], "/metrics");
        let port = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == endpoint["port"])
            .unwrap_or_else(|| panic!("{o}: no Service port {}", endpoint["port"]));
        let container_port = r.container()["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == port["targetPort"])
            .unwrap()["containerPort"]
            .as_u64()
            .unwrap();
        let listen = r.env("GRAPHGATE_ADMIN_LISTEN").unwrap();
        assert_eq!(listen, format!("0.0.0.0:{container_port}"), "{o}");

        // Off loopback /metrics needs the admin token: the one the Deployment reads.
        let token_file = Path::new(r.env("GRAPHGATE_ADMIN_TOKEN_FILE").unwrap());
        let mount = r.container()["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| Path::new(m["mountPath"].as_str().unwrap()) == token_file.parent().unwrap())
            .unwrap();
        let secret = &r.volume(mount["name"].as_str().unwrap())["secret"];
        let item = secret["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| Path::new(i["path"].as_str().unwrap()) == token_file.file_name().unwrap())
            .unwrap();
        let credentials = &endpoint["authorization"]["credentials"];
        assert_eq!(endpoint["authorization"]["type"], "Bearer");
        assert_eq!(credentials["name"], secret["secretName"], "{o}");
        assert_eq!(credentials["key"], item["key"], "{o}");

        // Prometheus (namespace "monitoring") may open that port.
        let policy = r.object("NetworkPolicy", "graphgate");
        let admitted = policy["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .any(|rule| {
                rule["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["port"] == container_port)
                    && rule["from"].as_array().unwrap().iter().any(|f| {
                        f["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                            == "monitoring"
                    })
            });
        assert!(
            admitted,
            "{o}: Prometheus cannot reach port {container_port}"
        );

        // The scrape's job is the Service's name, which GraphgateDown selects.
        assert!(monitor["spec"]["jobLabel"].is_null());
        let rules = read(&deploy().join("monitoring/graphgate.rules.yaml"));
        assert!(rules.contains(r#"up{job=~"graphgate.*"}"#));
        assert!(
            service["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("graphgate")
        );

        let shipped = yaml(&deploy().join("monitoring/prometheusrule.yaml"));
        assert_eq!(
            r.object("PrometheusRule", "graphgate")["spec"],
            shipped["spec"],
            "{o}"
        );
        let dashboard = r.object("ConfigMap", "graphgate-dashboard");
        assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
        assert_eq!(
            dashboard["data"]["grafana-dashboard.json"].as_str(),
            Some(read(&deploy().join("monitoring/grafana-dashboard.json")).as_str()),
            "{o}"
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// docs/deploy.md's "Apply" step: the image is set in the overlay's `images:` entry, which
/// `kubectl kustomize` (and so `kubectl apply -k`) applies without the kustomize CLI; the
/// shipped entry names this version, and a `-cilium` overlay follows its cloud's.
#[test]
fn the_overlays_image_is_set_with_kubectl_alone() {
    let version = env!("CARGO_PKG_VERSION");
    let Some(overlays) = kube::rendered() else {
        return;
    };
    for r in overlays {
        let image = r.container()["image"].as_str().unwrap();
        assert_eq!(image, format!("graphgate:{version}"), "{}", r.overlay);
    }
    // The README's check, as printed, from the repository's root.
    let readme = read(&repo().join("docs/deploy.md"));
    let check = readme
        .lines()
        .map(str::trim)
        .find(|l| {
            l.starts_with("kubectl kustomize deploy/kubernetes/overlays/") && l.contains("image:")
        })
        .expect("docs/deploy.md shows the image before applying");
    let out = std::process::Command::new("sh")
        .args(["-c", check])
        .current_dir(super::repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{check}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("image: graphgate:{version}"),
        "{check}"
    );
    let scratch = temp_dir("kustomize-image");
    let mine = "myregistry.azurecr.io/graphgate";
    for cloud in ["global", "us-gov", "us-dod", "china"] {
        let k = yaml(
            &k8s()
                .join("overlays")
                .join(cloud)
                .join("kustomization.yaml"),
        );
        assert_eq!(k["images"][0]["name"], "graphgate", "{cloud}");
        assert_eq!(k["images"][0]["newTag"], version, "{cloud}");
        for overlay in [cloud.to_owned(), format!("{cloud}-cilium")] {
            let copy = scratch.join(&overlay);
            copy_dir(&deploy(), &copy);
            let file = copy
                .join("kubernetes/overlays")
                .join(cloud)
                .join("kustomization.yaml");
            let text = read(&file);
            assert!(text.contains("    newName: graphgate\n"), "{cloud}");
            std::fs::write(
                &file,
                text.replace(
                    "    newName: graphgate\n",
                    &format!("    newName: {mine}\n"),
                ),
            )
            .unwrap();
            let dir = copy.join("kubernetes/overlays").join(&overlay);
            let r = kube::render_dir(overlay.clone(), &dir);
            assert_eq!(
                r.container()["image"],
                format!("{mine}:{version}"),
                "{overlay}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
