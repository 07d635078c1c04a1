//! The emulator's listener: TLS (recording each connection's SNI), HTTP/1.1 and h2 via ALPN,
//! graceful shutdown, and the dispatch of each request by path and host.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::state::State;
use super::wire::{Outcome, Request, text};
use super::{callers, entra, graph, idp_control, introspect, workload};
use crate::microsoft::Cloud;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish after shutdown is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts connections on `listener` until `shutdown` resolves, then drains them.
pub(crate) async fn serve(
    state: Arc<State>,
    acceptor: TlsAcceptor,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    let conn = connection(state.clone(), acceptor.clone(), tcp, graceful.watcher());
                    tokio::spawn(conn);
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::debug!(error = %e, "emulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("emulator connections did not drain in time");
    }
    Ok(())
}

/// One connection: TLS handshake, SNI, then HTTP until the client or shutdown ends it.
async fn connection(state: Arc<State>, acceptor: TlsAcceptor, tcp: TcpStream, watcher: Watcher) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return tracing::debug!(error = %e, "emulator TLS handshake failed"),
        Err(_) => return tracing::debug!("emulator TLS handshake timed out"),
    };
    let sni = tls.get_ref().1.server_name().map(str::to_owned);
    let service = service_fn(move |req: http::Request<Incoming>| {
        let state = state.clone();
        let sni = sni.clone();
        async move { dispatch(&state, sni, req).await }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder
        .serve_connection(TokioIo::new(tls), service)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "emulator connection ended with an error");
    }
}

/// Reads the request and hands it to the service its path and host name. `Err` (an
/// injected fault) makes hyper close the connection without an answer.
async fn dispatch(state: &State, sni: Option<String>, req: http::Request<Incoming>) -> Outcome {
    let req = match Request::read(req, sni).await {
        Ok(req) => req,
        Err(resp) => return Ok(resp),
    };
    route(state, &req).await
}

/// Introspection on any host; Graph on a Graph host; Entra's endpoints by path.
async fn route(state: &State, req: &Request) -> Outcome {
    let path = req.uri.path();
    if let Some(rest) = path.strip_prefix("/_emulator/") {
        if let Some(outcome) = idp_control::handle(state, req, rest).await {
            return outcome;
        }
        return Ok(introspect::handle(state, req, rest));
    }
    if req.host_name() == workload::KUBERNETES_HOST {
        return workload::kubernetes(&state.workloads.kubernetes, req).await;
    }
    if let Some(cloud) = Cloud::by_graph_host(&req.host_name()) {
        return graph::handle(state, req, cloud).await;
    }
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Ok(match segs.as_slice() {
        [tenant, "oauth2", "v2.0", "token"] => return entra::token(state, req, tenant).await,
        [tenant, "discovery", "v2.0", "keys"] | [tenant, "discovery", "keys"] => {
            entra::keys(state, req, tenant)
        }
        [tenant, ".well-known", "openid-configuration"] => {
            callers::discovery(state, req, tenant, 1)
        }
        [tenant, "v2.0", ".well-known", "openid-configuration"] => {
            callers::discovery(state, req, tenant, 2)
        }
        _ if Cloud::by_login_host(&req.host_name()).next().is_some() => text(
            StatusCode::NOT_FOUND,
            "the emulated Entra serves only /{tenant}/oauth2/v2.0/token, /{tenant}/discovery/[v2.0/]keys and /{tenant}/[v2.0/].well-known/openid-configuration",
        ),
        _ => super::wire::misdirected(req),
    })
}
