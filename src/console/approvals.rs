//! The console's approvals pages (read-only): `/audit/approvals` lists the open approvals
//! (pending, approved, running, break glass to review) and the decided ones, each with its
//! progress and outcome; `/audit/approvals/{id}` shows one whole: the request's facts, its
//! groups, every review, the outcome and Intune's Multi Admin Approval hold, if any.
//! Decisions are never taken here: reviewers use the approval API as themselves. Every value
//! goes through [`esc`]; states are shown by name, whatever they are.

use std::fmt::Write;

use super::html::esc;
use crate::approval::Resource;

/// The list page's body.
pub fn list(all: &[Resource]) -> String {
    let (open, decided): (Vec<&Resource>, Vec<&Resource>) =
        all.iter().partition(|a| !a.state.is_final());
    let mut out = String::from(
        r#"<h2>Approvals</h2><p>Read-only: reviewers decide through the approval API (<code>graphgate approvals</code>) as themselves.</p>"#,
    );
    for (id, title, items) in [("open", "Open", &open), ("decided", "Decided", &decided)] {
        let _ = write!(
            out,
            r#"<h3>{title}</h3><table id="{id}-approvals"><thead><tr><th>Created (UTC)</th><th>State</th><th>Operation</th><th>Devices</th><th>Requester</th><th>Reason</th><th>Approvals</th><th>Reviews</th><th>Outcome</th></tr></thead><tbody>"#
        );
        for a in items.iter() {
            out.push_str(&row(a));
        }
        out.push_str("</tbody></table>");
        if items.is_empty() {
            let _ = write!(out, r#"<p id="no-{id}-approvals">None.</p>"#);
        }
    }
    out
}

fn row(a: &Resource) -> String {
    let reviews: Vec<String> = a
        .reviews
        .iter()
        .map(|r| format!("{} by {}: {}", verdict(&r.decision), r.reviewer, r.reason))
        .collect();
    format!(
        r#"<tr class="approval {state}" data-id="{id}"><td><a href="/audit/approvals/{id}">{created}</a></td><td class="state">{state}</td><td>{op}</td><td>{devices}</td><td>{who}</td><td class="reason">{reason}</td><td class="progress">{progress}</td><td class="reviews">{reviews}</td><td class="outcome">{outcome}</td></tr>"#,
        state = esc(a.state.as_str()),
        id = esc(&a.id),
        created = esc(&short_time(&a.created)),
        op = esc(&a.operation),
        devices = esc(&devices(&a.devices)),
        who = esc(&requester(a)),
        reason = esc(a.reason.as_deref().unwrap_or("-")),
        progress = esc(&progress(a)),
        reviews = reviews
            .iter()
            .map(|r| esc(r))
            .collect::<Vec<_>>()
            .join("<br>"),
        outcome = esc(&outcome(a)),
    )
}

/// One approval's page body.
pub fn one(a: &Resource) -> String {
    let mut out = format!(
        r#"<h2>Approval <code id="approval-id">{}</code></h2><p><a href="/audit/approvals">All approvals</a></p><dl id="facts">"#,
        esc(&a.id)
    );
    let mut fact = |name: &str, value: &str| {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(name), esc(value));
    };
    fact("State", a.state.as_str());
    fact(
        "Operation",
        &format!(
            "{} ({} {}, tier {})",
            a.operation, a.api_version, a.method, a.tier
        ),
    );
    fact("Path", &a.path);
    fact("Devices", &a.devices.join(", "));
    fact("Parameters", &a.parameters.to_string());
    fact("Requester", &requester(a));
    fact("Reason", a.reason.as_deref().unwrap_or("-"));
    fact("Rule", &a.rule);
    fact("Created", &a.created);
    fact("Expires", &a.expires);
    if let Some(by) = &a.execute_by {
        fact("Runs by", by);
    }
    if let Some(bg) = &a.break_glass {
        fact("Break glass", &bg.reason);
    }
    fact("request_sha256", &a.request_sha256);
    fact("policy_sha256", &a.policy_sha256);
    fact("Outcome", &outcome(a));
    out.push_str("</dl><h3>Groups</h3><table id=\"groups\"><thead><tr><th>Approvers</th><th>Required</th><th>Counted</th></tr></thead><tbody>");
    for g in &a.groups {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&g.approvers.join(", ")),
            g.required,
            esc(&g.approvals.join(", "))
        );
    }
    out.push_str("</tbody></table><h3>Reviews</h3><table id=\"reviews\"><thead><tr><th>Time</th><th>Decision</th><th>Reviewer</th><th>Person</th><th>Reason</th><th>For this request</th></tr></thead><tbody>");
    for r in &a.reviews {
        let same = if r.request_sha256 == a.request_sha256 {
            "yes"
        } else {
            "no (another request_sha256)"
        };
        let _ = write!(
            out,
            r#"<tr class="review"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="reason">{}</td><td>{same}</td></tr>"#,
            esc(&r.time),
            esc(verdict(&r.decision)),
            esc(&r.reviewer),
            esc(r.person.as_deref().unwrap_or("-")),
            esc(&r.reason),
        );
    }
    out.push_str("</tbody></table>");
    if a.reviews.is_empty() {
        out.push_str(r#"<p id="no-reviews">No reviews yet.</p>"#);
    }
    if let Some(maa) = &a.maa {
        out.push_str(&intune_hold(maa));
    }
    out
}

/// Intune's Multi Admin Approval hold of the request: its code, Intune's status as last
/// read, and how graphgate follows it.
fn intune_hold(maa: &crate::approval::maa::Maa) -> String {
    let mut out = String::from(
        r#"<h3>Intune Multi Admin Approval</h3><p>A person approves or rejects the request in Intune; graphgate reads its status and sends the request again once, when approved.</p><dl id="maa">"#,
    );
    let mut fact = |name: &str, value: &str| {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(name), esc(value));
    };
    fact("Approval code", &maa.code);
    fact("Intune status", &maa.status);
    fact("Expires", &maa.expires);
    let held = match maa.attached {
        true => format!(
            "{} (joined the request already pending in Intune)",
            maa.held_status
        ),
        false => maa.held_status.to_string(),
    };
    fact("Graph answered", &held);
    fact("Status reads", &maa.polls.to_string());
    fact("Last read failed", maa.last_error.as_deref().unwrap_or("-"));
    fact("Sent again", if maa.resent { "yes" } else { "no" });
    out.push_str("</dl>");
    out
}

fn verdict(v: &crate::approval::model::Verdict) -> &'static str {
    use crate::approval::model::Verdict;
    match v {
        Verdict::Approve => "approve",
        Verdict::Reject => "reject",
        Verdict::Review => "review",
    }
}

fn requester(a: &Resource) -> String {
    match &a.initiator {
        Some(person) => format!("{} for {person}", a.caller),
        None => a.caller.clone(),
    }
}

fn devices(devices: &[String]) -> String {
    match devices {
        [one] => one.clone(),
        many => format!("{} devices", many.len()),
    }
}

fn progress(a: &Resource) -> String {
    a.groups
        .iter()
        .map(|g| format!("{}/{}", g.approvals.len(), g.required))
        .collect::<Vec<_>>()
        .join(" ")
}

fn outcome(a: &Resource) -> String {
    match &a.outcome {
        None => "-".into(),
        Some(o) => {
            let mut s = o.status.to_string();
            if let Some(code) = &o.error_code {
                s.push(' ');
                s.push_str(code);
            }
            if let Some(m) = &o.message {
                s.push_str(": ");
                s.push_str(m);
            }
            s
        }
    }
}

fn short_time(rfc3339: &str) -> String {
    rfc3339.get(..19).unwrap_or(rfc3339).replace('T', " ")
}
