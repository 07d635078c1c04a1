//! Where approvals' notifications go, as policy files write it: `approvals: {webhooks:
//! [{url, format, secret_file}]}`. Parsed and validated here (an `https` URL, or `http`
//! to a loopback address only; a known format; a secret file named); sending is
//! [`crate::notify`]'s. The secret file is read when a policy with it comes into force, so
//! a reload that changes a webhook or its secret takes effect without a restart.

use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::issues::Issues;

/// The most webhooks one policy may name (each has a queue and a sender of its own).
pub const MAX_WEBHOOKS: usize = 16;

/// `approvals:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApprovalsEntry {
    pub webhooks: Spanned<Vec<Spanned<WebhookEntry>>>,
}

/// One webhook as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookEntry {
    url: Spanned<String>,
    #[serde(default)]
    format: Option<Spanned<String>>,
    secret_file: Spanned<String>,
}

/// The shape of what a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// The event and the approval resource as JSON.
    Json,
    /// A Microsoft Teams message carrying an Adaptive Card (Workflows or incoming webhook).
    Teams,
    /// A Slack message in Block Kit (incoming webhook).
    Slack,
}

impl Format {
    /// The name policy files use.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Teams => "teams",
            Format::Slack => "slack",
        }
    }

    fn parse(name: &str) -> Option<Format> {
        [Format::Json, Format::Teams, Format::Slack]
            .into_iter()
            .find(|f| f.as_str() == name)
    }
}

/// One webhook every approval event is sent to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Webhook {
    /// Where (`https://`, or `http://` to loopback).
    pub url: String,
    /// What shape.
    pub format: Format,
    /// The file holding the signing secret (`Graphgate-Signature`).
    pub secret_file: PathBuf,
}

/// Compiles `approvals:`.
pub(super) fn webhooks(entry: Option<&ApprovalsEntry>, issues: &mut Issues) -> Vec<Webhook> {
    let Some(entry) = entry else {
        return Vec::new();
    };
    if entry.webhooks.value.len() > MAX_WEBHOOKS {
        issues.at(
            &entry.webhooks,
            format!("at most {MAX_WEBHOOKS} webhooks may be named"),
        );
    }
    entry
        .webhooks
        .value
        .iter()
        .filter_map(|w| webhook(&w.value, issues))
        .collect()
}

fn webhook(entry: &WebhookEntry, issues: &mut Issues) -> Option<Webhook> {
    let url = match check_url(&entry.url.value) {
        Ok(()) => Some(entry.url.value.clone()),
        Err(why) => {
            issues.at(
                &entry.url,
                format!("webhook url {:?}: {why}", entry.url.value),
            );
            None
        }
    };
    let format = match &entry.format {
        None => Some(Format::Json),
        Some(f) => Format::parse(&f.value).or_else(|| {
            issues.at(
                f,
                format!("webhook format {:?}: one of json, teams, slack", f.value),
            );
            None
        }),
    };
    let secret_file = entry.secret_file.value.trim();
    if secret_file.is_empty() {
        issues.at(&entry.secret_file, "webhook secret_file is empty");
    }
    Some(Webhook {
        url: url?,
        format: format?,
        secret_file: (!secret_file.is_empty()).then(|| PathBuf::from(secret_file))?,
    })
}

/// An `https` URL with a host; `http` only to a loopback address (a receiver on the same
/// host: the body and its signature would otherwise cross the network in clear).
fn check_url(url: &str) -> Result<(), &'static str> {
    let uri: http::Uri = url.parse().map_err(|_| "not a URL")?;
    let host = uri.host().ok_or("no host")?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("user info is not allowed (the secret file signs the body)");
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err("http is allowed to loopback only: use https"),
        _ => Err("the scheme must be https"),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Policy, WebhookFormat};

    #[test]
    fn urls_are_https_or_loopback_http() {
        assert!(check_url("https://hooks.example.com/x?y=1").is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_url("http://[::1]:8080/hook").is_ok());
        assert!(check_url("http://localhost/hook").is_ok());
        assert!(check_url("http://hooks.example.com/x").is_err());
        assert!(check_url("http://10.0.0.1/x").is_err());
        assert!(check_url("ftp://hooks.example.com/x").is_err());
        assert!(check_url("https://user:pw@hooks.example.com/x").is_err());
        assert!(check_url("hooks.example.com/x").is_err());
    }

    const BASE: &str = "version: 1\ncallers: []\nrules: []\n";

    #[test]
    fn webhooks_compile_and_every_problem_is_reported_at_its_line() {
        let good = format!(
            "{BASE}approvals:\n  webhooks:\n    - {{ url: \"https://hooks.example.com/x\", format: teams, secret_file: /s }}\n    - {{ url: \"http://127.0.0.1:9/x\", secret_file: /t }}\n"
        );
        let p = Policy::from_yaml(&good, "t").unwrap();
        assert_eq!(p.webhooks.len(), 2);
        assert_eq!(p.webhooks[0].format, WebhookFormat::Teams);
        assert_eq!(p.webhooks[1].format, WebhookFormat::Json, "json by default");
        let bad = format!(
            "{BASE}approvals:\n  webhooks:\n    - {{ url: \"http://hooks.example.com/x\", format: teams, secret_file: /s }}\n    - {{ url: \"https://h.example\", format: email, secret_file: \" \" }}\n"
        );
        let err = Policy::from_yaml(&bad, "t").unwrap_err();
        let got: Vec<String> = err.issues.iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(
            got[0].starts_with("6:") && got[0].contains("http is allowed to loopback only"),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|i| i.starts_with("7:") && i.contains("one of json, teams, slack")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|i| i.starts_with("7:") && i.contains("secret_file is empty")),
            "{got:#?}"
        );
        let unknown = format!(
            "{BASE}approvals:\n  webhooks:\n    - {{ url: \"https://h.example\", secret: /s }}\n"
        );
        let err = Policy::from_yaml(&unknown, "t").unwrap_err();
        assert!(err.to_string().contains("secret"), "{err}");
    }
}
