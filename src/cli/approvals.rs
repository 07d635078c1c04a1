//! `graphgate approvals list|show|approve|reject|cancel`: people's tool for the approval
//! API, against a running gateway (`--url`, `--token-file`: the reviewer's own API key or
//! token, never the gateway's). `approve` and `reject` first fetch the approval and show
//! its facts and `request_sha256`; the review sent names that hash, so it counts only for
//! what the person saw. At a terminal the reason is asked for; otherwise `--reason` and
//! `--request-sha256` (the hash the person saw, e.g. from `show`) must both be given.
//! The API's errors are printed as their Graph error message.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Subcommand};
use graphgate::secret::Secret;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};

use super::Fallible;

/// Where the gateway is and who is asking.
#[derive(Args)]
pub struct Target {
    /// The gateway's caller listener, e.g. https://graphgate.internal:8443 (http only to
    /// loopback: the token must not cross the network in clear).
    #[arg(long, env = "GRAPHGATE_URL", global = true)]
    pub url: Option<String>,
    /// File holding your API key or bearer token (as a caller of the policy).
    #[arg(long, env = "GRAPHGATE_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificates trusted for the gateway's TLS certificate (besides the public roots).
    #[arg(long, env = "GRAPHGATE_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
}

/// `graphgate approvals ...`.
#[derive(Args)]
pub struct ApprovalsArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub command: ApprovalsCommand,
}

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// List the approvals you requested or may review.
    List {
        /// Only those in this state (pending, approved, succeeded, ...).
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one approval with its groups, reviews and outcome.
    Show {
        /// The approval's id.
        id: String,
        /// Print the resource as the API returns it (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Approve an approval after seeing its facts.
    Approve(ReviewArgs),
    /// Reject an approval after seeing its facts.
    Reject(ReviewArgs),
    /// Withdraw your own request.
    Cancel {
        /// The approval's id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Args)]
pub struct ReviewArgs {
    /// The approval's id.
    pub id: String,
    /// Why (asked for at a terminal when not given).
    #[arg(long)]
    pub reason: Option<String>,
    /// The request_sha256 you saw (`show` prints it); needed without a terminal. The review
    /// counts only if the request still has this hash.
    #[arg(long)]
    pub request_sha256: Option<String>,
}

/// Longest answer read from the gateway.
const MAX_ANSWER: usize = 4 * 1024 * 1024;
/// Longest wait for one answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one `approvals` command.
pub async fn run(args: ApprovalsArgs) -> Fallible<ExitCode> {
    let api = Api::new(&args.target)?;
    let mut out = std::io::stdout().lock();
    match args.command {
        ApprovalsCommand::List { state } => {
            let query = match &state {
                Some(s) => format!("?state={}", percent(s)),
                None => String::new(),
            };
            let Some(doc) = api.call(Method::GET, &query, None).await? else {
                return Ok(ExitCode::FAILURE);
            };
            let items = doc["value"].as_array().cloned().unwrap_or_default();
            writeln!(out, "{}", table(&items, now_ms()))?;
        }
        ApprovalsCommand::Show { id, json } => {
            let Some(doc) = api
                .call(Method::GET, &format!("/{}", percent(&id)), None)
                .await?
            else {
                return Ok(ExitCode::FAILURE);
            };
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
            } else {
                writeln!(out, "{}", details(&doc))?;
            }
        }
        ApprovalsCommand::Approve(review) => return decide(&api, "approve", review).await,
        ApprovalsCommand::Reject(review) => return decide(&api, "reject", review).await,
        ApprovalsCommand::Cancel { id, reason } => {
            let body = reason.map(|r| json!({ "reason": r }));
            let path = format!("/{}/cancel", percent(&id));
            let Some(doc) = api.call(Method::POST, &path, body).await? else {
                return Ok(ExitCode::FAILURE);
            };
            writeln!(out, "{}", clean(&format!("{id}: {}", text(&doc["state"]))))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `approve` or `reject`: show what is reviewed, get the reason, send the hash seen.
async fn decide(api: &Api, action: &str, args: ReviewArgs) -> Fallible<ExitCode> {
    let id = percent(&args.id);
    let Some(doc) = api.call(Method::GET, &format!("/{id}"), None).await? else {
        return Ok(ExitCode::FAILURE);
    };
    let shown = text(&doc["request_sha256"]);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", details(&doc))?;
    let interactive = std::io::stdin().is_terminal();
    let sha = match (&args.request_sha256, interactive) {
        (Some(sha), _) => sha.trim().to_ascii_lowercase(),
        (None, true) => shown.clone(),
        (None, false) => {
            return Err(format!(
                "not at a terminal: {action} needs --reason and --request-sha256 (the request_sha256 you saw, e.g. with `graphgate approvals show`); this one's is {shown}"
            )
            .into());
        }
    };
    if sha != shown {
        writeln!(
            out,
            "warning: the request_sha256 you gave is not this request's ({shown}); the gateway will refuse the review"
        )?;
    }
    let reason = match (args.reason, interactive) {
        (Some(reason), _) => reason,
        (None, true) => match ask(&format!(
            "Reason to {action} request_sha256 {shown} (empty to stop): "
        ))? {
            Some(reason) => reason,
            None => {
                writeln!(out, "stopped: nothing sent")?;
                return Ok(ExitCode::FAILURE);
            }
        },
        (None, false) => {
            return Err(format!("not at a terminal: {action} needs --reason").into());
        }
    };
    let body = json!({ "reason": reason, "request_sha256": sha });
    let Some(after) = api
        .call(Method::POST, &format!("/{id}/{action}"), Some(body))
        .await?
    else {
        return Ok(ExitCode::FAILURE);
    };
    writeln!(
        out,
        "{}",
        clean(&format!(
            "{}: {} is {}{}",
            if action == "approve" {
                "approved"
            } else {
                "rejected"
            },
            text(&after["id"]),
            text(&after["state"]),
            progress_note(&after)
        ))
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal; `None` for an empty answer.
fn ask(prompt: &str) -> Fallible<Option<String>> {
    let mut err = std::io::stderr().lock();
    write!(err, "{prompt}")?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let line = line.trim();
    Ok((!line.is_empty()).then(|| line.to_owned()))
}

/// The approval API of one gateway, as one caller.
struct Api {
    base: String,
    token: Secret,
    client: graphgate::upstream::HttpClient,
}

impl Api {
    fn new(target: &Target) -> Fallible<Api> {
        let url = target
            .url
            .as_deref()
            .ok_or("--url (or GRAPHGATE_URL) is needed: the gateway's caller listener")?
            .trim_end_matches('/');
        let uri: Uri = url
            .parse()
            .map_err(|_| format!("--url {url:?} is not a URL"))?;
        let loopback = uri.host().is_some_and(|h| {
            h.eq_ignore_ascii_case("localhost")
                || h.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if loopback => {}
            _ => return Err(format!("--url {url:?}: https (http only to loopback)").into()),
        }
        let token_file = target
            .token_file
            .as_deref()
            .ok_or("--token-file (or GRAPHGATE_TOKEN_FILE) is needed: your API key or token")?;
        let token = graphgate::secret::read_file(token_file)
            .map_err(|e| format!("--token-file {}: {e}", token_file.display()))?;
        let ca = target
            .ca_file
            .as_deref()
            .map(graphgate::upstream::read_extra_ca)
            .transpose()?;
        let client = graphgate::upstream::side_client(&[], ca.as_deref(), Duration::from_secs(10))?;
        Ok(Api {
            base: format!("{url}{}", graphgate::approval::api::PREFIX),
            token,
            client,
        })
    }

    /// Sends one request; the answer's JSON, or `None` after printing the API's error.
    async fn call(
        &self,
        method: Method,
        rest: &str,
        body: Option<Value>,
    ) -> Fallible<Option<Value>> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{rest}", self.base))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token.expose()),
            )
            .header(http::header::ACCEPT, "application/json");
        let bytes = match body {
            Some(b) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(bytes))?;
        let answer = tokio::time::timeout(TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| format!("no answer from the gateway within {TIMEOUT:?}"))?
            .map_err(|e| format!("cannot reach the gateway: {e}"))?;
        let status = answer.status();
        let body = Limited::new(answer.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("reading the gateway's answer: {e}"))?
            .to_bytes();
        let doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Some(doc));
        }
        let code = doc["error"]["code"].as_str().unwrap_or("error");
        let message = doc["error"]["message"]
            .as_str()
            .map_or_else(|| format!("the gateway answered {status}"), str::to_owned);
        eprintln!(
            "{}",
            clean(&format!("graphgate: {status}: {code}: {message}"))
        );
        Ok(None)
    }
}

/// The `list` table: id, state, operation, devices, requester, age, expiry, progress.
fn table(items: &[Value], now: u64) -> String {
    if items.is_empty() {
        return "no approvals".into();
    }
    let header = [
        "ID",
        "STATE",
        "OPERATION",
        "DEVICES",
        "REQUESTER",
        "AGE",
        "EXPIRES",
        "PROGRESS",
    ];
    let rows: Vec<[String; 8]> = items
        .iter()
        .map(|a| {
            let devices = a["devices"].as_array().map_or(0, Vec::len);
            let device = match devices {
                1 => text(&a["devices"][0]),
                n => format!("{n} devices"),
            };
            let requester = match a["initiator"].as_str() {
                Some(person) => format!("{} for {person}", text(&a["caller"])),
                None => text(&a["caller"]),
            };
            let state = text(&a["state"]);
            let open = ["pending", "approved", "external_approval_pending"];
            let expires = if open.contains(&state.as_str()) {
                let at = a["execute_by"].as_str().or(a["expires"].as_str());
                at.and_then(ms_of)
                    .map_or("-".into(), |t| format!("in {}", age(t.saturating_sub(now))))
            } else {
                "-".into()
            };
            [
                text(&a["id"]),
                state,
                text(&a["operation"]),
                device,
                requester,
                a["created"]
                    .as_str()
                    .and_then(ms_of)
                    .map_or("-".into(), |t| age(now.saturating_sub(t))),
                expires,
                progress(a),
            ]
            .map(|c| clean(&c))
        })
        .collect();
    let widths: Vec<usize> = (0..8)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[&str]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(&header)];
    out.extend(rows.iter().map(|r| line(&r.each_ref().map(String::as_str))));
    out.join("\n")
}

/// Each group's approvals against its requirement: `1/1 0/1`.
fn progress(a: &Value) -> String {
    let groups = a["groups"].as_array().cloned().unwrap_or_default();
    let parts: Vec<String> = groups
        .iter()
        .map(|g| {
            let got = g["approvals"].as_array().map_or(0, Vec::len);
            format!("{got}/{}", g["required"].as_u64().unwrap_or(0))
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

fn progress_note(a: &Value) -> String {
    if a["state"] == "pending" {
        format!(" (approvals {})", progress(a))
    } else {
        String::new()
    }
}

/// `show`: the whole resource, readable.
fn details(a: &Value) -> String {
    let mut out = Vec::new();
    let mut field = |name: &str, value: String| out.push(format!("{name:<16}{value}"));
    field("id", text(&a["id"]));
    field("state", text(&a["state"]));
    field(
        "operation",
        format!(
            "{} ({} {}, tier {})",
            text(&a["operation"]),
            text(&a["api_version"]),
            text(&a["method"]),
            text(&a["tier"])
        ),
    );
    field("path", text(&a["path"]));
    let devices: Vec<String> = a["devices"]
        .as_array()
        .map(|d| d.iter().map(text).collect())
        .unwrap_or_default();
    field("devices", devices.join(", "));
    field("parameters", a["parameters"].to_string());
    field("caller", text(&a["caller"]));
    field("initiator", opt(&a["initiator"]));
    field("reason", opt(&a["reason"]));
    field("rule", text(&a["rule"]));
    field("created", text(&a["created"]));
    field("expires", text(&a["expires"]));
    if a["execute_by"].is_string() {
        field("execute by", text(&a["execute_by"]));
    }
    field("runs", text(&a["run_by"]));
    if let Some(bg) = a["break_glass"]["reason"].as_str() {
        field("break glass", bg.to_owned());
    }
    if a["maa"].is_object() {
        field("intune", intune(&a["maa"]));
    }
    field("request_sha256", text(&a["request_sha256"]));
    field("policy_sha256", text(&a["policy_sha256"]));
    out.push("groups:".into());
    for g in a["groups"].as_array().cloned().unwrap_or_default() {
        let list = |v: &Value| -> String {
            v.as_array()
                .map(|x| x.iter().map(text).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        };
        out.push(format!(
            "  {}/{} of [{}]: {}",
            g["approvals"].as_array().map_or(0, Vec::len),
            g["required"].as_u64().unwrap_or(0),
            list(&g["approvers"]),
            match list(&g["approvals"]) {
                s if s.is_empty() => "none yet".to_owned(),
                s => s,
            }
        ));
    }
    let reviews = a["reviews"].as_array().cloned().unwrap_or_default();
    out.push(
        format!("reviews: {}", if reviews.is_empty() { "none" } else { "" })
            .trim_end()
            .to_owned(),
    );
    for r in reviews {
        let person = r["person"]
            .as_str()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        let stale = if r["request_sha256"] == a["request_sha256"] {
            ""
        } else {
            " [another request_sha256]"
        };
        out.push(format!(
            "  {} {} by {}{person}: {}{stale}",
            text(&r["time"]),
            text(&r["decision"]),
            text(&r["reviewer"]),
            text(&r["reason"])
        ));
    }
    match a["outcome"].as_object() {
        Some(o) => {
            let code = o
                .get("error_code")
                .and_then(Value::as_str)
                .map(|c| format!(" {c}"))
                .unwrap_or_default();
            let msg = o
                .get("message")
                .and_then(Value::as_str)
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            out.push(format!(
                "outcome: {}{code}{msg} at {} (audit id {})",
                o.get("status").map(Value::to_string).unwrap_or_default(),
                o.get("time").map(text).unwrap_or_default(),
                o.get("audit_id").map(text).unwrap_or_default()
            ));
        }
        None => out.push("outcome: not yet".into()),
    }
    out.iter().map(|l| clean(l)).collect::<Vec<_>>().join("\n")
}

/// Intune's Multi Admin Approval on it: `code 5c1e...: needsApproval (held with 403), read
/// 2 times, last error: ...`.
fn intune(m: &Value) -> String {
    let mut line = format!(
        "code {}: {} (held with {}{})",
        text(&m["code"]),
        text(&m["status"]),
        text(&m["held_status"]),
        if m["attached"] == true {
            ", attached to a hold already pending"
        } else {
            ""
        }
    );
    let polls = m["polls"].as_u64().unwrap_or(0);
    line += &format!(
        ", read {polls} {}",
        if polls == 1 { "time" } else { "times" }
    );
    if let Some(e) = m["last_error"].as_str() {
        line += &format!(", last error: {e}");
    }
    if m["resent"] == true {
        line += ", sent again once with the code";
    }
    line
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn opt(v: &Value) -> String {
    v.as_str().map_or("(not stated)".into(), str::to_owned)
}

/// A line safe for a terminal: control characters (escape sequences) become `?`.
fn clean(line: &str) -> String {
    line.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `s` as one path segment or query value (an id is a GUID; anything else stays inert).
fn percent(s: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.');
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

fn ms_of(rfc3339: &str) -> Option<u64> {
    let at = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    u64::try_from(at.timestamp_millis()).ok()
}

fn now_ms() -> u64 {
    let at = graphgate::clock::utc_now().timestamp_millis();
    u64::try_from(at).unwrap_or(0)
}

/// A duration in ms, short: `45s`, `12m`, `3h`, `2d`.
fn age(ms: u64) -> String {
    let s = ms / 1_000;
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m", s / 60),
        3_600..86_400 => format!("{}h{:02}m", s / 3_600, (s % 3_600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3_600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short_and_lines_are_safe_for_a_terminal() {
        assert_eq!(age(45_000), "45s");
        assert_eq!(age(12 * 60_000 + 5), "12m");
        assert_eq!(age(3 * 3_600_000 + 5 * 60_000), "3h05m");
        assert_eq!(clean("a\u{1b}[31mred"), "a?[31mred");
    }

    #[test]
    fn the_table_lists_each_approval_on_one_line() {
        let a = json!({"id": "i-1", "state": "pending", "operation": "managedDevices.wipe",
            "devices": ["d1", "d2"], "caller": "ops", "initiator": "dave@contoso.com",
            "created": "1970-01-01T00:00:00Z", "expires": "1970-01-01T01:00:00Z",
            "groups": [{"approvals": ["a"], "required": 1}, {"approvals": [], "required": 2}]});
        let t = table(&[a], 600_000);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID  "), "{t}");
        assert!(lines[1].contains("2 devices"), "{t}");
        assert!(lines[1].contains("ops for dave@contoso.com"), "{t}");
        assert!(lines[1].contains("10m"), "{t}");
        assert!(lines[1].contains("in 50m"), "{t}");
        assert!(lines[1].ends_with("1/1 0/2"), "{t}");
    }

    #[test]
    fn an_approval_intune_holds_shows_its_code_status_and_expiry() {
        let a = json!({"id": "i-2", "state": "external_approval_pending",
            "operation": "managedDevices.wipe", "devices": ["d1"], "caller": "ops",
            "created": "1970-01-01T00:00:00Z", "expires": "1970-01-01T01:00:00Z", "groups": [],
            "maa": {"code": "c0de", "status": "needsApproval", "held_status": 403,
                "polls": 1, "last_error": "Graph answered 503", "resent": false}});
        let t = table(std::slice::from_ref(&a), 600_000);
        assert!(t.lines().nth(1).unwrap().contains("in 50m"), "{t}");
        let d = details(&a);
        assert!(
            d.contains(
                "intune          code c0de: needsApproval (held with 403), read 1 time, last error: Graph answered 503"
            ),
            "{d}"
        );
    }
}
