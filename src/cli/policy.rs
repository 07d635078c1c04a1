//! `graphgate policy`: check a file, explain a decision, run fixtures, hash an API key, and
//! the text each prints. The decisions are the library's (the gateway's own functions).

use std::fmt::Write;
use std::process::ExitCode;

use graphgate::gateway::explain::{self, DEFAULT_DENY};
use graphgate::identity::stated::Statement;
use graphgate::policy::{Facts, Mismatch, Missing, Policy, Test};

use graphgate::words::count;

use super::Fallible;
use super::args::PolicyCommand;

/// Runs one `policy` subcommand.
pub fn run(cmd: PolicyCommand) -> Fallible<ExitCode> {
    match cmd {
        PolicyCommand::Check { file } => Ok(policy_check(&file)),
        PolicyCommand::Explain {
            caller,
            request,
            body,
            initiator,
            reason,
            policy,
        } => {
            let said = Statement {
                initiator: initiator.as_deref(),
                reason: reason.as_deref(),
            };
            Ok(policy_explain(
                &policy,
                &caller,
                &request,
                body.as_deref(),
                said,
            ))
        }
        PolicyCommand::Test { file, policy } => Ok(policy_test(&file, policy.as_deref())),
        PolicyCommand::HashKey => policy_hash_key(),
    }
}

fn policy_check(file: &std::path::Path) -> ExitCode {
    match Policy::load(file) {
        Ok(p) => {
            println!(
                "{}: OK ({}, {}, policy hash {})",
                file.display(),
                count(p.callers.len(), "caller"),
                count(p.rules.len(), "rule"),
                p.hash
            );
            for rule in &p.rules {
                if let Some(approval) = &rule.approval {
                    let glass = match rule.break_glass {
                        true => "; break glass allowed",
                        false => "",
                    };
                    println!(
                        "rule '{}' holds its requests for approval: {}{glass}",
                        rule.name,
                        approval.describe()
                    );
                }
            }
            for warning in &p.warnings {
                eprintln!("warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Exit 0 allow, 1 deny, 2 when there is nothing to decide (bad policy, request or body).
fn policy_explain(
    policy: &std::path::Path,
    caller: &str,
    request: &str,
    body: Option<&std::path::Path>,
    said: Statement<'_>,
) -> ExitCode {
    let bad_input = |e: &dyn std::fmt::Display| {
        eprintln!("{e}");
        ExitCode::from(2)
    };
    let policy = match Policy::load(policy) {
        Ok(p) => p,
        Err(e) => return bad_input(&e),
    };
    // The file's bytes, as the gateway would receive them: the same strict parsing.
    let body = match body.map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))) {
        Some(Err(e)) => return bad_input(&e),
        Some(Ok(bytes)) => Some(bytes),
        None => None,
    };
    match explanation(&policy, caller, request, body.as_deref(), said) {
        Ok((allowed, text)) => {
            print!("{text}");
            if allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => bad_input(&e),
    }
}

fn policy_test(file: &std::path::Path, policy: Option<&std::path::Path>) -> ExitCode {
    match explain::run_fixtures(file, policy) {
        Ok(report) => {
            for line in &report.lines {
                println!("{line}");
            }
            println!("{} passed, {} failed", report.passed, report.failed);
            if report.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// Hashes the first line of standard input. A key the gateway could never match is refused:
/// an empty one, and one with leading or trailing whitespace (the gateway trims the key it
/// reads from `Authorization: Bearer`), since either would print a valid-looking hash.
fn policy_hash_key() -> Fallible<ExitCode> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let key = line.trim_end_matches(['\r', '\n']);
    let problem = if key.trim().is_empty() {
        Some("no API key on standard input")
    } else if key.trim() != key {
        Some(
            "the API key has leading or trailing whitespace, which no Authorization header can carry",
        )
    } else {
        None
    };
    if let Some(problem) = problem {
        eprintln!("graphgate: {problem}; use: printf '%s' \"$KEY\" | graphgate policy hash-key");
        return Ok(ExitCode::FAILURE);
    }
    println!("{}", graphgate::identity::api_key_sha256(key));
    Ok(ExitCode::SUCCESS)
}

/// The text `policy explain` prints.
fn explanation(
    policy: &Policy,
    caller: &str,
    request: &str,
    body: Option<&[u8]>,
    said: Statement<'_>,
) -> Result<(bool, String), explain::ExplainError> {
    let (eval, index) = explain::evaluate(policy, caller, request, body, said)?;
    let mut out = String::new();
    let d = &eval.judgement.decision;
    let verdict = if eval.allowed() { "allow" } else { "deny" };
    let _ = writeln!(out, "decision: {verdict}");
    let _ = writeln!(out, "rule: {}", d.rule_name().unwrap_or(DEFAULT_DENY));
    let missing = eval.judgement.missing;
    if !missing.is_none() {
        let _ = writeln!(
            out,
            "missing: {} (the rule requires it; the gateway answers 400 invalidRequest)",
            missing.names().join(", ")
        );
    }
    if let Some(refusal) = &eval.forbidden {
        let _ = writeln!(out, "answer: 403 accessDenied: {refusal}");
    }
    if let Some((approval, break_glass)) = eval.approval.as_ref().filter(|_| eval.allowed()) {
        let _ = writeln!(out, "approval: {}", approval.describe());
        let _ = writeln!(
            out,
            "answer: 202 Accepted: held for approval (GET /api/v1/approvals/{{id}}); nothing is sent until it is approved"
        );
        if *break_glass {
            let _ = writeln!(
                out,
                "break glass: allowed (X-Graphgate-Break-Glass: <reason> runs it at once, for one device, flagged, reviewed afterwards)"
            );
        }
    }
    if let Some((who, source)) = &eval.stated.initiator {
        let _ = writeln!(out, "initiator: {} ({})", who.primary(), source.as_str());
    }
    if let Some(reason) = &eval.stated.reason {
        let _ = writeln!(out, "reason: {reason}");
    }
    if let Some(s) = d.shadow {
        let _ = writeln!(
            out,
            "shadow: rule '{}' would {}",
            s.rule,
            if s.allowed { "allow" } else { "deny" }
        );
    }
    let _ = writeln!(
        out,
        "operation: {} ({}) on device {}",
        eval.target.op.name,
        eval.target.version.as_str(),
        eval.target.device_id
    );
    let _ = writeln!(out, "tier: {}", eval.target.op.tier.as_str());
    if let Some(bulk) = &eval.bulk {
        // The rules below are about the bulk operation itself; each device was decided as
        // the operation its actionName runs.
        let _ = writeln!(
            out,
            "bulk: {} on {}, decided device by device; refused: {}",
            bulk.operation,
            count(bulk.devices, "device"),
            match bulk.refused.is_empty() {
                true => "none".to_owned(),
                false => bulk.refused.join(", "),
            }
        );
    }
    let facts = Facts::of(index, &eval.target, &eval.params, eval.stated.person());
    let explanation = policy.explain(&facts);
    if explanation.rules.is_empty() {
        let _ = writeln!(out, "no rule names caller '{caller}'");
    } else {
        let _ = writeln!(out, "rules naming caller '{caller}':");
    }
    for (rule, result) in &explanation.rules {
        let effect = format!(
            "{:?}{}",
            rule.effect,
            if rule.mode == graphgate::policy::Mode::Shadow {
                ", shadow"
            } else {
                ""
            }
        )
        .to_lowercase();
        let why = match result {
            Ok(()) => "matches".to_owned(),
            Err(m) => mismatch_text(m, &facts),
        };
        let why = match requirement(rule) {
            Some(needs) => format!("{why}; requires {needs}"),
            None => why,
        };
        let _ = writeln!(out, "  - {} ({effect}): {why}", rule.name);
    }
    Ok((eval.allowed(), out))
}

/// What a rule's `require` asks for, in words.
fn requirement(rule: &graphgate::policy::Rule) -> Option<String> {
    let all = Missing {
        initiator: rule.require.initiator,
        reason: rule.require.reason,
    };
    (!all.is_none()).then(|| all.names().join(" and "))
}

fn mismatch_text(m: &Mismatch, f: &Facts<'_>) -> String {
    match m {
        Mismatch::Operation => format!("does not cover {}", f.op.name),
        Mismatch::Initiator => match f.initiator {
            Some(who) => format!("does not cover initiator {}", who.primary()),
            None => "covers listed initiators only, and none is stated".to_owned(),
        },
        Mismatch::Version => format!("does not cover API version {}", f.version.as_str()),
        Mismatch::Device => format!("does not list device {}", f.device),
        Mismatch::Condition(c) => {
            let test = match &c.test {
                Test::EqualsStr(s) => format!("equals {s:?}"),
                Test::EqualsBool(b) => format!("equals {b}"),
                Test::OneOf(l) => format!("one of {l:?}"),
                Test::Prefix(p) => format!("starts with {p:?}"),
                Test::Suffix(s) => format!("ends with {s:?}"),
                Test::Present(true) => "present".to_owned(),
                Test::Present(false) => "absent".to_owned(),
            };
            format!("condition '{} {test}' does not hold", c.param)
        }
    }
}
