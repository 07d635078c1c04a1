//! The admin listener, apart from the callers' port: `/metrics` (Prometheus text),
//! `/healthz` (alive), `/readyz` (policy loaded and its reloader alive with no failed
//! reload, audit writable, token obtainable) and the audit console under `/audit` (see
//! [`crate::console`]). Off loopback, `/metrics` and the console need the admin token. On
//! loopback, only requests addressed to the loopback (`Host: localhost`, `127.0.0.1`,
//! `[::1]`) are answered, so a web page cannot reach it by DNS rebinding. The listener may
//! serve TLS (`--admin-tls-cert`), so the token never crosses the network in clear.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;

use crate::console::Console;
use crate::console::auth::AdminToken;
use crate::gateway::Gateway;
use crate::server::accept;

/// Longest a readiness probe waits for a token.
const TOKEN_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Who can reach the admin listener, which decides how much `/readyz` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// A loopback address: the full detail.
    Loopback,
    /// Reachable from the network: no policy hash, no reload error text.
    Network,
}

impl Exposure {
    /// The exposure of a listener bound to `addr`.
    pub fn of(addr: std::net::SocketAddr) -> Self {
        match addr.ip().is_loopback() {
            true => Exposure::Loopback,
            false => Exposure::Network,
        }
    }
}

/// What the admin listener serves besides health and readiness.
#[derive(Clone, Default)]
pub struct AdminOptions {
    /// The token `/metrics` and the console need off loopback.
    pub token: Option<AdminToken>,
    /// The audit console, when there is an audit log.
    pub console: Option<Arc<Console>>,
}

impl AdminOptions {
    /// A console over `gateway`'s audit log (if it has one), without checkpoint status.
    /// Call within a Tokio runtime.
    pub fn for_gateway(gateway: &Gateway) -> Self {
        let audit = gateway.audit();
        let console = audit
            .path()
            .map(|log| Console::lazy(log, audit.durable_seq(), None));
        AdminOptions {
            token: None,
            console,
        }
    }
}

/// Serves the admin endpoints on `listener` until `shutdown` resolves, with the console
/// over the gateway's audit log and no admin token.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let options = AdminOptions::for_gateway(&gateway);
    serve_with(listener, gateway, options, shutdown).await
}

/// Serves the admin endpoints on `listener` until `shutdown` resolves.
pub async fn serve_with(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    options: AdminOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with_tls(listener, gateway, options, None, shutdown).await
}

/// [`serve_with`], over TLS when `tls` is given (see [`admin_tls`]).
pub async fn serve_with_tls(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    options: AdminOptions,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let exposure = Exposure::of(listener.local_addr()?);
    let options = Arc::new(options);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    while let Some((stream, _)) = accept::next(&listener, &mut shutdown, "admin").await {
        let (gateway, options) = (Arc::clone(&gateway), Arc::clone(&options));
        let service = service_fn(move |req| {
            let (gateway, options) = (Arc::clone(&gateway), Arc::clone(&options));
            async move {
                // DNS rebinding: a page of another site, its name resolved to 127.0.0.1,
                // still names its own host.
                if exposure == Exposure::Loopback && !addressed_to_loopback(&req) {
                    return Ok::<_, std::convert::Infallible>(misdirected());
                }
                let resp = handle_with(&gateway, &req, exposure, &options).await;
                Ok(resp)
            }
        });
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let ended = match acceptor {
                None => http.serve_connection(TokioIo::new(stream), service).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(ADMIN_HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(tls)) => http.serve_connection(TokioIo::new(tls), service).await,
                        Ok(Err(e)) => {
                            return tracing::debug!(error = %e, "admin TLS handshake failed");
                        }
                        Err(_) => return tracing::debug!("admin TLS handshake timed out"),
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
    Ok(())
}

/// Longest TLS handshake on the admin listener.
const ADMIN_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin listener's TLS: the certificate and key as `tls` holds them (no client
/// certificates: the admin token authenticates), HTTP/1.1 only.
pub fn admin_tls(
    tls: &crate::tls::ServerTls,
) -> Result<Arc<rustls::ServerConfig>, crate::tls::ServerTlsError> {
    let mut config = crate::tls::server_config(tls)?.as_ref().clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Whether the request names a loopback host (`localhost`, a loopback address; any port):
/// what a browser sends for a page it loaded from this listener, never for another site's.
pub fn addressed_to_loopback<B>(req: &Request<B>) -> bool {
    let Some(host) = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let Ok(authority) = host.parse::<http::uri::Authority>() else {
        return false;
    };
    let name = authority.host();
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// 421 for a request to the loopback listener that names another host.
fn misdirected() -> Response<Full<Bytes>> {
    reply(
        StatusCode::MISDIRECTED_REQUEST,
        "text/plain",
        "this admin listener is on loopback and answers requests for localhost, 127.0.0.1 or [::1] only (the Host header names another host)\n".into(),
    )
}

/// Answers one admin request as a loopback listener does (no socket needed: tests call it directly).
pub async fn handle<B>(gateway: &Gateway, req: &Request<B>) -> Response<Full<Bytes>> {
    handle_as(gateway, req, Exposure::Loopback).await
}

/// Answers one admin request for a listener with this exposure (no console, no token).
pub async fn handle_as<B>(
    gateway: &Gateway,
    req: &Request<B>,
    exposure: Exposure,
) -> Response<Full<Bytes>> {
    handle_with(gateway, req, exposure, &AdminOptions::default()).await
}

/// The console's approvals pages (`/audit/approvals`, `/audit/approvals/{id}`), read from
/// the state store (every replica shows the same).
async fn approvals_page(gateway: &Gateway, console: &Console, path: &str) -> Response<Full<Bytes>> {
    let approvals = gateway.approvals();
    match path.trim_end_matches('/').strip_prefix("/audit/approvals") {
        Some("") => {
            let all = approvals.all(gateway.state()).await;
            console.approvals(all.map_err(|e| e.to_string()))
        }
        Some(rest) => match rest.strip_prefix('/') {
            Some(id) if !id.is_empty() && !id.contains('/') => {
                let one = approvals.resource(gateway.state(), id).await;
                console.approval(id, one.map_err(|e| e.to_string()))
            }
            _ => console.handle(path, None),
        },
        None => console.handle(path, None),
    }
}

/// Answers one admin request: off loopback, `/metrics` and the console only with the token.
pub async fn handle_with<B>(
    gateway: &Gateway,
    req: &Request<B>,
    exposure: Exposure,
    options: &AdminOptions,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let guarded = path == "/metrics" || path == "/audit" || path.starts_with("/audit/");
    if guarded
        && exposure == Exposure::Network
        && let Some(refusal) = refuse_without_token(req, path, options.token.as_ref())
    {
        return refusal;
    }
    if let Some(tile) = path.strip_prefix("/audit/tlog/") {
        return tlog(gateway, req.method(), tile).await;
    }
    if path == "/audit" || path.starts_with("/audit/") {
        if req.method() != Method::GET {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "GET only\n".into(),
            );
        }
        return match &options.console {
            Some(console) if path.starts_with("/audit/approvals") => {
                approvals_page(gateway, console, path).await
            }
            Some(console) => console.handle(path, req.uri().query()),
            None => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "the audit console needs an audit log (--audit-log)\n".into(),
            ),
        };
    }
    if req.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            crate::metrics::encode(),
        ),
        "/healthz" => reply(
            StatusCode::OK,
            "application/json",
            json!({"alive": true}).to_string(),
        ),
        "/readyz" => {
            let (ready, mut detail) = readiness(gateway).await;
            if exposure == Exposure::Network {
                redact(&mut detail);
            }
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, "application/json", detail.to_string())
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// The log as C2SP tiles (see [`crate::audit::read::tiles`]), read off the async runtime.
async fn tlog(gateway: &Gateway, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    let audit = gateway.audit();
    let (Some(log), Some(latest)) = (audit.path(), audit.latest_checkpoint()) else {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "the log's tiles need signed checkpoints (--audit-signing-key-file)\n".into(),
        );
    };
    let (log, latest, path) = (log.to_owned(), latest.clone(), path.to_owned());
    let answer = tokio::task::spawn_blocking(move || {
        crate::audit::read::tiles::answer(&log, &latest, &path)
    })
    .await;
    let (status, content_type, body) = match answer {
        Ok(a) => a,
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            b"failed\n".to_vec(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    // The checkpoint changes; a tile or bundle at a path never does.
    let cache = match status == StatusCode::OK && !path_is_checkpoint(&resp) {
        true => "public, max-age=31536000, immutable",
        false => "no-store",
    };
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static(cache),
    );
    resp
}

fn path_is_checkpoint(resp: &Response<Full<Bytes>>) -> bool {
    resp.headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"))
}

/// A 401 unless the request carries the admin token (none configured: always a 401 that
/// says how to set one). Browsers are asked for it with Basic (the token as password).
fn refuse_without_token<B>(
    req: &Request<B>,
    path: &str,
    token: Option<&AdminToken>,
) -> Option<Response<Full<Bytes>>> {
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(http::HeaderValue::as_bytes);
    if token.is_some_and(|t| t.admits(header)) {
        return None;
    }
    let text = match token {
        Some(_) => {
            "this admin listener is not on loopback: send the admin token (Authorization: Bearer <token>)\n"
        }
        None => {
            "this admin listener is not on loopback: /metrics and /audit need an admin token, and none is configured (--admin-token-file / GRAPHGATE_ADMIN_TOKEN_FILE)\n"
        }
    };
    let challenge = match path {
        "/metrics" => "Bearer",
        _ => r#"Basic realm="graphgate admin", charset="UTF-8""#,
    };
    let mut resp = reply(StatusCode::UNAUTHORIZED, "text/plain", text.into());
    resp.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static(challenge),
    );
    Some(resp)
}

/// Whether the gateway can serve privileged calls, with a JSON detail.
pub async fn readiness(gateway: &Gateway) -> (bool, serde_json::Value) {
    let policy_hash = gateway.policy_hash();
    let audit = gateway.audit().status();
    let token = match tokio::time::timeout(TOKEN_CHECK_TIMEOUT, gateway.broker().token()).await {
        Ok(Ok(_)) => "ok".to_owned(),
        Ok(Err(_)) => "error: no token could be obtained".to_owned(),
        Err(_) => "error: timed out".to_owned(),
    };
    // The app must hold every permission the policy's operations need; more is a warning.
    let privilege = gateway.least_privilege();
    let (mut missing, mut excess) = privilege.as_deref().map_or((Vec::new(), Vec::new()), |r| {
        (r.missing.clone(), r.excess.clone())
    });
    // Multi Admin Approval handling reads Intune's approval requests: one read permission.
    if gateway.maa_handling() {
        let read = crate::approval::maa::READ_PERMISSIONS;
        excess.retain(|p| !read.contains(&p.as_str()));
        let granted = match gateway.broker().token().await {
            Ok(t) => t.claims.roles.iter().any(|r| read.contains(&r.as_str())),
            Err(_) => true, // the token check says what is wrong
        };
        if !granted {
            missing.push(format!(
                "{} (or {}): --maa-handling reads Intune's approval requests",
                read[0], read[1]
            ));
        }
    }
    crate::metrics::permissions(missing.len(), excess.len());
    // A failed reload leaves the old policy in force, but not the one the operator wrote;
    // a stopped reloader would leave every later edit (a revocation, say) unapplied.
    let reload_error = gateway.reload_error();
    let reloader = gateway.reloader_health();
    let policy_ok = !policy_hash.is_empty()
        && reload_error.is_none()
        && reloader != crate::gateway::ReloaderHealth::Stopped;
    // Privileged requests are refused while the state store does not answer (fail closed),
    // so a replica that cannot reach it is not ready.
    let state = gateway.state();
    let (state_ok, state_status, state_kind) = match state.ping().await {
        Ok(()) => (true, "ok".to_owned(), None),
        Err(e) => (false, format!("error: {e}"), Some(e.kind().as_str())),
    };
    // A witness that has cosigned more than the log holds (or refuses its history) means
    // records were cut off or rewritten: not ready. A witness that is merely down is not a
    // reason (its quorum's age grows instead).
    let witnesses = gateway.audit().witnesses();
    let witnesses_ok = witnesses.is_none_or(|w| w.is_ready());
    // Shutting down: the load balancer should send nothing more here.
    let draining = gateway.is_draining();
    let ready = policy_ok
        && audit != "failing"
        && token == "ok"
        && missing.is_empty()
        && state_ok
        && witnesses_ok
        && !draining;
    let detail = json!({
        "ready": ready,
        "draining": draining,
        "checks": {
            "policy": {
                "ok": policy_ok,
                "version": policy_hash,
                "last_reload_error": reload_error.as_deref(),
                "reloader": reloader.as_str(),
            },
            "audit": {"ok": audit != "failing", "status": audit},
            "witnesses": witnesses.map(|w| w.detail()),
            "token": {"ok": token == "ok", "status": token},
            "permissions": {"ok": missing.is_empty(), "missing": missing, "excess": excess},
            "state": {
                "ok": state_ok,
                "shared": state.is_shared(),
                "store": state.describe(),
                "status": state_status,
                "error_kind": state_kind,
            },
        }
    });
    (ready, detail)
}

/// Leaves out what a network observer should not learn: which policy is loaded (its hash)
/// and the text of a failed reload (file paths, caller and rule names). Whether a reload
/// failed stays.
fn redact(detail: &mut serde_json::Value) {
    if let Some(policy) = detail
        .pointer_mut("/checks/policy")
        .and_then(serde_json::Value::as_object_mut)
    {
        policy.remove("version");
        let failed = policy
            .remove("last_reload_error")
            .is_some_and(|e| !e.is_null());
        policy.insert("last_reload_failed".into(), failed.into());
    }
    // The store's address and error text name internal hosts; whether it answers stays.
    if let Some(state) = detail
        .pointer_mut("/checks/state")
        .and_then(serde_json::Value::as_object_mut)
    {
        state.remove("store");
        state.remove("status");
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_readiness_detail_has_no_policy_hash_or_reload_error() {
        let mut detail = json!({"ready": false, "checks": {
            "policy": {"ok": true, "version": "ab12", "last_reload_error": "/etc/p.yaml:3: caller \"x\""},
            "audit": {"ok": true, "status": "ok"},
            "state": {"ok": false, "shared": true, "store": "redis://cache.internal:6379/0",
                      "status": "error: connection (refused by cache.internal)", "error_kind": "connection"}}});
        redact(&mut detail);
        let text = detail.to_string();
        assert!(!text.contains("ab12") && !text.contains("p.yaml"), "{text}");
        assert!(!text.contains("cache.internal"), "{text}");
        assert_eq!(detail["checks"]["state"]["error_kind"], "connection");
        assert_eq!(detail["checks"]["state"]["ok"], false);
        assert_eq!(detail["checks"]["policy"]["last_reload_failed"], true);
        assert_eq!(detail["checks"]["audit"]["status"], "ok", "the rest stays");
        assert_eq!(
            Exposure::of("0.0.0.0:9090".parse().unwrap()),
            Exposure::Network
        );
        assert_eq!(
            Exposure::of("[::1]:9090".parse().unwrap()),
            Exposure::Loopback
        );
    }
}
