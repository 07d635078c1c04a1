//! A constant-rate, latency-corrected HTTP/1.1 load generator (`bench/run.sh`'s `rate`
//! scenario): `cargo run --release --example rate -- -q 1000 -c 16 -z 15 -m POST -D body.json
//! -H 'Authorization: Bearer KEY' --unique-header Idempotency-Key URL`.
//!
//! A ticker releases one request every 1/rate seconds from the start; a fixed pool of
//! keep-alive connections (plain or TLS, with a client certificate for mTLS) takes them in
//! order. A request's latency runs from its release to the end of its answer, so time spent
//! waiting for a free connection counts (no coordinated omission), as with
//! `oha -q --latency-correction`. Unlike oha it can give every request a header value of its
//! own (`--unique-header`), which an `Idempotency-Key` needs. It prints one JSON object:
//! requests released and answered, the achieved rate, answers by status, connection errors,
//! latency percentiles (nearest rank over every answer), and how late the ticker woke.
//! Independent of graphgate's own code: only hyper, tokio and rustls.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;

/// Sends requests at a constant rate and reports latency corrected for coordinated omission.
#[derive(Parser)]
struct Args {
    /// The target, http:// or https:// (HTTP/1.1).
    url: String,
    /// Requests released per second.
    #[arg(short = 'q', long, default_value_t = 1000.0)]
    rate: f64,
    /// Keep-alive connections, opened before the clock starts.
    #[arg(short = 'c', long, default_value_t = 16)]
    connections: usize,
    /// Seconds during which requests are released.
    #[arg(short = 'z', long, default_value_t = 15.0)]
    duration: f64,
    /// HTTP method.
    #[arg(short = 'm', long, default_value = "GET")]
    method: String,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// The request body, from this file.
    #[arg(short = 'D', long)]
    body: Option<PathBuf>,
    /// A header sent with a value of its own on every request (`<run id>-<sequence>`).
    #[arg(long)]
    unique_header: Option<String>,
    /// PEM CA certificates that the https:// server's certificate must chain to.
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// PEM client certificate chain (mTLS; with --key).
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// The status an answer must have to count as ok [default: any 2xx].
    #[arg(long)]
    expect_status: Option<u16>,
    /// How long answers still due may take after the last release before the run gives up.
    #[arg(long, default_value_t = 30.0)]
    drain_timeout: f64,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Plain TCP or TLS, behind one type for hyper.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Where and how to connect, and the request to send.
struct Target {
    addr: String,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    method: Method,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    unique: Option<(HeaderName, String)>,
}

impl Target {
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let tcp = TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = match &self.tls {
            Some((connector, name)) => Box::new(connector.connect(name.clone(), tcp).await?),
            None => Box::new(tcp),
        };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // The connection's end shows up as an error on the next request.
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn request(&self, seq: u64) -> Result<Request<Full<Bytes>>, Failure> {
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str())
            .body(Full::new(self.body.clone()))?;
        let headers = req.headers_mut();
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        if let Some((name, run)) = &self.unique {
            headers.insert(name.clone(), HeaderValue::try_from(format!("{run}-{seq}"))?);
        }
        Ok(req)
    }
}

/// A request released by the ticker.
struct Job {
    seq: u64,
    released: Instant,
}

/// What became of one request.
struct Sample {
    latency: Duration,
    done: Instant,
    status: Option<u16>,
}

/// One connection's loop: take the next released request, send it, wait for its answer.
async fn worker(
    target: Arc<Target>,
    mut sender: Option<SendRequest<Full<Bytes>>>,
    queue: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
) -> (Vec<Sample>, Vec<String>) {
    let (mut samples, mut errors) = (Vec::new(), Vec::new());
    loop {
        let job = queue.lock().await.recv().await;
        let Some(job) = job else { break };
        let status = match send(&target, &mut sender, job.seq).await {
            Ok(status) => Some(status),
            Err(e) => {
                sender = None;
                errors.push(e.to_string());
                None
            }
        };
        let done = Instant::now();
        samples.push(Sample {
            latency: done - job.released,
            done,
            status,
        });
    }
    (samples, errors)
}

/// Sends request `seq` on the connection (reopened if it was lost) and reads the whole answer.
async fn send(
    target: &Target,
    sender: &mut Option<SendRequest<Full<Bytes>>>,
    seq: u64,
) -> Result<u16, Failure> {
    let conn = match sender {
        Some(conn) if !conn.is_closed() => conn,
        _ => sender.insert(target.connect().await?),
    };
    conn.ready().await?;
    let resp = conn.send_request(target.request(seq)?).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

/// Nearest-rank percentile of sorted `values`, in microseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e6
}

fn summary(sorted: &[Duration]) -> serde_json::Value {
    let mean = if sorted.is_empty() {
        0.0
    } else {
        sorted.iter().map(Duration::as_secs_f64).sum::<f64>() / sorted.len() as f64 * 1e6
    };
    serde_json::json!({
        "p50": percentile(sorted, 50.0),
        "p90": percentile(sorted, 90.0),
        "p99": percentile(sorted, 99.0),
        "p999": percentile(sorted, 99.9),
        "max": percentile(sorted, 100.0),
        "mean": mean,
    })
}

fn target(args: &Args) -> Result<Target, Failure> {
    let uri: Uri = args.url.parse()?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err("the URL must start with http:// or https://".into()),
    };
    let authority = uri.authority().ok_or("the URL has no host")?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let mut headers = vec![(
        http::header::HOST,
        HeaderValue::from_str(authority.as_str())?,
    )];
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("header {h:?} is not 'Name: value'"))?;
        headers.push((
            HeaderName::try_from(name.trim())?,
            HeaderValue::try_from(value.trim())?,
        ));
    }
    let body = match &args.body {
        Some(path) => {
            let body = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            if !headers.iter().any(|(n, _)| n == http::header::CONTENT_TYPE) {
                headers.push((
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ));
            }
            Bytes::from(body)
        }
        None => Bytes::new(),
    };
    let tls = if https {
        let mut roots = rustls::RootCertStore::empty();
        let cacert = args
            .cacert
            .as_ref()
            .ok_or("an https:// URL needs --cacert")?;
        for cert in CertificateDer::pem_file_iter(cacert)? {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match (&args.cert, &args.key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
                builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key)?)?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(host.to_owned())?;
        Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
    } else {
        None
    };
    let unique = match &args.unique_header {
        Some(name) => Some((
            HeaderName::try_from(name.as_str())?,
            format!("rate-{}", uuid::Uuid::new_v4().simple()),
        )),
        None => None,
    };
    Ok(Target {
        addr: format!("{}:{port}", authority.host()),
        tls,
        method: Method::from_bytes(args.method.as_bytes())?,
        path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        headers,
        body,
        unique,
    })
}

async fn run(args: Args) -> Result<serde_json::Value, Failure> {
    if !(args.rate > 0.0 && args.duration > 0.0 && args.connections > 0) {
        return Err("--rate, --duration and --connections must be positive".into());
    }
    let target = Arc::new(target(&args)?);
    let mut connections = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        connections.push(
            target
                .connect()
                .await
                .map_err(|e| format!("connecting to {}: {e}", target.addr))?,
        );
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let queue = Arc::new(Mutex::new(rx));
    let workers: Vec<_> = connections
        .into_iter()
        .map(|c| tokio::spawn(worker(Arc::clone(&target), Some(c), Arc::clone(&queue))))
        .collect();

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration);
    let mut lag = Vec::new();
    for seq in 0u64.. {
        let due = start + Duration::from_secs_f64(seq as f64 / args.rate);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due).await;
        let released = Instant::now();
        lag.push(released - due);
        if tx.send(Job { seq, released }).is_err() {
            break;
        }
    }
    drop(tx);
    let released = lag.len();

    let mut samples = Vec::with_capacity(released);
    let mut errors = Vec::new();
    let drain = tokio::time::timeout(Duration::from_secs_f64(args.drain_timeout), async {
        for w in workers {
            let (s, e) = w.await?;
            samples.extend(s);
            errors.extend(e);
        }
        Ok::<(), tokio::task::JoinError>(())
    })
    .await;
    let gave_up = drain.is_err();
    if let Ok(joined) = drain {
        joined?;
    }

    let mut statuses = BTreeMap::new();
    let mut ok = 0u64;
    let mut latencies: Vec<Duration> = Vec::with_capacity(samples.len());
    for s in &samples {
        if let Some(status) = s.status {
            *statuses.entry(status.to_string()).or_insert(0u64) += 1;
            let good = match args.expect_status {
                Some(want) => status == want,
                None => (200..300).contains(&status),
            };
            ok += u64::from(good);
            latencies.push(s.latency);
        }
    }
    latencies.sort_unstable();
    lag.sort_unstable();
    let last = samples.iter().map(|s| s.done).max().unwrap_or(end);
    let elapsed = last.max(end) - start;
    let answered = latencies.len();
    let mut sample_errors: Vec<String> = errors.clone();
    sample_errors.sort();
    sample_errors.dedup();
    sample_errors.truncate(5);
    Ok(serde_json::json!({
        "url": args.url,
        "rate": args.rate,
        "connections": args.connections,
        "duration_s": args.duration,
        "elapsed_s": elapsed.as_secs_f64(),
        "released": released,
        "answered": answered,
        "ok": ok,
        "not_ok": answered as u64 - ok,
        "errors": errors.len(),
        "unfinished": released - samples.len(),
        "gave_up": gave_up,
        "error_samples": sample_errors,
        "statuses": statuses,
        "achieved_rps": answered as f64 / elapsed.as_secs_f64(),
        "latency_us": summary(&latencies),
        "release_lag_us": summary(&lag),
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(report) => {
            println!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rate: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
