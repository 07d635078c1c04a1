//! `audit query`: filters records by caller, device, operation, decision, request ids and
//! time, and prints a table (or JSON Lines). One row per request: outcomes and request
//! records, intents whose outcome never arrived (a crash or a lost answer), and the counts
//! of refusals left out by sampling (`suppressed`).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};

use super::record::{Kind, Record};

/// What to select.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Caller name, exact.
    pub caller: Option<String>,
    /// Device id, case-insensitive.
    pub device: Option<String>,
    /// Operation name, case-insensitive; matches the full name or its action part.
    pub operation: Option<String>,
    /// Decision label (`allowed`, `denied`, ...).
    pub decision: Option<String>,
    /// graphgate's request id (the record's `audit_id`), case-insensitive.
    pub request_id: Option<String>,
    /// Graph's `request-id`, case-insensitive.
    pub graph_request_id: Option<String>,
    /// The initiator (its UPN or object id), case-insensitive; `@domain` matches every
    /// initiator of that domain.
    pub initiator: Option<String>,
    /// Records at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Records before this time.
    pub until: Option<DateTime<Utc>>,
    /// Include intent and start records as separate rows.
    pub all_kinds: bool,
}

/// Parses `2026-11-28` or an RFC 3339 time.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("'{text}' is not a date (YYYY-MM-DD) or an RFC 3339 time"))
}

impl Filter {
    fn matches(&self, r: &Record) -> bool {
        let e = &r.entry;
        let eq = |want: &Option<String>, have: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| have.as_ref().is_some_and(|h| h.eq_ignore_ascii_case(w)))
        };
        let op_ok = self.operation.as_ref().is_none_or(|w| {
            e.operation.as_ref().is_some_and(|h| {
                h.eq_ignore_ascii_case(w)
                    || h.rsplit('.')
                        .next()
                        .is_some_and(|a| a.eq_ignore_ascii_case(w))
            })
        });
        let decision = e.decision.map(|d| d.as_str().to_owned());
        // The person is matched by either id recorded (UPN or object id).
        let initiator_ok = self.initiator.as_ref().is_none_or(|want| {
            [&e.initiator, &e.initiator_oid]
                .into_iter()
                .flatten()
                .any(|who| {
                    let (who, want) = (who.to_ascii_lowercase(), want.to_ascii_lowercase());
                    who == want || (want.starts_with('@') && who.ends_with(&want))
                })
        });
        let time = DateTime::parse_from_rfc3339(&e.time)
            .ok()
            .map(|t| t.with_timezone(&Utc));
        let time_ok = self.since.is_none_or(|s| time.is_some_and(|t| t >= s))
            && self.until.is_none_or(|u| time.is_some_and(|t| t < u));
        self.caller
            .as_ref()
            .is_none_or(|c| e.caller.as_ref() == Some(c))
            && eq(&self.device, &e.device_id)
            && op_ok
            && eq(&self.decision, &decision)
            && eq(&self.request_id, &Some(e.audit_id.clone()))
            && eq(&self.graph_request_id, &e.graph_request_id)
            && initiator_ok
            && time_ok
    }
}

/// Reads every record of `files` (unreadable lines, such as a torn tail, are skipped).
pub fn read_records(files: &[PathBuf]) -> std::io::Result<Vec<Record>> {
    let mut out = Vec::new();
    for file in files {
        let text = String::from_utf8_lossy(&super::files::read(file)?).into_owned();
        out.extend(
            text.lines()
                .filter_map(|l| serde_json::from_str::<Record>(l).ok()),
        );
    }
    out.sort_by_key(|r| r.seq);
    Ok(out)
}

/// The newest completion state of each action (by audit id), from its `completion` records.
pub fn completions(records: &[Record]) -> HashMap<&str, &str> {
    records
        .iter()
        .filter(|r| r.entry.kind == Some(Kind::Completion))
        .filter_map(|r| Some((r.entry.audit_id.as_str(), r.entry.completion.as_deref()?)))
        .collect()
}

/// The rows `filter` selects, in log order. Completion records are rows of their own only
/// with `all_kinds`; otherwise their state shows on the action's row ([`completions`]).
pub fn select(records: &[Record], filter: &Filter) -> Vec<Record> {
    let finished: HashSet<&str> = records
        .iter()
        .filter(|r| r.entry.kind == Some(Kind::Outcome))
        .map(|r| r.entry.audit_id.as_str())
        .collect();
    records
        .iter()
        .filter(|r| match r.entry.kind {
            Some(Kind::Outcome | Kind::Request | Kind::Suppressed) => true,
            Some(Kind::Intent) => filter.all_kinds || !finished.contains(r.entry.audit_id.as_str()),
            _ => filter.all_kinds,
        })
        .filter(|r| filter.matches(r))
        .cloned()
        .collect()
}

/// Prints `rows` as JSON Lines.
pub fn print_json(rows: &[Record], out: &mut dyn Write) -> std::io::Result<()> {
    for r in rows {
        serde_json::to_writer(&mut *out, r)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Prints `rows` as an aligned table, with each action's completion state.
pub fn print_table(
    rows: &[Record],
    completed: &HashMap<&str, &str>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let header = [
        "TIME",
        "CALLER",
        "INITIATOR",
        "OPERATION",
        "DEVICE",
        "DECISION",
        "RULE",
        "STATUS",
        "REASON",
        "COMPLETION",
        "AUDIT ID",
    ];
    let cells: Vec<[String; 11]> = rows.iter().map(|r| row(r, completed)).collect();
    let mut widths = header.map(str::len);
    for c in &cells {
        for (w, v) in widths.iter_mut().zip(c.iter()) {
            *w = (*w).max(v.chars().count());
        }
    }
    let line = |vals: &[&str]| {
        let parts: Vec<String> = vals
            .iter()
            .zip(widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        parts.join("  ").trim_end().to_owned()
    };
    writeln!(out, "{}", line(&header))?;
    for c in &cells {
        let vals: Vec<&str> = c.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&vals))?;
    }
    writeln!(out, "({} record(s))", rows.len())
}

/// A reason in one table cell: at most [`REASON_CELL_CHARS`] characters.
fn reason_cell(reason: &str) -> String {
    match reason.char_indices().nth(REASON_CELL_CHARS) {
        Some((cut, _)) => format!("{}…", &reason[..cut]),
        None => reason.to_owned(),
    }
}

/// Longest reason shown in a table cell; `--json` shows it whole.
const REASON_CELL_CHARS: usize = 40;

fn row(r: &Record, completed: &HashMap<&str, &str>) -> [String; 11] {
    let e = &r.entry;
    let completion = match (e.kind, completed.get(e.audit_id.as_str())) {
        (Some(Kind::Completion), _) => e.completion.clone().unwrap_or_else(|| "-".into()),
        (Some(Kind::Outcome), Some(state)) => (*state).to_owned(),
        _ => "-".into(),
    };
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let status = match (e.kind, e.status, e.upstream_status) {
        (Some(Kind::Intent), _, _) => "sent, no outcome".to_owned(),
        (Some(Kind::Suppressed), _, _) => format!("{} suppressed", e.suppressed.unwrap_or(0)),
        (_, Some(s), Some(u)) => format!("{s} (graph {u})"),
        (_, Some(s), None) => s.to_string(),
        _ => "-".into(),
    };
    let time = e.time.get(..19).unwrap_or(&e.time).replace('T', " ");
    [
        time,
        e.caller
            .clone()
            .or_else(|| e.source.clone())
            .unwrap_or_else(|| "-".into()),
        dash(&e.initiator),
        dash(&e.operation),
        dash(&e.device_id),
        e.decision.map_or("-", |d| d.as_str()).to_owned(),
        dash(&e.rule),
        status,
        e.reason.as_deref().map_or_else(|| "-".into(), reason_cell),
        completion,
        e.audit_id.clone(),
    ]
}
