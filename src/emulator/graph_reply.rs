//! How the emulated Graph answers: its refusals (status, code, message, extra headers) and
//! the headers every Graph response carries (`request-id`, `client-request-id`,
//! `x-ms-ags-diagnostic`, `Date`).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use super::wire::{Body, http_date, respond, set_header};
use crate::operation::catalog::ApiVersion;
use crate::operation::route::RouteError;

/// What every Graph response of the emulator reports in `x-ms-ags-diagnostic`.
const AGS_DIAGNOSTIC: &str = r#"{"ServerInfo":{"DataCenter":"Emulator","Slice":"E","Ring":"5","ScaleUnit":"000","RoleInstance":"graphgate-emulator"}}"#;

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
}

impl GraphError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        GraphError {
            status,
            code,
            message: message.into(),
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

    /// Graph's answer to a path `route::recognise` refused.
    pub(crate) fn from_route(err: &RouteError, path: &str) -> Self {
        match err {
            RouteError::MethodNotAllowed => Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "BadRequest",
                "The action can only be invoked with the HTTP method POST.",
            ),
            RouteError::NotFound => Self::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                not_found_message(path),
            ),
            RouteError::BadId(label) => Self::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("Invalid key value for the segment '{label}'."),
            ),
            RouteError::Malformed(_) | RouteError::TooLong | RouteError::TwoDevices { .. } => {
                Self::new(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "The request URI is not valid.",
                )
            }
        }
    }
}

/// Graph's message for an unknown path: the version, else the first segment that is neither a
/// known navigation nor an id following one.
fn not_found_message(path: &str) -> String {
    const NAVIGATIONS: [&str; 3] = ["managedDevices", "detectedApps", "users"];
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let Some((version, rest)) = segs.split_first() else {
        return "Invalid version: ".to_owned();
    };
    if ApiVersion::parse(version).is_none() {
        return format!("Invalid version: {}", clip(version));
    }
    let mut id_next = false;
    for seg in rest {
        if std::mem::take(&mut id_next) {
            continue;
        }
        if NAVIGATIONS.iter().any(|n| n.eq_ignore_ascii_case(seg)) {
            id_next = true;
        } else if !seg.eq_ignore_ascii_case("deviceManagement") {
            return format!("Resource not found for the segment '{}'.", clip(seg));
        }
    }
    format!(
        "Resource not found for the segment '{}'.",
        clip(rest.last().copied().unwrap_or(""))
    )
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
        let body = crate::graph_error::body(
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
            StatusCode::METHOD_NOT_ALLOWED => set_header(&mut resp, "allow", "POST"),
            _ => {}
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
    fn not_found_names_the_offending_segment() {
        let dev = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";
        assert_eq!(
            not_found_message(&format!(
                "/v1.0/deviceManagement/managedDevices/{dev}/wipeAll"
            )),
            "Resource not found for the segment 'wipeAll'."
        );
        assert_eq!(
            not_found_message("/v1.0/deviceManagment/managedDevices"),
            "Resource not found for the segment 'deviceManagment'."
        );
        assert_eq!(not_found_message("/v2.0/x"), "Invalid version: v2.0");
    }

    #[test]
    fn intune_message_is_embedded_json() {
        let m = intune_message("act", "https://fef.example/x");
        let v: serde_json::Value = serde_json::from_str(&m).unwrap();
        assert_eq!(v["_version"], 3);
        assert!(v["Message"].as_str().unwrap().contains("Activity ID: act"));
    }
}
