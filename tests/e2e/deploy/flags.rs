//! Every flag of `graphgate serve` (global flags included) has an environment variable named
//! after it (read from the binary's own `serve --help`: clap renders `[env: NAME=]` from the
//! definitions), so a new flag without a variable fails here. The command-line reference
//! (docs/reference/configuration.md) is generated from the same definitions.

use std::collections::BTreeMap;

use super::launch::BIN;

/// `--emulator` has no variable on purpose: no environment can turn a production gateway
/// into a demo that answers 204 without reaching Microsoft (docs/configuration.md).
const COMMAND_LINE_ONLY: &[&str] = &[
    "--emulator",
    "--check-config",
    "--print-policy",
    "--help",
    "--version",
];

/// Each long flag in `help` (clap's long help) with its help text.
fn flag_blocks(help: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        // Flag lines are indented by 2 (`-h, --help`) or 6 (`--listen <LISTEN>`), their
        // help text by 10.
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if (2..=6).contains(&indent) && trimmed.starts_with('-') && trimmed.contains("--") {
            let flag = trimmed[trimmed.find("--").unwrap()..]
                .split([' ', '=', '[', '<'])
                .next()
                .unwrap()
                .to_owned();
            current = Some(flag);
        }
        if let Some(flag) = &current {
            let block = out.entry(flag.clone()).or_default();
            block.push_str(line);
            block.push('\n');
        }
    }
    out
}

/// The value of a `[name: VALUE]` note (`env`, `default`) in a flag's help text.
fn note(block: &str, name: &str) -> Option<String> {
    let at = block.find(&format!("[{name}: "))? + name.len() + 3;
    let value = block[at..].split(']').next()?;
    Some(value.trim_end_matches('=').to_owned())
}

/// Every flag of `graphgate serve` with its environment variable, if it has one.
fn serve_flags() -> BTreeMap<String, Option<String>> {
    serve_help()
        .into_iter()
        .map(|(flag, block)| {
            let env = note(&block, "env");
            (flag, env)
        })
        .collect()
}

fn serve_help() -> BTreeMap<String, String> {
    let out = std::process::Command::new(BIN)
        .args(["serve", "--help"])
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success());
    let flags = flag_blocks(&String::from_utf8(out.stdout).unwrap());
    assert!(
        flags.len() > 20 && flags.contains_key("--log-format"),
        "{flags:?}"
    );
    flags
}

/// The default of a `serve` flag, as `--help` shows it.
pub fn serve_default(flag: &str) -> Option<String> {
    note(serve_help().get(flag)?, "default")
}

/// `GRAPHGATE_` and the flag in upper snake case: `--max-body-bytes` → `GRAPHGATE_MAX_BODY_BYTES`.
fn expected_env(flag: &str) -> String {
    format!(
        "GRAPHGATE_{}",
        flag.trim_start_matches("--")
            .replace('-', "_")
            .to_uppercase()
    )
}

#[test]
fn every_serve_flag_has_an_environment_variable_named_after_it() {
    let missing: Vec<String> = serve_flags()
        .into_iter()
        .filter(|(flag, _)| !COMMAND_LINE_ONLY.contains(&flag.as_str()))
        .filter(|(flag, env)| env.as_deref() != Some(expected_env(flag).as_str()))
        .map(|(flag, env)| format!("{flag} (has {env:?}, wants {})", expected_env(&flag)))
        .collect();
    assert!(
        missing.is_empty(),
        "add `env = ...` in src/cli/args.rs: {missing:#?}"
    );
}

#[test]
fn a_variable_sets_its_flag_and_is_checked_like_it() {
    for (var, flag) in [
        (
            "GRAPHGATE_ALLOW_INSECURE_LISTENER",
            "--allow-insecure-listener",
        ),
        ("GRAPHGATE_MAX_BODY_BYTES", "--max-body-bytes"),
        ("GRAPHGATE_LOG_FORMAT", "--log-format"),
    ] {
        let out = std::process::Command::new(BIN)
            .arg("serve")
            .env_clear()
            .env(var, "not-a-value")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid value 'not-a-value' for '{flag}")),
            "{var}: {stderr}"
        );
    }
}
