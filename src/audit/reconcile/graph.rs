//! Reading a device's `deviceActionResults` from Graph, and finding in them the result of
//! the action being followed up.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;

use super::{Action, READ_TIMEOUT, SKEW};
use crate::cloud::Cloud;
use crate::token::TokenBroker;
use crate::upstream::{HttpClient, MAX_ANSWER_BYTES};

/// What Graph says of the device's actions.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeviceResults {
    #[serde(default)]
    device_action_results: Vec<ActionResult>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ActionResult {
    pub(super) action_name: String,
    pub(super) action_state: String,
    #[serde(default)]
    pub(super) start_date_time: Option<String>,
    #[serde(default)]
    pub(super) last_updated_date_time: Option<String>,
}

/// The completion label of a final `actionState` (`None`: not final yet).
pub(super) fn final_state(action_state: &str) -> Option<&'static str> {
    match action_state {
        s if s.eq_ignore_ascii_case("done") => Some("done"),
        s if s.eq_ignore_ascii_case("failed") => Some("failed"),
        s if s.eq_ignore_ascii_case("notSupported") => Some("not_supported"),
        s if s.eq_ignore_ascii_case("canceled") => Some("canceled"),
        _ => None,
    }
}

/// The newest result for `action` started no earlier than it was accepted (less the skew).
pub(super) fn result_for<'a>(
    results: &'a [ActionResult],
    action: &Action,
) -> Option<&'a ActionResult> {
    let started = |r: &ActionResult| {
        r.start_date_time
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    results
        .iter()
        .filter(|r| r.action_name.eq_ignore_ascii_case(&action.action))
        .filter(|r| started(r).is_none_or(|t| t >= action.accepted - SKEW))
        .max_by_key(|r| started(r))
}

/// Reads devices from Graph.
pub(super) struct Reader {
    pub(super) http: HttpClient,
    pub(super) broker: TokenBroker,
    pub(super) cloud: Cloud,
}

impl Reader {
    pub(super) async fn results(&self, device: &str) -> Result<Vec<ActionResult>, String> {
        let token = self.broker.token().await.map_err(|e| e.to_string())?;
        let host = self.cloud.endpoints().graph_host;
        let uri = format!(
            "https://{host}/v1.0/deviceManagement/managedDevices/{device}?$select=deviceActionResults"
        );
        let mut bearer = http::HeaderValue::try_from(format!("Bearer {}", token.token.expose()))
            .map_err(|e| e.to_string())?;
        bearer.set_sensitive(true);
        let req = http::Request::get(uri)
            .header(http::header::AUTHORIZATION, bearer)
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(READ_TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| "no answer in time".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        // Bounded like a forwarded answer: a larger one is refused, never buffered whole.
        let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES).collect();
        let body = tokio::time::timeout(READ_TIMEOUT, body)
            .await
            .map_err(|_| "no answer in time".to_owned())?
            .map_err(
                |e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
                    Some(_) => format!("an answer larger than {MAX_ANSWER_BYTES} bytes"),
                    None => e.to_string(),
                },
            )?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("Graph answered {status}"));
        }
        serde_json::from_slice::<DeviceResults>(&body)
            .map(|d| d.device_action_results)
            .map_err(|e| format!("unreadable answer: {e}"))
    }
}
