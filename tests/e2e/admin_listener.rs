//! The admin listener of the real binary: on loopback it answers only requests addressed to
//! the loopback (a page of another site reached by DNS rebinding names its own host, and
//! gets 421); off loopback it can serve TLS, so the admin token crosses the network
//! encrypted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use graphgate_emulator::EmulatorConfig;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::common::pki::{self, Ca};
use crate::common::{read_until_closed, served};

/// `GET path` on `io` with exactly these headers; the status and the body.
async fn get(
    io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::get(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// `cmd` with its admin listener on 0.0.0.0:0 instead of loopback.
fn off_loopback(cmd: std::process::Command) -> std::process::Command {
    let mut moved = std::process::Command::new(cmd.get_program());
    let mut args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
    let at = args.iter().position(|a| a == "--admin-listen").unwrap() + 1;
    args[at] = "0.0.0.0:0".into();
    moved.args(args).env_clear();
    for (name, value) in cmd.get_envs() {
        if let Some(value) = value {
            moved.env(name, value);
        }
    }
    moved
}

async fn plain(addr: SocketAddr) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(addr).await.unwrap()
}

#[tokio::test]
async fn a_loopback_admin_listener_answers_only_requests_for_a_loopback_host() {
    let backend = served::backend(EmulatorConfig::default()).await;
    let gw = backend.serve(backend.serve_command()).await;
    let admin = gw.admin;
    let port = admin.port();
    for path in ["/readyz", "/metrics", "/audit", "/healthz"] {
        for host in [
            format!("evil.example:{port}"),
            "evil.example".to_owned(),
            format!("localhost.evil.example:{port}"),
            format!("127.0.0.1.evil.example:{port}"),
        ] {
            let (status, body) = get(plain(admin).await, path, &[("host", &host)]).await;
            assert_eq!(status, 421, "{path} for {host}: {body}");
            assert!(body.contains("answers requests for localhost"), "{body}");
            assert!(!body.contains("ready"), "nothing else is told");
        }
        let (status, _) = get(plain(admin).await, path, &[]).await;
        assert_eq!(status, 421, "{path} without a Host");
    }
    for host in [
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_owned(),
        format!("[::1]:{port}"),
        // An SSH tunnel's local port differs from the listener's.
        "localhost:18080".to_owned(),
    ] {
        let (status, body) = get(plain(admin).await, "/metrics", &[("host", &host)]).await;
        assert_eq!(status, 200, "{host}: {body}");
        assert!(body.contains("graphgate_"), "{host}");
    }
    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");
}

#[tokio::test]
async fn the_admin_listener_serves_tls_so_the_token_is_never_in_clear() {
    let ca = Ca::new("admin CA");
    let leaf = ca.server();
    let backend = served::backend(EmulatorConfig::default()).await;
    let d = &backend.dir;
    std::fs::write(d.join("admin.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(d.join("admin.key"), &leaf.key_pem).unwrap();
    let token = "admin-token-0123456789abcdef";
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(d.join("admin-token"))
            .unwrap();
        std::io::Write::write_all(&mut f, token.as_bytes()).unwrap();
    }
    // Off loopback (the pod network), with the token, over TLS.
    let mut cmd = off_loopback(backend.serve_command());
    cmd.env("GRAPHGATE_ADMIN_TOKEN_FILE", d.join("admin-token"))
        .env("GRAPHGATE_ADMIN_TLS_CERT", d.join("admin.crt"))
        .env("GRAPHGATE_ADMIN_TLS_KEY", d.join("admin.key"));
    let gw = backend.serve(cmd).await;
    let admin = SocketAddr::from(([127, 0, 0, 1], gw.admin.port()));
    let tls = || async {
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(pki::client_config(&ca, None))
            .connect(name, plain(admin).await)
            .await
            .unwrap()
    };
    let bearer = format!("Bearer {token}");
    let (status, body) = get(
        tls().await,
        "/metrics",
        &[("host", "graphgate.example"), ("authorization", &bearer)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("graphgate_"));
    let (status, _) = get(tls().await, "/metrics", &[("host", "graphgate.example")]).await;
    assert_eq!(status, 401, "the token is still needed");
    let (status, body) = get(tls().await, "/healthz", &[("host", "graphgate.example")]).await;
    assert_eq!((status, body.as_str()), (200, r#"{"alive":true}"#));
    // In clear, nothing is answered: no HTTP comes back to a plain request.
    let mut clear = plain(admin).await;
    tokio::io::AsyncWriteExt::write_all(
        &mut clear,
        format!("GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: {bearer}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let (read, closed) = read_until_closed(&mut clear, Duration::from_secs(15)).await;
    assert!(closed, "the connection is closed");
    assert!(
        !String::from_utf8_lossy(&read).contains("HTTP/1.1"),
        "{read:?}"
    );
    // A client that does not trust the certificate does not get through either.
    let untrusted = pki::client_config(&Ca::new("another CA"), None);
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let refused = tokio_rustls::TlsConnector::from(Arc::clone(&untrusted))
        .connect(name, plain(admin).await)
        .await;
    assert!(refused.is_err());
    let (status, out) = gw.terminate().await;
    assert!(status.success(), "{out}");
}
