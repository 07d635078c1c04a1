//! The outbound HTTPS client shared by token requests and Graph forwarding: rustls with
//! certificate verification, pooled keep-alive connections, and a curl-style connect-to
//! override that changes where a host's connection goes but never its URL, Host, SNI or checks.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tower_service::Service;

use crate::tls;

/// Largest answer body read from Graph, by forwarding and by reconciliation alike: past it
/// the answer is refused, never buffered whole.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The pooled client every outbound request uses.
pub type HttpClient = Client<HttpsConnector<ConnectTo>, Full<Bytes>>;

/// One `host:port=ip:port` override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRule {
    host: String,
    port: u16,
    to: SocketAddr,
}

/// A malformed `GRAPHGATE_CONNECT_TO` entry.
#[derive(Debug, thiserror::Error)]
#[error("GRAPHGATE_CONNECT_TO entry {0:?} is not of the form host:port=ip:port")]
pub struct BadConnectRule(String);

/// Parses `host:port=ip:port[,host:port=ip:port...]`, like curl's `--connect-to`.
pub fn parse_connect_to(spec: &str) -> Result<Vec<ConnectRule>, BadConnectRule> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| {
            let bad = || BadConnectRule(entry.to_owned());
            let (from, to) = entry.split_once('=').ok_or_else(bad)?;
            let (host, port) = from.rsplit_once(':').ok_or_else(bad)?;
            Ok(ConnectRule {
                host: host.to_ascii_lowercase(),
                port: port.parse().map_err(|_| bad())?,
                to: to.parse().map_err(|_| bad())?,
            })
        })
        .collect()
}

/// A TCP connector that applies connect-to rules, then connects.
#[derive(Clone)]
pub struct ConnectTo {
    inner: HttpConnector,
    rules: Arc<[ConnectRule]>,
}

impl ConnectTo {
    /// A TCP connector (plain `http://` allowed; TLS is the caller's layer) applying `rules`,
    /// giving up a connect after `connect_timeout`: for the gateway's other outbound
    /// clients (the checkpoint push), so `GRAPHGATE_CONNECT_TO` applies to them too.
    pub fn new(rules: &[ConnectRule], connect_timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        ConnectTo {
            inner: http,
            rules: rules.to_vec().into(),
        }
    }

    fn target(&self, dst: &Uri) -> Option<Uri> {
        let host = dst.host()?;
        let port = dst
            .port_u16()
            .unwrap_or(if dst.scheme_str() == Some("http") {
                80
            } else {
                443
            });
        let rule = self
            .rules
            .iter()
            .find(|r| r.port == port && r.host.eq_ignore_ascii_case(host))?;
        format!("http://{}", rule.to).parse().ok()
    }
}

impl Service<Uri> for ConnectTo {
    type Response = TokioIo<TcpStream>;
    type Error = <HttpConnector as Service<Uri>>::Error;
    type Future = <HttpConnector as Service<Uri>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let dst = self.target(&dst).unwrap_or(dst);
        self.inner.call(dst)
    }
}

/// How the outbound client is built.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Connect-to overrides (tests and demos only).
    pub connect_to: Vec<ConnectRule>,
    /// Extra PEM CA certificates trusted besides the public roots.
    pub extra_ca_pem: Option<String>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
}

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    /// Extra CA certificates could not be read.
    #[error(transparent)]
    Pem(#[from] tls::PemError),
    /// rustls refused the configuration.
    #[error("TLS client configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Reads `GRAPHGATE_EXTRA_CA_FILE` contents.
pub fn read_extra_ca(path: &Path) -> Result<String, tls::PemError> {
    let pem = std::fs::read_to_string(path).map_err(|e| tls::PemError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    tls::certs_from_pem(&pem)?;
    Ok(pem)
}

/// Builds the shared outbound client.
pub fn build_client(config: &UpstreamConfig) -> Result<HttpClient, UpstreamSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = &config.extra_ca_pem {
        for cert in tls::certs_from_pem(pem)? {
            roots.add(cert)?;
        }
    }
    let tls_config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_nodelay(true);
    let connector = ConnectTo {
        inner: http,
        rules: config.connect_to.clone().into(),
    };
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls_config)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(connector);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(256)
        .build(https))
}

/// A client for the gateway's other outbound calls (checkpoint pushes, approval webhooks):
/// `https://` verified against the public roots and `extra_ca_pem`, plain `http://` where
/// the caller allowed it (its URL check decides), HTTP/1.1, connect-to overrides applied.
pub fn side_client(
    connect_to: &[ConnectRule],
    extra_ca_pem: Option<&str>,
    connect_timeout: Duration,
) -> Result<HttpClient, UpstreamSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_ca_pem
        .map(tls::certs_from_pem)
        .transpose()?
        .unwrap_or_default()
    {
        roots.add(cert)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(ConnectTo::new(connect_to, connect_timeout));
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// A boxed future, for trait objects that return futures.
pub type BoxFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_to_parses_like_curl() {
        let rules = parse_connect_to(
            "graph.microsoft.com:443=127.0.0.1:8443, Login.microsoftonline.com:443=127.0.0.1:9443",
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1].host, "login.microsoftonline.com");
        assert_eq!(rules[1].to, "127.0.0.1:9443".parse().unwrap());
        assert!(parse_connect_to("graph.microsoft.com=127.0.0.1:1").is_err());
        assert!(parse_connect_to("graph.microsoft.com:443=nowhere").is_err());
        assert!(parse_connect_to("").unwrap().is_empty());
    }

    #[test]
    fn rules_redirect_only_their_host_and_port() {
        let c = ConnectTo {
            inner: HttpConnector::new(),
            rules: parse_connect_to("graph.microsoft.us:443=127.0.0.1:1234")
                .unwrap()
                .into(),
        };
        let t = |u: &str| c.target(&u.parse().unwrap()).map(|u| u.to_string());
        assert_eq!(
            t("https://GRAPH.microsoft.us/v1.0/x").as_deref(),
            Some("http://127.0.0.1:1234/")
        );
        assert_eq!(t("https://graph.microsoft.us:8443/v1.0/x"), None);
        assert_eq!(t("https://graph.microsoft.com/v1.0/x"), None);
    }
}
