//! The operator's documents say only true things that can be checked: every metric they name
//! is one the gateway exports, and the operator's guide covers what it promises.

use std::collections::BTreeSet;

use super::{read, repo};

/// Metric families the gateway registers (samples or not yet), from its registry.
fn exported_families() -> BTreeSet<String> {
    let names: BTreeSet<String> = graphgate::metrics::exported_names()
        .iter()
        .map(|name| family(name).to_owned())
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    names
}

/// The family of a sample name (its sample suffix removed).
fn family(name: &str) -> &str {
    ["_total", "_bucket", "_sum", "_count", "_created"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

/// `graphgate_...` names in `text`, as families (sample suffixes removed).
fn named_metrics(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices("graphgate_") {
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        out.insert(family(&name).trim_end_matches('_').to_owned());
    }
    out
}

#[test]
fn every_metric_the_docs_name_is_exported() {
    let exported = exported_families();
    let mut docs = vec!["README.md".to_owned(), "bench/README.md".to_owned()];
    for entry in std::fs::read_dir(repo().join("docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            docs.push(format!("docs/{name}"));
        }
    }
    docs.push("docs/reference/configuration.md".to_owned());
    for doc in &docs {
        let named = named_metrics(&read(&repo().join(doc)));
        let unknown: Vec<&String> = named.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{doc} names {unknown:?}; exported: {exported:?}"
        );
    }
    let guide = named_metrics(&read(&repo().join("docs/operations.md")));
    assert!(guide.len() >= 6, "the alerts name the metrics: {guide:?}");
}

#[test]
fn the_operators_guide_covers_its_topics_and_the_docs_link_it() {
    let guide = read(&repo().join("docs/operations.md"));
    for heading in [
        "## Keys and certificates",
        "## Callers' network access",
        "## Rotation",
        "## Upgrades",
        "## Backups of the audit log",
        "## Alerts",
    ] {
        assert!(
            guide.contains(heading),
            "docs/operations.md lacks {heading}"
        );
    }
    let readme = read(&repo().join("README.md"));
    for link in ["docs/operations.md", "docs/deploy.md", "bench/README.md"] {
        assert!(
            readme.contains(&format!("]({link})")),
            "README does not link {link}"
        );
    }
    let summary = read(&repo().join("docs/SUMMARY.md"));
    assert!(
        summary.contains("](operations.md)"),
        "the book lacks the guide"
    );
}
