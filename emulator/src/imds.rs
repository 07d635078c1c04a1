//! The emulated Azure Instance Metadata Service token endpoint (graph-facts §2d), on a
//! plain-HTTP listener of its own as on a VM: `GET /metadata/identity/oauth2/token` with
//! `Metadata: true`, `api-version` and `resource` (not `scope`), optional `client_id` for a
//! user-assigned identity; string-valued `expires_in`. Every attempt is recorded.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::{Method, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::claims;
use super::records::TokenRequestRecord;
use super::state::State;
use super::wire::{Body, Request, json, text};
use crate::microsoft::Cloud;

/// IMDS's token path.
const TOKEN_PATH: &str = "/metadata/identity/oauth2/token";

/// Accepts plain HTTP/1.1 connections until `shutdown` resolves.
pub(crate) async fn serve(
    state: Arc<State>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<Incoming>| {
                        let state = state.clone();
                        async move {
                            let resp = match Request::read(req, None).await {
                                Ok(req) => handle(&state, &req),
                                Err(resp) => resp,
                            };
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service);
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "emulator IMDS connection ended with an error");
                    }
                });
            }
        }
    }
}

fn imds_error(status: StatusCode, error: &str, description: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({"error": error, "error_description": description}),
    )
}

/// One IMDS request.
pub(crate) fn handle(state: &State, req: &Request) -> Response<Body> {
    if req.uri.path() != TOKEN_PATH {
        return text(
            StatusCode::NOT_FOUND,
            "the emulated IMDS serves only /metadata/identity/oauth2/token",
        );
    }
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let mut record = TokenRequestRecord {
        host: req.host.clone(),
        sni: None,
        tenant: state.config.tenant_id.clone(),
        client_id: get("client_id").map(str::to_owned),
        scope: get("resource").map(str::to_owned),
        grant_type: Some("imds".into()),
        status: 0,
        error_code: None,
        credential: None,
    };
    let resp = answer(state, req, &get, &mut record);
    record.status = resp.status().as_u16();
    state.record_token(record);
    resp
}

fn answer<'q>(
    state: &State,
    req: &Request,
    get: &dyn Fn(&str) -> Option<&'q str>,
    record: &mut TokenRequestRecord,
) -> Response<Body> {
    if req.method != Method::GET {
        return imds_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "Only GET is supported",
        );
    }
    // IMDS's SSRF guard: the header must be present and exactly "true".
    if req.header("metadata") != Some("true") {
        return imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required metadata header not specified",
        );
    }
    if get("api-version").is_none() {
        return imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'api-version' is missing",
        );
    }
    let Some(resource) = get("resource") else {
        return imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'resource' is missing",
        );
    };
    let wanted = resource.trim_end_matches('/');
    let Some(cloud) = Cloud::ALL
        .into_iter()
        .find(|c| c.endpoints().resource.eq_ignore_ascii_case(wanted))
    else {
        return imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            "AADSTS500011: The resource principal was not found",
        );
    };
    let identity = match get("client_id") {
        Some(id) => state
            .config
            .managed_identities
            .iter()
            .find(|m| m.eq_ignore_ascii_case(id)),
        None => state.config.managed_identities.first(),
    };
    let app = identity.and_then(|id| {
        state
            .config
            .apps
            .iter()
            .find(|a| a.client_id.eq_ignore_ascii_case(id))
    });
    let Some(app) = app else {
        return imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Identity not found",
        );
    };
    record.client_id = Some(app.client_id.clone());
    record.credential = Some("managed_identity".into());
    let lifetime = i64::try_from(state.config.token_lifetime.as_secs()).unwrap_or(i64::MAX / 4);
    let now = crate::clock::utc_now().timestamp();
    match claims::mint(
        state.key,
        &state.config.tenant_id,
        app,
        cloud,
        now,
        lifetime,
    ) {
        Ok(token) => json(
            StatusCode::OK,
            &serde_json::json!({
                "access_token": token,
                "refresh_token": "",
                "expires_in": lifetime.to_string(),
                "expires_on": (now + lifetime).to_string(),
                "not_before": now.to_string(),
                "resource": resource,
                "token_type": "Bearer",
            }),
        ),
        Err(e) => {
            tracing::error!(error = %e, "emulator could not sign an IMDS token");
            text(StatusCode::INTERNAL_SERVER_ERROR, "something went wrong")
        }
    }
}
