//! An OTLP/HTTP (protobuf) collector on 127.0.0.1:0 for the tests: it decodes exported
//! spans (`/v1/traces`) and log records (`/v1/logs`), and can be taken down (it answers
//! 503) or made to hang (it never answers) to show what a collector outage does. It may
//! serve TLS (and require client certificates) behind rustls, counting failed handshakes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

pub type Spans = Arc<Mutex<Vec<Span>>>;

/// The collector.
pub struct Receiver {
    pub addr: SocketAddr,
    /// Every span received.
    pub spans: Spans,
    /// The `service.name` of every export request.
    pub services: Arc<Mutex<Vec<String>>>,
    /// How many spans have arrived (a signal to wait on).
    pub arrived: tokio::sync::watch::Receiver<usize>,
    /// Every log record accepted (answered 200), in arrival order.
    pub logs: Arc<Mutex<Vec<LogRecord>>>,
    /// How many log records have been accepted.
    pub logs_arrived: tokio::sync::watch::Receiver<usize>,
    /// While false, every export is answered 503 and nothing is kept.
    pub up: Arc<AtomicBool>,
    /// While true, exports are held without an answer.
    pub hang: Arc<AtomicBool>,
    /// How many TLS handshakes failed (a client that does not trust the receiver, or
    /// presents no certificate it accepts).
    pub handshake_failures: tokio::sync::watch::Receiver<usize>,
}

#[derive(Clone)]
struct Shared {
    spans: Spans,
    services: Arc<Mutex<Vec<String>>>,
    count: Arc<tokio::sync::watch::Sender<usize>>,
    logs: Arc<Mutex<Vec<LogRecord>>>,
    logs_count: Arc<tokio::sync::watch::Sender<usize>>,
    up: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
}

pub async fn otlp_receiver() -> Receiver {
    otlp_receiver_tls(None).await
}

/// The receiver serving TLS with `tls` (plain HTTP with `None`).
pub async fn otlp_receiver_tls(tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let (failed_tx, handshake_failures) = tokio::sync::watch::channel(0usize);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (count, arrived) = tokio::sync::watch::channel(0usize);
    let (logs_count, logs_arrived) = tokio::sync::watch::channel(0usize);
    let shared = Shared {
        spans: Arc::default(),
        services: Arc::default(),
        count: Arc::new(count),
        logs: Arc::default(),
        logs_count: Arc::new(logs_count),
        up: Arc::new(AtomicBool::new(true)),
        hang: Arc::new(AtomicBool::new(false)),
    };
    let receiver = Receiver {
        addr,
        spans: Arc::clone(&shared.spans),
        services: Arc::clone(&shared.services),
        arrived,
        logs: Arc::clone(&shared.logs),
        logs_arrived,
        up: Arc::clone(&shared.up),
        hang: Arc::clone(&shared.hang),
        handshake_failures,
    };
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let shared = shared.clone();
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let shared = shared.clone();
                async move { handle(&shared, req).await }
            });
            let http = hyper::server::conn::http1::Builder::new();
            let Some(acceptor) = acceptor.clone() else {
                tokio::spawn(http.serve_connection(TokioIo::new(stream), service));
                continue;
            };
            let failed = failed_tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(stream).await {
                    Ok(tls) => {
                        let _ = http.serve_connection(TokioIo::new(tls), service).await;
                    }
                    Err(_) => {
                        failed.send_modify(|n| *n += 1);
                    }
                }
            });
        }
    });
    receiver
}

async fn handle(
    shared: &Shared,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, hyper::Error> {
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await?.to_bytes();
    while shared.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if !shared.up.load(Ordering::SeqCst) {
        let mut resp = http::Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        return Ok(resp);
    }
    match path.as_str() {
        "/v1/logs" => {
            let export = ExportLogsServiceRequest::decode(body).unwrap();
            let mut logs = shared.logs.lock().unwrap();
            for rl in export.resource_logs {
                for sl in rl.scope_logs {
                    logs.extend(sl.log_records);
                }
            }
            shared.logs_count.send_replace(logs.len());
        }
        _ => {
            let export = ExportTraceServiceRequest::decode(body).unwrap();
            let mut store = shared.spans.lock().unwrap();
            for rs in export.resource_spans {
                let name = rs
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name");
                if let Some(AnyValue::StringValue(name)) =
                    name.and_then(|kv| kv.value.as_ref()?.value.as_ref())
                {
                    shared.services.lock().unwrap().push(name.clone());
                }
                for ss in rs.scope_spans {
                    store.extend(ss.spans);
                }
            }
            shared.count.send_replace(store.len());
        }
    }
    Ok(http::Response::new(Full::new(Bytes::new())))
}

/// A string attribute of a log record.
pub fn log_attr(record: &LogRecord, key: &str) -> Option<String> {
    let kv = record.attributes.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        AnyValue::StringValue(s) => Some(s.clone()),
        AnyValue::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// A log record's body, as text.
pub fn log_body(record: &LogRecord) -> String {
    match record.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    }
}
