//! The console's two pages: recent privileged actions with filters (`/audit`), and one
//! device's history (`/audit/device/{id}`). Rows come from the index; each shown record is
//! read from disk. Shown: who (caller, and the initiator and reason when the record carries
//! them), what, on which device, the decision, Graph's status and the completion state.
//! Parameters are never shown (secrets are fingerprints in the log, but a page needs none).

use std::fmt::Write;

use serde_json::Value;

use super::html::{esc, input, select, url_part};
use super::index::{self, Hit, Index, Query};
use crate::audit::records::record::AuditDecision;

/// Rows per page.
pub const PAGE_ROWS: usize = 50;

/// The filters a page was asked for, as given (for the form and the "older" link).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Caller name.
    pub caller: Option<String>,
    /// Device id.
    pub device: Option<String>,
    /// Operation.
    pub operation: Option<String>,
    /// Decision label.
    pub decision: Option<String>,
    /// From (as typed).
    pub since: Option<String>,
    /// Until (as typed).
    pub until: Option<String>,
    /// Before this sequence number.
    pub before: Option<u64>,
}

impl Filters {
    /// Reads the filters from a query string; empty values are "any".
    pub fn parse(query: Option<&str>) -> Self {
        let mut f = Filters::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let v = v.trim().to_owned();
            if v.is_empty() {
                continue;
            }
            match k.as_ref() {
                "caller" => f.caller = Some(v),
                "device" => f.device = Some(v),
                "operation" => f.operation = Some(v),
                "decision" => f.decision = Some(v),
                "since" => f.since = Some(v),
                "until" => f.until = Some(v),
                "before" => f.before = v.parse().ok(),
                _ => {}
            }
        }
        f
    }

    /// The index query; an unreadable time is an error naming it.
    pub fn query(&self) -> Result<Query, String> {
        let time = |t: &Option<String>| t.as_deref().map(parse_time).transpose();
        Ok(Query {
            caller: self.caller.clone(),
            device: self.device.clone(),
            operation: self.operation.clone(),
            decision: self.decision.clone(),
            since: time(&self.since)?,
            until: time(&self.until)?,
            before: self.before,
            limit: PAGE_ROWS,
        })
    }

    /// The query string of these filters with `before` set (the next page's link).
    fn older(&self, path: &str, before: u64) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("caller", &self.caller),
            ("device", &self.device),
            ("operation", &self.operation),
            ("decision", &self.decision),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={}", url_part(v)));
            }
        }
        parts.push(format!("before={before}"));
        format!("{path}?{}", parts.join("&amp;"))
    }
}

/// `2026-11-28`, `2026-11-28T10:00` (a browser's datetime-local) or RFC 3339, as Unix seconds.
fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M") {
        return Ok(t.and_utc().timestamp());
    }
    crate::audit::read::query::parse_time(text).map(|t| t.timestamp())
}

/// The list page's body: the filter form, the table, the link to older rows.
pub fn list(idx: &Index, f: &Filters) -> String {
    let (callers, ops, _) = idx.names();
    let decisions: Vec<String> = AuditDecision::ALL
        .iter()
        .map(|d| d.as_str().to_owned())
        .collect();
    let mut out = String::from(r#"<form id="filters" method="get" action="/audit">"#);
    out.push_str(&select("caller", "Caller", &callers, f.caller.as_deref()));
    out.push_str(&input(
        "device",
        "Device",
        "search",
        f.device.as_deref(),
        "managed device id",
    ));
    out.push_str(&select(
        "operation",
        "Operation",
        &ops,
        f.operation.as_deref(),
    ));
    out.push_str(&select(
        "decision",
        "Decision",
        &decisions,
        f.decision.as_deref(),
    ));
    out.push_str(&input(
        "since",
        "From",
        "text",
        f.since.as_deref(),
        "2026-11-28",
    ));
    out.push_str(&input(
        "until",
        "Until",
        "text",
        f.until.as_deref(),
        "2026-11-29T12:00",
    ));
    out.push_str(r#"<button type="submit">Filter</button> <a href="/audit">Clear</a></form>"#);
    out.push_str(&results(idx, f, "/audit"));
    out
}

/// One device's history.
pub fn device(idx: &Index, id: &str, f: &Filters) -> String {
    let f = Filters {
        device: Some(id.to_owned()),
        ..f.clone()
    };
    let mut out = format!(
        r#"<h2>Device <code id="device-id">{}</code></h2><p><a href="/audit">All actions</a></p>"#,
        esc(id)
    );
    out.push_str(&results(
        idx,
        &f,
        &format!("/audit/device/{}", url_part(id)),
    ));
    out
}

fn results(idx: &Index, f: &Filters, path: &str) -> String {
    let q = match f.query() {
        Ok(q) => q,
        Err(e) => return format!(r#"<p class="error" id="filter-error">{}</p>"#, esc(&e)),
    };
    let (hits, older) = idx.select(&q);
    let mut out = String::from(
        r#"<table id="actions"><thead><tr><th>Time (UTC)</th><th>Caller</th><th>Operation</th><th>Device</th><th>Decision</th><th>Status</th><th>Completion</th><th>Audit id</th></tr></thead><tbody>"#,
    );
    for hit in &hits {
        out.push_str(&row(hit));
    }
    out.push_str("</tbody></table>");
    if hits.is_empty() {
        out.push_str(r#"<p id="empty">No records match.</p>"#);
    }
    if let Some(before) = older {
        let _ = write!(
            out,
            r#"<nav><a id="older" href="{}">Older</a></nav>"#,
            f.older(path, before)
        );
    }
    out
}

fn row(hit: &Hit) -> String {
    let Some(v) = read_value(hit) else {
        return format!(
            r#"<tr><td colspan="8">seq {}: unreadable record</td></tr>"#,
            hit.seq
        );
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    let time = s("time").get(..19).unwrap_or(s("time")).replace('T', " ");
    let device = s("device_id");
    let device_cell = match device {
        "" => "-".to_owned(),
        d => format!(
            r#"<a class="device" href="/audit/device/{}">{}</a>"#,
            url_part(d),
            esc(d)
        ),
    };
    let decision = s("decision");
    format!(
        r#"<tr data-seq="{seq}" class="{decision}"><td><time datetime="{t}">{time}</time></td><td>{who}</td><td>{op}</td><td>{device_cell}</td><td class="decision">{dec}</td><td>{status}</td><td class="completion">{completion}</td><td><code>{id}</code></td></tr>"#,
        seq = hit.seq,
        decision = esc(decision),
        t = esc(s("time")),
        time = esc(&time),
        who = who(&v),
        op = operation(s("operation")),
        dec = esc(if decision.is_empty() { "-" } else { decision }),
        status = status(&v),
        completion = completion(&v, hit),
        id = esc(s("audit_id")),
    )
}

/// The operation's action (its full name on hover): the table stays narrow.
fn operation(name: &str) -> String {
    let short = name.rsplit('.').next().unwrap_or(name);
    format!(r#"<span title="{}">{}</span>"#, esc(name), esc(short))
}

fn read_value(hit: &Hit) -> Option<Value> {
    let bytes = crate::audit::store::follow::read_at(&hit.file, hit.offset).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The caller (or the source of an unauthenticated request), with the initiator and reason
/// when the record carries them.
fn who(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    let mut out = esc(s("caller").or(s("source")).unwrap_or("-"));
    if let Some(initiator) = s("initiator") {
        let _ = write!(
            out,
            r#"<br><span class="initiator">for {}</span>"#,
            esc(initiator)
        );
    }
    if let Some(reason) = s("reason") {
        let _ = write!(out, r#"<br><span class="reason">{}</span>"#, esc(reason));
    }
    out
}

fn status(v: &Value) -> String {
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    match (
        v.get("kind").and_then(Value::as_str),
        n("status"),
        n("upstream_status"),
    ) {
        (Some("intent"), _, _) => "sent, no outcome".to_owned(),
        (Some("suppressed"), _, _) => format!("{} suppressed", n("suppressed").unwrap_or(0)),
        (_, Some(s), Some(u)) => format!("{s} (Graph {u})"),
        (_, Some(s), None) => s.to_string(),
        _ => "-".to_owned(),
    }
}

fn completion(v: &Value, hit: &Hit) -> String {
    match hit.completion {
        Some(state) => esc(state),
        None if v
            .get("upstream_status")
            .and_then(Value::as_u64)
            .is_some_and(|s| (200..300).contains(&s)) =>
        {
            "not reconciled".to_owned()
        }
        None => "-".to_owned(),
    }
}

/// The header's chain and checkpoint status.
pub fn status_panel(idx: &Index, checkpoint: &str, caught_up: bool) -> String {
    let chain = idx.chain();
    let devices = match idx.names().2 {
        (n, false) => crate::words::count(n, "device").to_string(),
        (n, true) => format!("more than {}", crate::words::count(n, "device")),
    };
    let verdict = match &chain.broken {
        Some(b) => format!(
            r#"<span class="bad">BROKEN</span> after seq {}: {}"#,
            chain.verified_to,
            esc(b)
        ),
        None if !caught_up && chain.verified_to == 0 => {
            "indexing the log (reload to see it)".to_owned()
        }
        None if !caught_up => format!(
            "indexing the log, verified seq {}..={} so far (reload to see more)",
            chain.first, chain.verified_to
        ),
        None if chain.verified_to == 0 => "no records yet".to_owned(),
        None => format!(
            r#"<span class="good">intact</span>, verified seq {}..={}"#,
            chain.first, chain.verified_to
        ),
    };
    format!(
        r#"<section id="status"><p id="chain-status">Hash chain: {verdict}</p><p id="checkpoint-status">{checkpoint}</p><p class="counts">{} indexed, {}</p></section>"#,
        crate::words::count(idx.len(), "record"),
        devices
    )
}

/// The state labels a completion can show.
pub fn completion_states() -> &'static [&'static str] {
    &index::COMPLETIONS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initiator_and_reason_show_when_present_and_are_escaped() {
        let v = serde_json::json!({
            "caller": "ops-portal", "initiator": "alice@contoso.com",
            "reason": "<b>INC-42</b> lost device"
        });
        let out = who(&v);
        assert!(
            out.contains("ops-portal") && out.contains("for alice@contoso.com"),
            "{out}"
        );
        assert!(
            out.contains("&lt;b&gt;INC-42&lt;/b&gt; lost device"),
            "{out}"
        );
        let bare = who(&serde_json::json!({"source": "10.0.0.1:5000"}));
        assert_eq!(bare, "10.0.0.1:5000");
        let f = Filters::parse(Some("caller=a+b&device=&before=12&since=2026-11-28T10:00"));
        assert_eq!(f.caller.as_deref(), Some("a b"));
        assert_eq!(f.device, None);
        let q = f.query().unwrap();
        assert_eq!(q.before, Some(12));
        assert_eq!(q.since, Some(1_795_860_000));
        assert!(Filters::parse(Some("until=yesterday")).query().is_err());
    }
}
