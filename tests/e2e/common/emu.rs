//! The emulator on its own on 127.0.0.1:0, and a tiny client that trusts only its CA, names
//! the cloud host by SNI and Host, and speaks HTTP/1.1 or HTTP/2: for testing the emulator
//! itself (the gateway harness is in `mod.rs`).

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use graphgate_emulator::{Emulator, EmulatorConfig};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A running emulator.
pub struct Harness {
    pub emu: Arc<Emulator>,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// What came back.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The header's text, empty if it is absent.
    pub fn text_header(&self, name: &str) -> &str {
        self.header(name).unwrap_or_default()
    }
}

/// Starts an emulator with `config` on 127.0.0.1:0.
pub async fn start(config: EmulatorConfig) -> Harness {
    let emu = Emulator::new(config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(emu.clone().serve(listener, async move {
        let _ = stopped.await;
    }));
    Harness {
        emu,
        addr,
        stop: Some(stop),
        server,
    }
}

impl Harness {
    /// One request on a fresh connection to the cloud host `sni`; `Err` if the connection
    /// ended without an answer.
    pub async fn try_send(
        &self,
        sni: &str,
        req: Request<Full<Bytes>>,
        h2: bool,
    ) -> Result<Reply, hyper::Error> {
        send_to(self.addr, self.emu.ca_pem(), sni, req, h2).await
    }

    /// HTTP/1.1 to `host` (SNI and Host header both `host`).
    pub async fn send(
        &self,
        host: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let req = request(host, method, path, headers, body);
        self.try_send(host, req, false).await.unwrap()
    }

    /// Stops the emulator and waits for it to drain.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.server.await.unwrap().unwrap();
    }
}

/// A request to `host` (its Host header) with `headers` and `body`.
pub fn request(
    host: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
}

/// One request on a fresh TLS connection to `addr`, trusting only `ca_pem`, with `host` as
/// SNI; `Err` if the connection ended without an answer.
pub async fn send_to(
    addr: SocketAddr,
    ca_pem: &str,
    host: &str,
    req: Request<Full<Bytes>>,
    h2: bool,
) -> Result<Reply, hyper::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in graphgate::tls::certs_from_pem(ca_pem).unwrap() {
        roots.add(cert).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(graphgate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    let io = TokioIo::new(stream);
    let resp = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await?
    };
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
        version: parts.version,
    })
}

/// The decoded JSON of part `index` (0 header, 1 claims) of a JWT.
pub fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}
