//! The emulator's own read-only endpoints under `/_emulator/` (any host): the device
//! inventory and the request records, as JSON, for tests and curious users.

use http::{Method, Response, StatusCode};

use super::state::State;
use super::wire::{Body, Request, json, set_header, text};

/// `GET /_emulator/{devices | requests | token-requests}`.
pub(crate) fn handle(state: &State, req: &Request, rest: &str) -> Response<Body> {
    if req.method != Method::GET {
        let mut resp = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the emulator's introspection endpoints take GET",
        );
        set_header(&mut resp, "allow", "GET");
        return resp;
    }
    let value = match rest {
        "devices" => serde_json::json!({ "devices": state.devices() }),
        "requests" => serde_json::json!({ "requests": state.graph_requests() }),
        "token-requests" => serde_json::json!({
            "count": state.token_count(),
            "requests": state.token_requests(),
        }),
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                "try /_emulator/devices, /_emulator/requests or /_emulator/token-requests",
            );
        }
    };
    json(StatusCode::OK, &value)
}
