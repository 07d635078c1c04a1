//! How the emulated Graph answers: its refusals (status, code, message, extra headers) and
//! the headers every Graph response carries (`request-id`, `client-request-id`,
//! `x-ms-ags-diagnostic`, `Date`).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use super::wire::{Body, http_date, respond, set_header};

/// What every Graph response of the emulator reports in `x-ms-ags-diagnostic`.
const AGS_DIAGNOSTIC: &str = r#"{"ServerInfo":{"DataCenter":"Emulator","Slice":"E","Ring":"5","ScaleUnit":"000","RoleInstance":"graphgate-emulator"}}"#;

/// The header of a write Multi Admin Approval holds (see `maa`).
pub(crate) const APPROVAL_CODE_HEADER: &str = "x-msft-approval-code";

/// The `Content-Type` of Graph's JSON answers.
pub(crate) const ODATA_JSON: &str = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8";

/// What the emulated Graph answers when a request succeeds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Success {
    /// No body (an action's 204).
    Empty(StatusCode),
    /// A JSON body.
    Json(StatusCode, serde_json::Value),
}

/// One Graph refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GraphError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// The `Allow` header of a 405 (`POST` when not given).
    pub(crate) allow: Option<&'static str>,
    /// The `x-msft-approval-code` of a write Multi Admin Approval holds.
    pub(crate) approval_code: Option<String>,
}

impl GraphError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        GraphError {
            status,
            code,
            message: message.into(),
            allow: None,
            approval_code: None,
        }
    }

    /// 401 `InvalidAuthenticationToken`.
    pub(crate) fn unauthenticated(message: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
    }
}

fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// Intune's way of wrapping a message: a JSON document inside the `message` string.
pub(crate) fn intune_message(activity_id: &str, url: &str) -> String {
    intune_message_with_phrase(activity_id, url, "")
}

/// [`intune_message`] with a `CustomApiErrorPhrase` saying what went wrong.
pub(crate) fn intune_message_with_phrase(activity_id: &str, url: &str, phrase: &str) -> String {
    serde_json::json!({
        "_version": 3,
        "Message": format!(
            "An error has occurred - Operation ID (for customer support): 00000000-0000-0000-0000-000000000000 - Activity ID: {activity_id} - Url: {url}"
        ),
        "CustomApiErrorPhrase": phrase,
        "RetryAfter": null,
        "ErrorSourceService": "",
        "HttpHeaders": "{}",
    })
    .to_string()
}

/// The ids one Graph response is tagged with.
pub(crate) struct Ids {
    pub(crate) request_id: String,
    pub(crate) client_request_id: String,
}

impl Ids {
    /// A new request id; the client's `client-request-id` echoed, or a new one.
    pub(crate) fn new(client_request_id: Option<&str>) -> Self {
        let fresh = || uuid::Uuid::new_v4().to_string();
        Ids {
            request_id: fresh(),
            client_request_id: client_request_id
                .map(clip)
                .filter(|c| !c.is_empty())
                .unwrap_or_else(fresh),
        }
    }

    /// The error response, Graph's JSON plus the usual headers.
    pub(crate) fn error(&self, err: &GraphError) -> Response<Body> {
        let body = crate::microsoft::error_body(
            err.code,
            &err.message,
            &self.request_id,
            &self.client_request_id,
        );
        let mut resp = respond(err.status, "application/json", body);
        match err.status {
            StatusCode::UNAUTHORIZED => set_header(
                &mut resp,
                "www-authenticate",
                "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
            ),
            StatusCode::METHOD_NOT_ALLOWED => {
                set_header(&mut resp, "allow", err.allow.unwrap_or("POST"));
            }
            _ => {}
        }
        if let Some(code) = &err.approval_code {
            set_header(&mut resp, APPROVAL_CODE_HEADER, code);
        }
        self.tag(resp)
    }

    /// A success response: empty, or Graph's JSON.
    pub(crate) fn success(&self, success: Success) -> Response<Body> {
        let resp = match success {
            Success::Empty(status) => {
                let mut resp = Response::new(Full::new(Bytes::new()));
                *resp.status_mut() = status;
                resp
            }
            Success::Json(status, value) => respond(
                status,
                ODATA_JSON,
                serde_json::to_vec(&value).unwrap_or_default(),
            ),
        };
        self.tag(resp)
    }

    fn tag(&self, mut resp: Response<Body>) -> Response<Body> {
        set_header(&mut resp, "request-id", &self.request_id);
        set_header(&mut resp, "client-request-id", &self.client_request_id);
        set_header(&mut resp, "x-ms-ags-diagnostic", AGS_DIAGNOSTIC);
        set_header(&mut resp, "date", &http_date());
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intune_message_is_embedded_json() {
        let m = intune_message("act", "https://fef.example/x");
        let v: serde_json::Value = serde_json::from_str(&m).unwrap();
        assert_eq!(v["_version"], 3);
        assert!(v["Message"].as_str().unwrap().contains("Activity ID: act"));
    }
}
