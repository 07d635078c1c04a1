//! `audit query`: filters records by caller, device, operation, decision, request ids and
//! time, and prints a table (or JSON Lines). One row per request: outcomes and request
//! records, intents whose outcome never arrived (a crash or a lost answer), the counts
//! of refusals left out by sampling (`suppressed`), and each change of an approval.

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
    /// Device id or its first characters (a table's short form), case-insensitive; a bulk
    /// record matches when it lists the device.
    pub device: Option<String>,
    /// Operation name, case-insensitive; matches the full name or its action part.
    pub operation: Option<String>,
    /// Decision label (`allowed`, `denied`, ...).
    pub decision: Option<String>,
    /// graphgate's request id (the record's `audit_id`) or its first characters,
    /// case-insensitive.
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
        let starts = |want: &str, have: &str| {
            have.get(..want.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(want))
        };
        let device_ok = self.device.as_deref().is_none_or(|want| {
            e.device_id
                .iter()
                .chain(e.device_ids.iter().flatten())
                .any(|d| starts(want, d))
        });
        // A table's short id (or longer) matches as a prefix; anything shorter exactly.
        let request_ok = self
            .request_id
            .as_deref()
            .is_none_or(|want| match want.len() {
                n if n >= SHORT_ID => starts(want, &e.audit_id),
                _ => want.eq_ignore_ascii_case(&e.audit_id),
            });
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
            && device_ok
            && op_ok
            && eq(&self.decision, &decision)
            && request_ok
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

/// What later records say of earlier ones: each action's newest completion state (from its
/// `completion` records) and which intents have their outcome.
#[derive(Debug, Default)]
pub struct Outcomes<'a> {
    completions: HashMap<&'a str, &'a str>,
    finished: HashSet<&'a str>,
}

/// What `records` say of each action's outcome and completion.
pub fn outcomes(records: &[Record]) -> Outcomes<'_> {
    let mut out = Outcomes::default();
    for r in records {
        let id = r.entry.audit_id.as_str();
        match r.entry.kind {
            Some(Kind::Completion) => {
                if let Some(state) = r.entry.completion.as_deref() {
                    out.completions.insert(id, state);
                }
            }
            Some(Kind::Outcome) => {
                out.finished.insert(id);
            }
            _ => {}
        }
    }
    out
}

/// The rows `filter` selects, in log order. Completion records are rows of their own only
/// with `all_kinds`; otherwise their state shows on the action's row ([`outcomes`]).
pub fn select(records: &[Record], filter: &Filter) -> Vec<Record> {
    let finished: HashSet<&str> = records
        .iter()
        .filter(|r| r.entry.kind == Some(Kind::Outcome))
        .map(|r| r.entry.audit_id.as_str())
        .collect();
    records
        .iter()
        .filter(|r| match r.entry.kind {
            Some(Kind::Outcome | Kind::Request | Kind::Suppressed | Kind::Approval) => true,
            Some(Kind::Intent) => filter.all_kinds || !finished.contains(r.entry.audit_id.as_str()),
            _ => filter.all_kinds,
        })
        .filter(|r| filter.matches(r))
        .cloned()
        .collect()
}

/// The rows `filter` selects among records appended since the last look (`--follow`): as
/// [`select`], but a completion is a row of its own (the action's row is printed already)
/// and an intent waits for its outcome (shown with `all_kinds`).
pub fn select_new(records: &[Record], filter: &Filter) -> Vec<Record> {
    records
        .iter()
        .filter(|r| match r.entry.kind {
            Some(
                Kind::Outcome
                | Kind::Request
                | Kind::Suppressed
                | Kind::Completion
                | Kind::Approval,
            ) => true,
            _ => filter.all_kinds,
        })
        .filter(|r| filter.matches(r))
        .cloned()
        .collect()
}

/// Records parsed from lines a follower read (lines that are not records are skipped).
pub fn parse_lines<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Vec<Record> {
    lines
        .into_iter()
        .filter_map(|l| serde_json::from_slice::<Record>(l).ok())
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

/// How `audit query` lays rows out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The columns that matter most, each capped so a line fits [`TABLE_COLUMNS`]: long
    /// cells end in `…`, ids are shortened to their first 8 characters (the `--device` and
    /// `--request-id` filters take them so).
    Table,
    /// Every column, nothing cut.
    Wide,
}

/// The width a table line fits.
pub const TABLE_COLUMNS: usize = 120;

/// How many characters of an id a table shows (a prefix the filters accept).
pub const SHORT_ID: usize = 8;

/// The table's columns and the most characters each may take (with two spaces between
/// columns they add up to [`TABLE_COLUMNS`]).
const TABLE: [(&str, usize); 8] = [
    ("TIME", 19),
    ("KIND", 10),
    ("CALLER", 16),
    ("OPERATION", 19),
    ("DEVICE", SHORT_ID),
    ("DECISION", 15),
    ("STATUS", 11),
    ("ID", SHORT_ID),
];

/// The wide layout's columns.
const WIDE: [&str; 12] = [
    "TIME",
    "KIND",
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

/// Rows laid out in aligned columns.
#[derive(Debug, Clone)]
pub struct Table {
    layout: Layout,
    widths: Vec<usize>,
}

impl Table {
    /// Columns as wide as these rows need (a table's capped).
    pub fn fitted(layout: Layout, rows: &[Vec<String>]) -> Table {
        let mut table = Table {
            layout,
            widths: headers(layout).iter().map(|h| h.chars().count()).collect(),
        };
        for row in rows {
            for (w, cell) in table.widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        if layout == Layout::Table {
            for (w, (_, cap)) in table.widths.iter_mut().zip(TABLE) {
                *w = (*w).min(cap);
            }
        }
        table
    }

    /// Columns fixed before the rows are known (`--follow`): a table's caps, the headers'
    /// widths for a wide one (its longer cells push the line on).
    pub fn fixed(layout: Layout) -> Table {
        let widths = match layout {
            Layout::Table => TABLE.iter().map(|(_, cap)| *cap).collect(),
            Layout::Wide => WIDE.iter().map(|h| h.len()).collect(),
        };
        Table { layout, widths }
    }

    /// The header line.
    pub fn header(&self) -> String {
        let cells: Vec<String> = headers(self.layout)
            .iter()
            .map(|h| (*h).to_owned())
            .collect();
        self.line(&cells)
    }

    /// One row's line.
    pub fn line(&self, cells: &[String]) -> String {
        let parts: Vec<String> = cells
            .iter()
            .zip(&self.widths)
            .map(|(cell, w)| match self.layout {
                Layout::Table => format!("{:<w$}", cut(cell, *w)),
                Layout::Wide => format!("{cell:<w$}"),
            })
            .collect();
        parts.join("  ").trim_end().to_owned()
    }

    /// A record's cells, in this table's columns.
    pub fn cells(&self, r: &Record, later: &Outcomes<'_>) -> Vec<String> {
        cells(r, later, self.layout)
    }
}

fn headers(layout: Layout) -> Vec<&'static str> {
    match layout {
        Layout::Table => TABLE.iter().map(|(h, _)| *h).collect(),
        Layout::Wide => WIDE.to_vec(),
    }
}

/// `text` in at most `width` characters: cut short with `…` when longer.
fn cut(text: &str, width: usize) -> String {
    match text.char_indices().nth(width.saturating_sub(1)) {
        Some((at, _)) if text.chars().count() > width => format!("{}…", &text[..at]),
        _ => text.to_owned(),
    }
}

/// Prints `rows` (the newest `shown` of `total` selected) as a table, with each action's
/// completion state.
pub fn print_table(
    rows: &[Record],
    total: usize,
    later: &Outcomes<'_>,
    layout: Layout,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let cells: Vec<Vec<String>> = rows.iter().map(|r| cells(r, later, layout)).collect();
    let table = Table::fitted(layout, &cells);
    writeln!(out, "{}", table.header())?;
    for c in &cells {
        writeln!(out, "{}", table.line(c))?;
    }
    match total > rows.len() {
        true => writeln!(
            out,
            "({} shown, the newest, of {}; --limit N shows more, --limit 0 all)",
            rows.len(),
            crate::words::count(total, "row")
        ),
        false => writeln!(out, "({})", crate::words::count(rows.len(), "row")),
    }
}

/// A record's cells in `layout`'s columns. KIND is the record's own `kind`, whatever kinds
/// the log holds.
fn cells(r: &Record, later: &Outcomes<'_>, layout: Layout) -> Vec<String> {
    let e = &r.entry;
    let finished = later.finished.contains(e.audit_id.as_str());
    let completion = match (e.kind, later.completions.get(e.audit_id.as_str())) {
        (Some(Kind::Completion), _) => e.completion.clone(),
        (Some(Kind::Outcome), Some(state)) => Some((*state).to_owned()),
        _ => None,
    };
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let time = e.time.get(..19).unwrap_or(&e.time).replace('T', " ");
    let kind = e.kind.map_or("-", Kind::as_str).to_owned();
    let caller = e
        .caller
        .clone()
        .or_else(|| e.source.clone())
        .unwrap_or_else(|| "-".into());
    let decision = e.decision.map_or("-", |d| d.as_str()).to_owned();
    match layout {
        Layout::Wide => vec![
            time,
            kind,
            caller,
            dash(&e.initiator),
            dash(&e.operation),
            dash(&e.device_id),
            decision,
            dash(&e.rule),
            status(r, finished, false),
            dash(&e.reason),
            completion.unwrap_or_else(|| "-".into()),
            e.audit_id.clone(),
        ],
        Layout::Table => {
            let operation = e
                .operation
                .as_deref()
                .map_or("-", |op| op.strip_prefix("managedDevices.").unwrap_or(op));
            let status = match completion {
                Some(state) if e.kind == Some(Kind::Completion) => state,
                Some(state) => format!("{} {state}", status(r, finished, true)),
                None => status(r, finished, true),
            };
            vec![
                time,
                kind,
                caller,
                operation.to_owned(),
                short(e.device_id.as_deref().unwrap_or("-")),
                decision,
                status,
                short(&e.audit_id),
            ]
        }
    }
}

/// The first [`SHORT_ID`] characters of an id.
fn short(id: &str) -> String {
    id.chars().take(SHORT_ID).collect()
}

/// What came of the request: the gateway's status and Graph's (`short`: Graph's only where
/// it differs), whether an intent's outcome was recorded (`finished`), or how many refusals
/// a record counts.
fn status(r: &Record, finished: bool, short: bool) -> String {
    let e = &r.entry;
    match (e.kind, e.status, e.upstream_status) {
        (Some(Kind::Intent), _, _) if finished => "sent".to_owned(),
        (Some(Kind::Intent), _, _) if short => "no outcome".to_owned(),
        (Some(Kind::Intent), _, _) => "sent, no outcome".to_owned(),
        (Some(Kind::Suppressed), _, _) if short => format!("{} refused", e.suppressed.unwrap_or(0)),
        (Some(Kind::Suppressed), _, _) => format!("{} suppressed", e.suppressed.unwrap_or(0)),
        (Some(Kind::Approval), _, _) => approval_status(e, short),
        (_, Some(s), Some(u)) if short && s == u => s.to_string(),
        (_, Some(s), Some(u)) if short => format!("{s} (g {u})"),
        (_, Some(s), Some(u)) => format!("{s} (graph {u})"),
        (_, Some(s), None) => s.to_string(),
        _ => "-".into(),
    }
}

/// What an approval record says happened: its event (`requested`, `approved`, ...); in
/// full, who moved it and the approval's state after (`approved by carol (approved)`).
fn approval_status(e: &super::record::Entry, short: bool) -> String {
    let event = e.approval_event.as_deref().unwrap_or("-");
    if short {
        return event.to_owned();
    }
    let by = e
        .reviewer
        .as_deref()
        .map(|r| format!(" by {r}"))
        .unwrap_or_default();
    match e.approval_state.as_deref() {
        Some(state) => format!("{event}{by} ({state})"),
        None => format!("{event}{by}"),
    }
}
