//! External tools some tests need (Python's Graph SDK, kubectl, systemd-analyze...): a
//! test asks [`require_tool`] first and returns at once when it says no. Off CI that is a
//! skip with a note on the terminal; with `CI=true` a missing tool fails the test, because
//! CI installs every tool (`.ci/run`) and a skip there would hide a broken check. Python
//! tools are found by [`python_tool`]: in `.ci/venv`, where `.ci/run` installs them.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The virtual environment `.ci/run` installs the tests' Python tools into
/// (`.ci/requirements.txt`).
const VENV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/venv");

/// How the tests' Python tools are installed, for skip and failure messages.
pub const PYTHON_INSTALL: &str = "python3 -m venv .ci/venv && .ci/venv/bin/pip install -r .ci/requirements.txt (.ci/run does it)";

/// The program to run for the Python tool `name` (`python3`, `schemathesis`): the one in
/// `.ci/venv/bin` when it is there, else `name` itself, looked up on `PATH`.
pub fn python_tool(name: &str) -> PathBuf {
    let in_venv = PathBuf::from(VENV).join("bin").join(name);
    if in_venv.is_file() {
        in_venv
    } else {
        PathBuf::from(name)
    }
}

/// Whether this run is CI's: `CI=true` (or `CI=1`), as CI services set it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Whether the tool `what` is usable, probed by running `probe` (program and arguments;
/// its output is discarded and only its exit status counts).
///
/// - Usable: `true`.
/// - Missing, with `CI=true`: the test fails (panics) naming the tool and `install`.
/// - Missing elsewhere: `false`, after writing `SKIPPED <test>: ...` straight to the
///   terminal's standard error, which the test harness does not capture, so the skip shows
///   in a plain `cargo test` run next to the test's `ok`.
///
/// ```ignore
/// if !common::require_tool("kubectl", &["kubectl", "version", "--client"],
///     "https://kubernetes.io/docs/tasks/tools/#kubectl") {
///     return;
/// }
/// ```
pub fn require_tool(what: &str, probe: &[&str], install: &str) -> bool {
    let (program, args) = probe.split_first().expect("a probe command");
    let usable = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if usable {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned();
    assert!(
        !in_ci(),
        "{test}: {what} is missing (`{}` failed) and CI=true: install it ({install})",
        probe.join(" ")
    );
    // Not eprintln!: the harness captures that and shows it only for failed tests.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {what} is missing (`{}` failed); install it with: {install} (with CI=true this fails instead)",
        probe.join(" ")
    );
    false
}
