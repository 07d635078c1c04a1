//! deploy/Dockerfile: its build stage's COPY lines carry everything cargo needs (a temporary
//! directory with exactly those paths gets past manifest parsing and the lock check), it
//! builds the dist profile with --locked, and the image runs the binary as non-root.
//! No Docker daemon is needed; `kube` reads the image's ENTRYPOINT and CMD from here.

use std::path::Path;
use std::process::Command;

use super::{deploy, read, repo};

fn dockerfile() -> String {
    read(&deploy().join("Dockerfile"))
}

/// Instructions (continuation lines joined, comments dropped), each as (keyword, rest).
fn instructions() -> Vec<(String, String)> {
    let text = dockerfile().replace("\\\n", " ");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (keyword, rest) = l.split_once(' ').unwrap_or((l, ""));
            (keyword.to_uppercase(), rest.trim().to_owned())
        })
        .collect()
}

/// The instructions of the last stage (the image).
fn final_stage() -> Vec<(String, String)> {
    let all = instructions();
    let start = all.iter().rposition(|(k, _)| k == "FROM").unwrap();
    all[start..].to_vec()
}

/// A JSON-array (exec form) instruction of the final stage.
fn exec_form(keyword: &str) -> Vec<String> {
    let stage = final_stage();
    let (_, rest) = stage.iter().find(|(k, _)| k == keyword).unwrap();
    serde_json::from_str(rest).unwrap_or_else(|e| panic!("{keyword} {rest}: {e}"))
}

/// The image's ENTRYPOINT.
pub fn entrypoint() -> Vec<String> {
    exec_form("ENTRYPOINT")
}

/// The image's CMD.
pub fn cmd() -> Vec<String> {
    exec_form("CMD")
}

/// Where the image holds the binary (the final stage's COPY --from destination).
pub fn installed_binary() -> String {
    let stage = final_stage();
    let (_, copy) = stage
        .iter()
        .find(|(k, rest)| k == "COPY" && rest.starts_with("--from="))
        .unwrap();
    copy.split_whitespace().last().unwrap().to_owned()
}

/// The sources of the build stage's COPY lines (those not `--from` another stage).
fn build_context_copies() -> Vec<String> {
    let all = instructions();
    let end = all.iter().rposition(|(k, _)| k == "FROM").unwrap();
    let mut sources = Vec::new();
    for (_, rest) in all[..end].iter().filter(|(k, _)| k == "COPY") {
        let words: Vec<&str> = rest.split_whitespace().collect();
        assert!(
            !words[0].starts_with("--"),
            "unexpected COPY option: {rest}"
        );
        sources.extend(words[..words.len() - 1].iter().map(|s| (*s).to_owned()));
    }
    sources
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

/// What the build stage sees: exactly the paths its COPY lines name, nothing else.
fn docker_context() -> std::path::PathBuf {
    let dir = crate::common::temp_dir("docker-context");
    for source in build_context_copies() {
        assert!(!source.contains('*'), "globs are not handled: {source}");
        copy_tree(&repo().join(&source), &dir.join(&source));
    }
    dir
}

/// `cargo fetch --offline --locked` parses the manifest as a build does (every declared
/// target's path is checked, which `cargo metadata --no-deps` skips) and checks the lock
/// file, without compiling; `--target` keeps it to the packages this platform needs, which
/// a previous build has already downloaded.
#[test]
fn cargo_gets_past_the_manifest_with_exactly_the_copied_files() {
    let dir = docker_context();
    let host =
        String::from_utf8(Command::new("rustc").arg("-vV").output().unwrap().stdout).unwrap();
    let host = host.lines().find_map(|l| l.strip_prefix("host: ")).unwrap();
    let out = Command::new(env!("CARGO"))
        .args(["fetch", "--offline", "--locked", "--target", host])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "with the Dockerfile's COPY lines: {stderr}"
    );
    assert_includes_resolve(&dir.join("src"));
    // Cargo runs build.rs when it is beside Cargo.toml (and the crate needs what it sets).
    assert_eq!(
        dir.join("build.rs").exists(),
        repo().join("build.rs").exists(),
        "the Dockerfile copies build.rs"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `include_str!` / `include_bytes!` in the copied sources name files that were copied too
/// (the one thing a build needs that `cargo fetch` does not read).
fn assert_includes_resolve(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_includes_resolve(&path);
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for macro_name in ["include_str!(\"", "include_bytes!(\""] {
            for found in text.split(macro_name).skip(1) {
                let included = found.split('"').next().unwrap();
                let target = path.parent().unwrap().join(included);
                assert!(target.exists(), "{}: {included} not copied", path.display());
            }
        }
    }
}

#[test]
fn the_image_builds_the_dist_profile_locked_and_runs_non_root() {
    let all = instructions();
    let froms: Vec<&String> = all
        .iter()
        .filter(|(k, _)| k == "FROM")
        .map(|i| &i.1)
        .collect();
    assert!(froms.len() >= 2, "multi-stage");
    // The build image's Rust is at least the crate's rust-version.
    let manifest: String = read(&repo().join("Cargo.toml"));
    let msrv = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    let image_rust = froms[0]
        .strip_prefix("rust:")
        .and_then(|t| t.split('-').next())
        .unwrap();
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    assert!(
        version(image_rust) >= version(msrv),
        "{image_rust} < {msrv}"
    );
    let build = all
        .iter()
        .find(|(k, rest)| k == "RUN" && rest.contains("cargo build"))
        .unwrap();
    for needed in [
        "--locked",
        "--profile dist",
        "--no-default-features",
        "--bin graphgate",
    ] {
        assert!(build.1.contains(needed), "cargo build without {needed}");
    }
    // The context has no .git: the commit `--version` prints is a build argument, declared
    // before the build in its stage.
    let at = |wanted: &dyn Fn(&(String, String)) -> bool| all.iter().position(wanted);
    let arg = at(&|(k, rest)| k == "ARG" && rest == "GRAPHGATE_BUILD_COMMIT");
    let run = at(&|(k, rest)| k == "RUN" && rest.contains("cargo build"));
    assert!(
        arg.is_some() && arg < run,
        "ARG GRAPHGATE_BUILD_COMMIT before the build"
    );
    assert!(manifest.contains("[profile.dist]"));
    let stage = final_stage();
    let copy = stage
        .iter()
        .find(|(k, r)| k == "COPY" && r.starts_with("--from="));
    assert!(
        copy.unwrap().1.contains("/target/dist/graphgate "),
        "{copy:?}"
    );
    assert!(
        froms.last().unwrap().contains("distroless"),
        "a minimal base"
    );
    let (_, user) = stage.iter().rev().find(|(k, _)| k == "USER").unwrap();
    let uid: u32 = user.split(':').next().unwrap().parse().unwrap();
    assert_ne!(uid, 0, "runs as root");
    assert_eq!(entrypoint(), [installed_binary()]);
}
