//! The documents run: every shell block of the README and of the book (`docs/`, the pages
//! `docs/SUMMARY.md` lists) is run by [`the_readme_runs`] and [`the_book_runs`], or marked
//! `norun="why"`; every fence names its language; every relative link leads somewhere. The
//! conventions are the book's contributing page's ("Documented commands run").

mod blocks;
mod runner;

use std::path::{Path, PathBuf};

use blocks::Item;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The README and every page of the book, as paths from the repository's root.
fn pages() -> Vec<String> {
    let summary = std::fs::read_to_string(repo().join("docs/SUMMARY.md")).unwrap();
    let mut pages = vec!["README.md".to_owned(), "docs/SUMMARY.md".to_owned()];
    for (at, _) in summary.match_indices("](") {
        let target = &summary[at + 2..];
        let target = &target[..target.find(')').unwrap()];
        pages.push(format!("docs/{target}"));
    }
    pages
}

/// A page's items; a malformed fence, a shell block marked `norun` without a reason, or an
/// attribute the runner does not know fails here.
fn items(page: &str) -> Vec<Item> {
    let text = std::fs::read_to_string(repo().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
    let items = blocks::parse(&text).unwrap_or_else(|e| panic!("{page}: {e}"));
    for item in &items {
        let Item::Block(b) = item else { continue };
        if !b.is_shell() {
            continue;
        }
        for key in b.attrs.keys() {
            assert!(
                ["norun", "background", "ready", "exit", "expect"].contains(&key.as_str()),
                "{page}:{}: unknown attribute {key:?}",
                b.line
            );
        }
        if let Some(why) = b.attr("norun") {
            assert!(
                why.split_whitespace().count() >= 3,
                "{page}:{}: norun says why, in words: norun=\"...\"",
                b.line
            );
        }
    }
    items
}

fn run(page: &str) {
    let items = items(page);
    runner::Page::new(&repo(), page).run(&items);
}

#[test]
fn every_page_is_well_formed_and_marks_what_it_does_not_run() {
    let pages = pages();
    assert!(pages.len() > 15, "{pages:?}");
    let mut shell = 0;
    let mut norun = 0;
    for page in &pages {
        for item in items(page) {
            if let Item::Block(b) = item {
                shell += usize::from(b.is_shell());
                norun += usize::from(b.is_shell() && b.attrs.contains_key("norun"));
            }
        }
    }
    assert!(shell > norun, "{shell} shell blocks, {norun} not run");
}

#[test]
fn the_readme_runs() {
    run("README.md");
}

#[test]
fn the_book_runs() {
    for page in pages().iter().skip(1) {
        let runs = items(page).iter().any(|i| match i {
            Item::Block(b) => b.is_shell() && !b.attrs.contains_key("norun"),
            Item::Directive { .. } => true,
        });
        if runs {
            run(page);
        }
    }
}

/// Relative links (`[text](path)`, `[text](path#anchor)`, `[text](#anchor)`) of every page
/// lead to a file of the repository and, in a Markdown file, to one of its headings.
#[test]
fn every_relative_link_leads_somewhere() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(repo().join(&page)).unwrap();
        let dir = Path::new(&page).parent().unwrap().to_owned();
        for (at, _) in text.match_indices("](") {
            let target = &text[at + 2..];
            let Some(end) = target.find(')') else {
                continue;
            };
            let target = &target[..end];
            if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let file = if file.is_empty() {
                PathBuf::from(&page)
            } else {
                normalise(&dir.join(file))
            };
            if !repo().join(&file).exists() {
                broken.push(format!("{page}: {target}: no {}", file.display()));
                continue;
            }
            if !anchor.is_empty() && file.extension().is_some_and(|e| e == "md") {
                let linked = std::fs::read_to_string(repo().join(&file)).unwrap();
                if !anchors(&linked).iter().any(|a| a == anchor) {
                    broken.push(format!("{page}: {target}: no heading #{anchor}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

/// `a/b/../c` → `a/c` (links may climb out of `docs/`).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// The anchors of a Markdown page's headings, as GitHub and mdBook make them.
fn anchors(text: &str) -> Vec<String> {
    let mut fence = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
        }
        let heading = line.trim_start_matches('#');
        if fence || heading.len() == line.len() || !heading.starts_with(' ') {
            continue;
        }
        out.push(
            heading
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect(),
        );
    }
    out
}
