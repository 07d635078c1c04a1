//! External tools some tests need (Python's Graph SDK, kubectl, systemd-analyze...): a
//! test asks [`require_tool`] first and returns at once when it says no. Off CI that is a
//! skip with a note on the terminal; with `CI=true` a missing tool fails the test, because
//! CI installs every tool (`.ci/run`) and a skip there would hide a broken check.

use std::io::Write;
use std::process::{Command, Stdio};

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
/// if !common::require_tool("msgraph-sdk", &["python3", "-c", "import msgraph"],
///     "python3 -m pip install msgraph-sdk==1.65.0") {
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
