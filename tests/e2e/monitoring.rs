//! deploy/monitoring as Prometheus and Grafana take it: `promtool check rules` on the rules
//! file and on the PrometheusRule's groups (the same, word for word), `promtool test rules`
//! with every alert expected to fire in a unit test, `promtool check config` on the example
//! configuration; every metric the rules and the dashboard name is one graphgate registers,
//! with label values its code uses; every alert has its runbook heading in
//! docs/operations.md. The kustomize component is rendered by `deploy::monitoring`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{require_tool, temp_dir};

/// The unit-test files of the rules (`promtool test rules` takes both).
const TEST_FILES: [&str; 2] = [
    "graphgate.rules.test.yaml",
    "graphgate.rules.daily.test.yaml",
];
/// Metrics the rules may use that graphgate does not export: Prometheus's own scrape
/// health and kube-state-metrics' pod readiness.
const PLATFORM_METRICS: [&str; 2] = ["up", "kube_pod_status_ready"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dir() -> PathBuf {
    repo().join("deploy/monitoring")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(name: &str) -> Value {
    serde_saphyr::from_str(&read(&dir().join(name))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every rule of the plain rules file.
fn rules() -> Vec<Value> {
    let file = yaml("graphgate.rules.yaml");
    let groups = file["groups"].as_array().unwrap();
    groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect()
}

fn alert_names() -> BTreeSet<String> {
    rules()
        .iter()
        .map(|r| r["alert"].as_str().unwrap().to_owned())
        .collect()
}

fn dashboard() -> Value {
    serde_json::from_str(&read(&dir().join("grafana-dashboard.json")))
        .unwrap_or_else(|e| panic!("grafana-dashboard.json is not JSON: {e}"))
}

/// Every query of the dashboard's panels, with the panel's id and the query's refId.
fn dashboard_queries() -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    for panel in dashboard()["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                panel["id"].as_u64().unwrap(),
                target["refId"].as_str().unwrap().to_owned(),
                target["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

fn promtool_available() -> bool {
    require_tool(
        "promtool",
        &["promtool", "--version"],
        "apt-get install prometheus (Debian's package ships promtool)",
    )
}

/// Runs `promtool args` in `cwd`; panics with its output unless it succeeds.
fn promtool(args: &[&str], cwd: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {}:\n{text}", args.join(" "));
    text
}

#[test]
fn promtool_checks_the_rules_and_every_unit_test_passes() {
    if !promtool_available() {
        return;
    }
    let out = promtool(&["check", "rules", "graphgate.rules.yaml"], &dir());
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", rules().len())),
        "{out}"
    );
    // The PrometheusRule's spec is a rules file of its own.
    let scratch = temp_dir("promtool-prometheusrule");
    let spec = yaml("prometheusrule.yaml")["spec"].clone();
    let extracted = scratch.join("prometheusrule-spec.yaml");
    std::fs::write(&extracted, serde_json::to_string(&spec).unwrap()).unwrap();
    promtool(&["check", "rules", extracted.to_str().unwrap()], &dir());
    let mut args = vec!["test", "rules"];
    args.extend(TEST_FILES);
    let out = promtool(&args, &dir());
    assert_eq!(out.matches("SUCCESS").count(), TEST_FILES.len(), "{out}");
    // The example configuration loads the rules file.
    let out = promtool(&["check", "config", "prometheus.yml"], &dir());
    assert!(out.contains("SUCCESS: 1 rule files found"), "{out}");
}

#[test]
fn the_prometheus_rule_holds_the_rules_files_groups() {
    let rule = yaml("prometheusrule.yaml");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(
        rule["spec"]["groups"],
        yaml("graphgate.rules.yaml")["groups"],
        "prometheusrule.yaml's spec.groups and graphgate.rules.yaml's groups differ: edit both"
    );
}

/// GitHub's anchor for a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_alert_fires_in_a_unit_test_and_has_its_runbook_in_the_operations_guide() {
    let alerts = alert_names();
    assert!(alerts.len() >= 15, "{alerts:?}");
    // Every alert is expected to fire (with labels and annotations promtool compares) at
    // least once.
    let mut fired = BTreeSet::new();
    for file in TEST_FILES {
        for test in yaml(file)["tests"].as_array().unwrap() {
            for case in test["alert_rule_test"].as_array().unwrap() {
                if case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                    fired.insert(case["alertname"].as_str().unwrap().to_owned());
                }
            }
        }
    }
    let untested: Vec<_> = alerts.difference(&fired).collect();
    assert!(
        untested.is_empty(),
        "alerts no unit test fires: {untested:?}"
    );

    let guide = read(&repo().join("docs/operations.md"));
    let alerts_section = guide
        .split("\n## ")
        .find(|s| s.starts_with("Alerts"))
        .expect("docs/operations.md has an Alerts section");
    let headings: BTreeSet<String> = alerts_section
        .lines()
        .filter_map(|l| l.strip_prefix("#### "))
        .map(|h| h.trim().to_owned())
        .collect();
    assert_eq!(
        headings, alerts,
        "the operations guide's alert headings and the shipped alerts differ"
    );
    for file in [
        "deploy/monitoring/",
        "graphgate.rules.yaml",
        "prometheusrule.yaml",
    ] {
        assert!(
            alerts_section.contains(file),
            "the Alerts section does not point to {file}"
        );
    }
    for rule in rules() {
        let name = rule["alert"].as_str().unwrap();
        let severity = rule["labels"]["severity"].as_str().unwrap();
        assert!(
            ["critical", "warning"].contains(&severity),
            "{name}: {severity}"
        );
        for key in ["summary", "description"] {
            let text = rule["annotations"][key].as_str().unwrap_or_default();
            assert!(text.len() > 20, "{name}: no {key}");
        }
        assert_eq!(
            rule["annotations"]["runbook"].as_str(),
            Some(format!("docs/operations.md#{}", anchor(name)).as_str()),
            "{name}"
        );
    }
}

/// The sample names graphgate's registry can produce, samples or not.
fn exported_samples() -> BTreeSet<String> {
    graphgate::metrics::exported_names()
        .iter()
        .cloned()
        .collect()
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Where the string literal opening at `chars[start]` (a `"`) ends: the index after its
/// closing quote.
fn after_string(chars: &[char], start: usize) -> usize {
    let mut i = start + 1;
    while i < chars.len() && chars[i] != '"' {
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// The metric names an expression selects, each with its matchers' text (`""` without
/// braces). A name is taken where it stands before `{`, or where it starts with
/// `graphgate_` (bare selectors); string literals are skipped.
fn selectors(expr: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '"' {
            i = after_string(&chars, i);
            continue;
        }
        if !is_name_char(chars[i]) || (i > 0 && is_name_char(chars[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_name_char(chars[i]) {
            i += 1;
        }
        let name: String = chars[start..i].iter().collect();
        let braces = chars.get(i) == Some(&'{');
        if !braces && !name.starts_with("graphgate_") {
            continue;
        }
        let mut matchers = String::new();
        if braces {
            let mut end = i + 1;
            while chars[end] != '}' {
                end = if chars[end] == '"' {
                    after_string(&chars, end)
                } else {
                    end + 1
                };
            }
            matchers = chars[i + 1..end].iter().collect();
            i = end + 1;
        }
        out.push((name, matchers));
    }
    out
}

/// Each `label="value"` or `label=~"a|b"` of a selector, as (label, values).
fn matcher_values(matchers: &str) -> Vec<(String, Vec<String>)> {
    matchers
        .split(',')
        .filter(|m| !m.trim().is_empty())
        .map(|m| {
            let (label, rest) = m.split_once('=').unwrap();
            let value = rest.trim_start_matches(['~', '=']).trim().trim_matches('"');
            (
                label.trim().trim_end_matches('!').to_owned(),
                value.split('|').map(str::to_owned).collect(),
            )
        })
        .collect()
}

fn source_text(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_text(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&read(&path));
        }
    }
}

/// Checks that `expr` (from `whence`) selects only exported metrics (or, where `platform`,
/// the platform's), with label values graphgate's code spells.
fn check_names(
    whence: &str,
    expr: &str,
    exported: &BTreeSet<String>,
    src: &str,
    platform: bool,
) -> usize {
    let found = selectors(expr);
    assert!(!found.is_empty(), "{whence}: no metric in {expr}");
    for (name, matchers) in &found {
        if name.starts_with("graphgate_") {
            assert!(
                exported.contains(name),
                "{whence}: {name} is not a metric graphgate exports"
            );
        } else {
            assert!(
                platform && PLATFORM_METRICS.contains(&name.as_str()),
                "{whence}: {name} is not graphgate's"
            );
            continue;
        }
        for (label, values) in matcher_values(matchers) {
            // The scrape's own labels, or a dashboard variable.
            if matches!(label.as_str(), "job" | "instance") {
                continue;
            }
            for v in values {
                assert!(
                    src.contains(&format!("\"{v}\"")),
                    "{whence}: {name}{{{label}=\"{v}\"}}: graphgate never uses the value {v:?}"
                );
            }
        }
    }
    found.len()
}

#[test]
fn the_rules_and_the_dashboard_use_only_metrics_graphgate_exports() {
    let exported = exported_samples();
    // Families are listed before their first sample (these have none in most runs).
    for name in [
        "graphgate_reconcile_actions",
        "graphgate_audit_checkpoint_pushes_total",
        "graphgate_state_store_errors_total",
        "graphgate_request_duration_seconds_bucket",
    ] {
        assert!(exported.contains(name), "{name} not in {exported:?}");
    }
    let mut src = String::new();
    source_text(&repo().join("src"), &mut src);

    for rule in rules() {
        let name = rule["alert"].as_str().unwrap();
        check_names(name, rule["expr"].as_str().unwrap(), &exported, &src, true);
    }
    let mut used = BTreeSet::new();
    for (id, ref_id, expr) in dashboard_queries() {
        check_names(
            &format!("dashboard panel {id} query {ref_id}"),
            &expr,
            &exported,
            &src,
            false,
        );
        used.extend(selectors(&expr).into_iter().map(|(n, _)| n));
    }
    // The main metrics each have a panel.
    for name in [
        "graphgate_requests_total",
        "graphgate_request_duration_seconds_bucket",
        "graphgate_errors_total",
        "graphgate_token_fetches_total",
        "graphgate_jwt_refusals_total",
        "graphgate_state_store_errors_total",
        "graphgate_audit_records_total",
        "graphgate_audit_failures_total",
        "graphgate_audit_write_duration_seconds_bucket",
        "graphgate_audit_ship_lag_records",
        "graphgate_audit_ship_failures_total",
        "graphgate_connections_closed_total",
        "graphgate_log_suppressed_total",
    ] {
        assert!(used.contains(name), "the dashboard has no panel for {name}");
    }
}

#[test]
fn selectors_and_matchers_are_read_as_promql_writes_them() {
    let expr = r#"sum by (job) (rate(graphgate_x_total{code=~"a|b", job="g"}[5m])) > 3 * up{job="x", pod=~"x-[a-z]{5}", q="graphgate_not\"}"} and graphgate_lag"#;
    assert_eq!(
        selectors(expr),
        vec![
            (
                "graphgate_x_total".to_owned(),
                r#"code=~"a|b", job="g""#.to_owned()
            ),
            (
                "up".to_owned(),
                r#"job="x", pod=~"x-[a-z]{5}", q="graphgate_not\"}""#.to_owned()
            ),
            ("graphgate_lag".to_owned(), String::new()),
        ]
    );
    assert_eq!(
        matcher_values(r#"code=~"a|b", state!="x""#),
        vec![
            ("code".to_owned(), vec!["a".to_owned(), "b".to_owned()]),
            ("state".to_owned(), vec!["x".to_owned()]),
        ]
    );
}

#[test]
fn the_dashboard_is_grafana_json_whose_queries_promtool_parses() {
    let d = dashboard();
    assert_eq!(d["uid"], "graphgate");
    let panels = d["panels"].as_array().unwrap();
    let ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    let distinct: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "panel ids are unique");
    for p in panels {
        let pos = &p["gridPos"];
        let (x, w) = (pos["x"].as_u64().unwrap(), pos["w"].as_u64().unwrap());
        assert!(x + w <= 24, "panel {}: outside the 24-column grid", p["id"]);
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            assert!(!p["targets"].as_array().unwrap().is_empty());
        }
    }
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "job", "instance"]);
    if !promtool_available() {
        return;
    }
    // Each query, with Grafana's variables given values, as a recording rule promtool parses.
    let rules: Vec<Value> = dashboard_queries()
        .into_iter()
        .map(|(id, ref_id, expr)| {
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$job", ".*")
                .replace("$instance", ".*");
            assert!(
                !expr.contains('$'),
                "panel {id}: an unknown variable in {expr}"
            );
            serde_json::json!({"record": format!("dashboard:panel_{id}_{ref_id}"), "expr": expr})
        })
        .collect();
    let file = temp_dir("promtool-dashboard").join("dashboard-queries.yaml");
    let groups = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&file, groups.to_string()).unwrap();
    let out = promtool(&["check", "rules", file.to_str().unwrap()], &dir());
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", rules.len())),
        "{out}"
    );
}
