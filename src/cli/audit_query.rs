//! `graphgate audit query`: its filters and formats, and `--follow`; the selection and the
//! table are the library's (`audit::read::query`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use clap::builder::{PossibleValue, PossibleValuesParser};

use graphgate::audit::AuditDecision;
use graphgate::audit::checkpoints::checkpoint;
use graphgate::audit::read::query::{self, Filter};
use graphgate::audit::store::{anchor, files};
use graphgate::words::count;

/// Filters for `audit query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Log files (the `.anchor`, `.checkpoints`, `.tree`, `.cosigned` and `.ship-cursor` files
    /// among them are skipped, and folders: a set-aside tree's).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Caller name.
    #[arg(long)]
    caller: Option<String>,
    /// Managed-device id (a GUID, or its first 8 or more characters as the table shows them).
    #[arg(long, value_parser = parse_device)]
    device: Option<String>,
    /// Operation (e.g. `managedDevices.updateWindowsDeviceAccount` or `updateWindowsDeviceAccount`).
    #[arg(long, value_parser = parse_operation)]
    operation: Option<String>,
    /// Decision.
    #[arg(long, value_parser = decisions())]
    decision: Option<String>,
    /// graphgate's request id (`x-graphgate-request-id`, the record's `audit_id`), or its
    /// first 8 or more characters as the table's ID column shows them.
    #[arg(long, visible_alias = "audit-id")]
    request_id: Option<String>,
    /// Graph's `request-id` for the call (the record's `graph_request_id`).
    #[arg(long)]
    graph_request_id: Option<String>,
    /// The person the request was made for (a UPN or object id, case-insensitive; or
    /// `@domain` for everyone of a domain).
    #[arg(long)]
    initiator: Option<String>,
    /// From this time (YYYY-MM-DD or RFC 3339), inclusive.
    #[arg(long)]
    since: Option<String>,
    /// Until this time (YYYY-MM-DD or RFC 3339), exclusive.
    #[arg(long)]
    until: Option<String>,
    /// Also list intent, start and completion records (every kind) as rows.
    #[arg(long)]
    all: bool,
    /// How to print: `table` fits 120 columns (long cells cut with …, ids shortened to 8
    /// characters), `wide` shows every column in full, `json` one record per line.
    #[arg(long, value_enum, default_value = "table")]
    format: QueryFormat,
    /// Same as --format json.
    #[arg(long, hide = true, conflicts_with = "format")]
    json: bool,
    /// At most N rows, the newest [default: 100 in a table; every row in JSON]; 0: no limit.
    /// With --follow, the rows printed before following.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Keep printing matching records as they are written (across rotation), until
    /// interrupted.
    #[arg(long, short = 'f')]
    follow: bool,
}

/// How `audit query` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum QueryFormat {
    /// Aligned columns that fit 120 characters.
    Table,
    /// Every column, nothing cut.
    Wide,
    /// JSON Lines: the records themselves.
    Json,
}

/// The shipping cursor beside a log (a glob of the log's files picks it up).
pub(super) fn is_ship_cursor(file: &Path) -> bool {
    file.extension().is_some_and(|e| e == "ship-cursor")
}

/// Files beside a log that a glob of its files picks up and that are not records (a folder
/// is one whose files `--audit-new-tree` set aside).
pub(super) fn is_beside_log(file: &Path) -> bool {
    file.is_dir()
        || is_ship_cursor(file)
        || graphgate::audit::checkpoints::tree::is_tree_file(file)
        || graphgate::audit::witnessing::cosigned::is_cosigned_file(file)
}

/// Rows a table shows when `--limit` is not given.
const DEFAULT_TABLE_ROWS: usize = 100;

/// How often `--follow` looks for new records.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// The valid `--decision` values (and the policy words `allow` and `deny` for them).
fn decisions() -> PossibleValuesParser {
    PossibleValuesParser::new(AuditDecision::ALL.map(|d| {
        let value = PossibleValue::new(d.as_str());
        match d {
            AuditDecision::Allowed => value.alias("allow"),
            AuditDecision::Denied => value.alias("deny"),
            _ => value,
        }
    }))
}

fn parse_device(text: &str) -> Result<String, String> {
    match graphgate::operation::route::is_guid(text) || is_id_prefix(text) {
        true => Ok(text.to_ascii_lowercase()),
        false => Err(format!(
            "a managed-device id is a GUID, e.g. 0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb, or its first {} or more characters",
            query::SHORT_ID
        )),
    }
}

/// The start of a hyphenated GUID, at least a table's short id long.
fn is_id_prefix(text: &str) -> bool {
    let template = "00000000-0000-0000-0000-000000000000";
    text.len() >= query::SHORT_ID
        && text.len() <= template.len()
        && text.chars().zip(template.chars()).all(|(c, t)| match t {
            '-' => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn parse_operation(text: &str) -> Result<String, String> {
    let known = graphgate::operation::catalog::CATALOG
        .iter()
        .any(|op| op.name.eq_ignore_ascii_case(text) || op.action.eq_ignore_ascii_case(text));
    if known {
        return Ok(text.to_owned());
    }
    let names: Vec<String> = graphgate::operation::catalog::CATALOG
        .iter()
        .map(|op| format!("{} (or {})", op.name, op.action))
        .collect();
    Err(format!(
        "not an operation graphgate offers; valid: {}",
        names.join(", ")
    ))
}

/// Runs `audit query`.
pub(super) fn run_query(args: QueryArgs) -> std::io::Result<ExitCode> {
    let time = |t: &Option<String>| t.as_deref().map(query::parse_time).transpose();
    let (since, until) = match (time(&args.since), time(&args.until)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("graphgate: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let decision = args.decision.as_deref().map(|d| match d {
        "allow" => "allowed".to_owned(),
        "deny" => "denied".to_owned(),
        d => d.to_owned(),
    });
    let filter = Filter {
        caller: args.caller,
        device: args.device,
        operation: args.operation,
        decision,
        request_id: args.request_id,
        graph_request_id: args.graph_request_id,
        initiator: args.initiator,
        since,
        until,
        all_kinds: args.all,
    };
    let files: Vec<PathBuf> = args
        .files
        .into_iter()
        .filter(|f| {
            !anchor::is_anchor_file(f) && !checkpoint::is_checkpoint_file(f) && !is_beside_log(f)
        })
        .collect();
    let format = match args.json {
        true => QueryFormat::Json,
        false => args.format,
    };
    // A follower reads one log: the live file the given ones belong to.
    let followed = match files
        .iter()
        .map(|f| files::base_log(f))
        .collect::<std::collections::BTreeSet<_>>()
    {
        logs if !args.follow => logs.into_iter().next(),
        logs if logs.len() == 1 => logs.into_iter().next(),
        logs => {
            eprintln!(
                "graphgate: --follow follows one log; these files belong to {}",
                count(logs.len(), "log")
            );
            return Ok(ExitCode::from(2));
        }
    };
    // Where following starts: after the log's newest record, read before the files are (a
    // record written in between is in them, or is followed). Not merely after the newest
    // record of the files given: the live file alone is empty just after a rotation.
    let log_end = match (&followed, args.follow) {
        (Some(log), true) => graphgate::audit::store::follow::end_of(log)?,
        _ => 1,
    };
    let records = query::read_records(&files)?;
    let selected = query::select(&records, &filter);
    let limit = match (args.limit, format) {
        (Some(0), _) | (None, QueryFormat::Json) => usize::MAX,
        (Some(n), _) => n,
        (None, _) => DEFAULT_TABLE_ROWS,
    };
    let rows = &selected[selected.len().saturating_sub(limit)..];
    let later = query::outcomes(&records);
    let mut out = std::io::stdout().lock();
    let layout = match format {
        QueryFormat::Json => {
            query::print_json(rows, &mut out)?;
            None
        }
        QueryFormat::Table => Some(query::Layout::Table),
        QueryFormat::Wide => Some(query::Layout::Wide),
    };
    if !args.follow {
        if let Some(layout) = layout {
            query::print_table(rows, selected.len(), &later, layout, &mut out)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let next = records.last().map_or(1, |r| r.seq + 1).max(log_end);
    let Some(log) = followed else {
        return Ok(ExitCode::SUCCESS);
    };
    follow(&log, next, rows, &later, &filter, layout, &mut out)
}

/// `--follow`: the rows so far, then each matching record as it is written, until the
/// process is stopped.
fn follow(
    log: &Path,
    next: u64,
    rows: &[graphgate::audit::Record],
    later: &query::Outcomes<'_>,
    filter: &Filter,
    layout: Option<query::Layout>,
    out: &mut dyn std::io::Write,
) -> std::io::Result<ExitCode> {
    let table = layout.map(query::Table::fixed);
    if let Some(table) = &table {
        writeln!(out, "{}", table.header())?;
        for r in rows {
            writeln!(out, "{}", table.line(&table.cells(r, later)))?;
        }
    }
    let mut follower = graphgate::audit::store::follow::Follower::new(log, next);
    let none = query::Outcomes::default();
    loop {
        let lines = follower.read(u64::MAX, 1000)?;
        if lines.is_empty() {
            std::thread::sleep(FOLLOW_POLL);
            continue;
        }
        let records = query::parse_lines(lines.iter().map(|l| l.bytes.as_slice()));
        let rows = query::select_new(&records, filter);
        match &table {
            Some(table) => {
                for r in &rows {
                    writeln!(out, "{}", table.line(&table.cells(r, &none)))?;
                }
            }
            None => query::print_json(&rows, out)?,
        }
        out.flush()?;
    }
}
