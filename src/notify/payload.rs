//! What a webhook receives for one approval event, in its format: JSON (the event and the
//! whole approval resource), a Microsoft Teams message carrying an Adaptive Card, or a
//! Slack Block Kit message. The cards carry the request's facts and a link to the console's
//! approval page, and no button that decides anything: a chat identity is not the
//! approver's identity, so decisions are made through the approval API only. States are
//! shown by name, whatever they are, so a state added later is sent and shown as is.

use serde_json::{Value, json};

use crate::approval::{Event, Resource};
use crate::policy::WebhookFormat;

/// Most devices a card lists (the rest are counted; the JSON format lists all).
const CARD_DEVICES: usize = 10;
/// Longest text of one fact in a card (Slack allows 2,000 characters per field).
const CARD_VALUE_CHARS: usize = 1_000;
/// Slack's limit on a header's text.
const SLACK_HEADER_CHARS: usize = 150;

/// One delivery's body for `format`.
pub fn render(
    format: WebhookFormat,
    event: &Event,
    delivery_id: &str,
    console: Option<&str>,
) -> Value {
    let link = console.map(|base| approval_link(base, &event.approval.id));
    match format {
        WebhookFormat::Json => json_body(event, delivery_id, link.as_deref()),
        WebhookFormat::Teams => teams(event, link.as_deref()),
        WebhookFormat::Slack => slack(event, link.as_deref()),
    }
}

/// The console's page of approval `id` under the console's base URL.
pub fn approval_link(base: &str, id: &str) -> String {
    format!("{}/audit/approvals/{id}", base.trim_end_matches('/'))
}

fn json_body(event: &Event, delivery_id: &str, link: Option<&str>) -> Value {
    json!({
        "type": "graphgate.approval",
        "delivery_id": delivery_id,
        "event": event.what,
        "from": event.from.map(|s| s.as_str()),
        "state": event.to().as_str(),
        "by": event.by,
        "note": event.note,
        "notify": event.notify,
        "console_url": link,
        "approval": &*event.approval,
    })
}

/// The facts both cards show, as (title, value).
fn facts(event: &Event) -> Vec<(&'static str, String)> {
    let a: &Resource = &event.approval;
    let mut out = vec![
        ("Approval", a.id.clone()),
        ("State", state_line(event)),
        (
            "Operation",
            format!("{} ({}, {})", a.operation, a.api_version, a.tier),
        ),
        ("Devices", devices(&a.devices)),
        ("Caller", a.caller.clone()),
        (
            "Initiator",
            a.initiator.clone().unwrap_or_else(|| "(not stated)".into()),
        ),
        (
            "Reason",
            a.reason.clone().unwrap_or_else(|| "(not stated)".into()),
        ),
        ("Approvals", progress(a)),
        ("Expires", a.expires.clone()),
    ];
    if let Some(by) = &a.execute_by {
        out.push(("Runs by", by.clone()));
    }
    if let Some(by) = &event.by {
        out.push(("By", by.clone()));
    }
    if let Some(note) = &event.note {
        out.push(("Note", note.clone()));
    }
    if let Some(bg) = &a.break_glass {
        out.push(("Break glass", bg.reason.clone()));
    }
    if let Some(o) = &a.outcome {
        let code = o
            .error_code
            .as_deref()
            .map(|c| format!(" {c}"))
            .unwrap_or_default();
        out.push(("Outcome", format!("{}{code}", o.status)));
    }
    if !event.notify.is_empty() {
        out.push(("Approvers to tell", event.notify.join(", ")));
    }
    out.push(("Request SHA-256", a.request_sha256.clone()));
    out.into_iter()
        .map(|(t, v)| (t, truncate(&v, CARD_VALUE_CHARS)))
        .collect()
}

fn state_line(event: &Event) -> String {
    match event.from {
        Some(from) if from != event.to() => {
            format!(
                "{} (was {}; {})",
                event.to().as_str(),
                from.as_str(),
                event.what
            )
        }
        _ => format!("{} ({})", event.to().as_str(), event.what),
    }
}

fn devices(devices: &[String]) -> String {
    let shown: Vec<&str> = devices
        .iter()
        .take(CARD_DEVICES)
        .map(String::as_str)
        .collect();
    match devices.len().saturating_sub(CARD_DEVICES) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// Each group's count against its requirement, with who counted.
fn progress(a: &Resource) -> String {
    a.groups
        .iter()
        .map(|g| {
            let who = if g.approvals.is_empty() {
                String::new()
            } else {
                format!(" ({})", g.approvals.join(", "))
            };
            format!(
                "{}: {}/{}{who}",
                g.approvers.join("|"),
                g.approvals.len(),
                g.required
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn title(event: &Event) -> String {
    let a = &event.approval;
    let devices = match a.devices.len() {
        1 => "1 device".to_owned(),
        n => format!("{n} devices"),
    };
    format!(
        "graphgate approval {}: {} on {devices}",
        event.to().as_str(),
        a.operation
    )
}

fn truncate(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        None => text.to_owned(),
        Some((at, _)) => format!("{}…", &text.get(..at).unwrap_or_default()),
    }
}

/// The words under each card's facts.
const NO_CHAT_DECISIONS: &str = "Review and decide in graphgate (the approval API, `graphgate approvals`); nothing in this chat approves.";

/// A Teams message with one Adaptive Card, as Teams Workflows ("When a Teams webhook request
/// is received") and incoming webhooks take it. Caller-supplied text is escaped for the
/// card's Markdown; the only action opens the console.
fn teams(event: &Event, link: Option<&str>) -> Value {
    let facts: Vec<Value> = facts(event)
        .into_iter()
        .map(|(title, value)| json!({"title": title, "value": teams_text(&value)}))
        .collect();
    let actions: Vec<Value> = link
        .map(|url| json!({"type": "Action.OpenUrl", "title": "Open in the graphgate console", "url": url}))
        .into_iter()
        .collect();
    let card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": teams_text(&title(event)), "weight": "Bolder", "size": "Medium", "wrap": true},
            {"type": "FactSet", "facts": facts},
            {"type": "TextBlock", "text": NO_CHAT_DECISIONS.replace('`', ""), "isSubtle": true, "wrap": true}
        ],
        "actions": actions,
    });
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }]
    })
}

/// `text` with the Markdown Adaptive Cards interpret escaped (emphasis, code, links: no
/// `[..](..)` can form), so a reason stays text. `_` is left alone: names such as
/// `outcome_unknown` stay readable, and an underscore cannot make a link.
fn teams_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '*' | '[' | ']' | '`' | '~') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A Slack Block Kit message (incoming webhooks): a header, the facts as plain text (which
/// Slack does not interpret), the console link and the reminder; `text` is the notification's
/// fallback, escaped as Slack asks.
fn slack(event: &Event, link: Option<&str>) -> Value {
    let fields: Vec<Value> = facts(event)
        .into_iter()
        .map(|(title, value)| json!({"type": "plain_text", "text": format!("{title}: {value}"), "emoji": false}))
        .collect();
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(&title(event), SLACK_HEADER_CHARS - 1), "emoji": false}
    })];
    // A section holds at most 10 fields.
    blocks.extend(
        fields
            .chunks(10)
            .map(|chunk| json!({"type": "section", "fields": chunk})),
    );
    if let Some(url) = link {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("<{}|Open in the graphgate console>", slack_escape(url))}
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": NO_CHAT_DECISIONS}]
    }));
    json!({"text": slack_escape(&title(event)), "blocks": blocks})
}

/// Slack's escaping of `&`, `<` and `>` in text it formats.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::State;

    fn event(state: State, devices: usize) -> Event {
        let devices: Vec<String> = (0..devices).map(|i| format!("device-{i}")).collect();
        let resource: Resource = serde_json::from_value(json!({
            "id": "11111111-2222-3333-4444-555555555555", "state": state,
            "operation": "managedDevices.wipe", "api_version": "v1.0", "tier": "destructive",
            "method": "POST", "path": "/x", "devices": devices, "parameters": {},
            "caller": "ops", "initiator": null, "reason": "see *this* [x](y)", "rule": "r",
            "request_sha256": "ab", "policy_sha256": "cd", "created": "c", "expires": "e",
            "run_by": "gateway", "deny": 1, "reviews": [], "outcome": null,
            "groups": [{"approvers": ["carol"], "required": 1, "approvals": []}]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        Event {
            approval: resource.into(),
            from: Some(State::Pending),
            what: "changed",
            by: None,
            note: None,
            notify: vec!["carol".into()],
        }
    }

    #[test]
    fn every_state_is_sent_and_shown_by_its_name_in_every_format() {
        for state in State::ALL {
            let e = event(state, 1);
            let json = render(WebhookFormat::Json, &e, "d", None);
            assert_eq!(json["state"], state.as_str());
            assert_eq!(json["approval"]["state"], state.as_str());
            assert!(json["console_url"].is_null());
            for format in [WebhookFormat::Teams, WebhookFormat::Slack] {
                let card = render(format, &e, "d", None).to_string();
                assert!(
                    card.contains(state.as_str()),
                    "{format:?} {state:?}: {card}"
                );
            }
        }
    }

    #[test]
    fn cards_list_ten_devices_and_count_the_rest() {
        let e = event(State::Pending, 25);
        let slack = render(WebhookFormat::Slack, &e, "d", Some("https://c.example/")).to_string();
        assert!(slack.contains("device-9 and 15 more"), "{slack}");
        assert!(!slack.contains("device-10"));
        assert!(
            slack
                .contains("https://c.example/audit/approvals/11111111-2222-3333-4444-555555555555")
        );
        let teams = render(WebhookFormat::Teams, &e, "d", None);
        assert_eq!(
            teams["attachments"][0]["content"]["actions"],
            json!([]),
            "no link, no action"
        );
    }

    #[test]
    fn markdown_in_caller_text_is_escaped_for_teams_and_slack_escapes_its_three() {
        assert_eq!(teams_text("see *this* [x](y)"), "see \\*this\\* \\[x\\](y)");
        assert_eq!(slack_escape("<!here> & co"), "&lt;!here&gt; &amp; co");
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
