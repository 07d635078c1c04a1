//! Build script: the commit `graphgate --version` prints, as `GRAPHGATE_BUILD_COMMIT` for
//! the crate. `GRAPHGATE_BUILD_COMMIT` in the build's environment wins (builds without
//! `.git`, e.g. the Docker context); otherwise `git rev-parse --short HEAD` when this is a
//! git checkout; otherwise "unknown". It reruns only when that variable, `HEAD` or the ref
//! `HEAD` points to changes, so a commit rebuilds the crate and nothing else does.

use std::path::PathBuf;
use std::process::Command;

const OVERRIDE: &str = "GRAPHGATE_BUILD_COMMIT";

fn main() {
    println!("cargo:rerun-if-env-changed={OVERRIDE}");
    let commit = std::env::var(OVERRIDE)
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .or_else(|| {
            watch_head();
            git(&["rev-parse", "--short", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env={OVERRIDE}={commit}");
}

/// `git <args>` in the crate's directory, its trimmed output if it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// Asks cargo to rerun this script when `HEAD` moves: `HEAD` itself (a checkout) and the
/// branch it names (a commit). Only existing paths are named (cargo reruns on every build
/// for a missing one): a branch only in `packed-refs` is watched there and through the
/// nearest existing directory above it, where its next commit writes it as a file.
fn watch_head() {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = |name: &str| git(&["rev-parse", "--git-path", name]).map(|p| manifest_dir.join(p));
    let mut watched = vec![path("HEAD")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]).and_then(|b| path(&b)) {
        if branch.is_file() {
            watched.push(Some(branch));
        } else {
            watched.push(path("packed-refs"));
            watched.push(branch.ancestors().find(|d| d.is_dir()).map(PathBuf::from));
        }
    }
    for path in watched.into_iter().flatten().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
