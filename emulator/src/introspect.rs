//! The emulator's own endpoints under `/_emulator/` (any host): the device inventory and
//! the request records, read-only; the injected faults and the arranged action outcomes,
//! read and written; all JSON.

use http::{Method, Response, StatusCode};

use super::devices::ActionOutcome;
use super::faults::Faults;
use super::state::State;
use super::wire::{Body, Request, json, set_header, text};

/// `GET /_emulator/{devices | requests | token-requests}`; `/_emulator/faults`.
pub(crate) fn handle(state: &State, req: &Request, rest: &str) -> Response<Body> {
    if rest == "faults" {
        return faults(state, req);
    }
    if let Some(resp) = super::maa::control(&state.maa, req, rest) {
        return resp;
    }
    if rest == "action-outcomes" {
        return action_outcomes(state, req);
    }
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
                "try /_emulator/devices, /_emulator/requests, /_emulator/token-requests, /_emulator/faults or /_emulator/action-outcomes",
            );
        }
    };
    json(StatusCode::OK, &value)
}

/// `GET` the faults in force (`times` = requests left), `PUT` a JSON [`Faults`] to replace
/// them (400 listing every problem if invalid), `DELETE` to clear them. Each answers with the
/// faults then in force.
fn faults(state: &State, req: &Request) -> Response<Body> {
    match req.method {
        Method::GET => {}
        Method::PUT => {
            let faults = match serde_json::from_slice::<Faults>(&req.body) {
                Ok(faults) => faults,
                Err(e) => {
                    let errors = [format!("not a faults document: {e}")];
                    return json(
                        StatusCode::BAD_REQUEST,
                        &serde_json::json!({ "errors": errors }),
                    );
                }
            };
            if let Err(e) = faults.validate() {
                return json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({ "errors": e.0 }),
                );
            }
            tracing::info!(faults = ?faults, "emulator faults set");
            state.set_faults(faults);
        }
        Method::DELETE => {
            tracing::info!("emulator faults cleared");
            state.set_faults(Faults::default());
        }
        _ => {
            let mut resp = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "/_emulator/faults takes GET, PUT or DELETE",
            );
            set_header(&mut resp, "allow", "GET, PUT, DELETE");
            return resp;
        }
    }
    let current = serde_json::to_value(state.faults().snapshot()).unwrap_or_default();
    json(StatusCode::OK, &current)
}

/// `GET` the arranged action outcomes, `PUT` a JSON list of [`ActionOutcome`]s
/// (`[{"device": "<id>", "action": "wipe", "state": "failed"}]`) to replace them, `DELETE`
/// to clear them (every action then ends `done`). Each answers with the list then in force.
fn action_outcomes(state: &State, req: &Request) -> Response<Body> {
    match req.method {
        Method::GET => {}
        Method::PUT => match serde_json::from_slice::<Vec<ActionOutcome>>(&req.body) {
            Ok(outcomes) => {
                tracing::info!(outcomes = ?outcomes, "emulator action outcomes set");
                state.set_action_outcomes(outcomes);
            }
            Err(e) => {
                let errors = [format!("not a list of action outcomes: {e}")];
                return json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({ "errors": errors }),
                );
            }
        },
        Method::DELETE => state.set_action_outcomes(Vec::new()),
        _ => {
            let mut resp = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "/_emulator/action-outcomes takes GET, PUT or DELETE",
            );
            set_header(&mut resp, "allow", "GET, PUT, DELETE");
            return resp;
        }
    }
    let current = serde_json::to_value(state.action_outcomes()).unwrap_or_default();
    json(StatusCode::OK, &serde_json::json!({ "outcomes": current }))
}
