//! The command line (binary only): every command's flags ([`args`], [`serve_audit`]), the
//! environment (read once, [`Env`]), and what each command does and prints ([`operations`]
//! prints the catalog, [`manual`] the completions and man pages). The library does the
//! work; nothing here is on the request path.

pub mod approvals;
pub mod args;
pub mod audit;
mod audit_checkpoints;
mod audit_query;
mod audit_receipt;
mod audit_witness;
#[cfg(feature = "emulator")]
mod demo;
#[cfg(feature = "emulator")]
pub mod emulate;
pub mod manual;
pub mod operations;
pub mod policy;
#[cfg(test)]
mod reference;
pub mod serve;
pub mod serve_audit;
mod serve_demo;
pub mod witness;

use std::collections::HashMap;
use std::ffi::OsString;
use std::process::ExitCode;

use graphgate::audit::ship::ShipConfig;
use graphgate::otlp::{OtlpTls, Signal};
use graphgate::telemetry::{LogEnv, OtlpConfig};
use tokio::net::TcpListener;

/// What a command returns when it cannot even start.
pub type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The process environment, read once at start-up (clap reads the flags' `GRAPHGATE_*` with
/// the flags): the Azure SDK's `AZURE_*` and the credential's `GRAPHGATE_CREDENTIAL` and
/// `GRAPHGATE_CLIENT_ASSERTION_ALG`, OpenTelemetry's `OTEL_*` (the collector's TLS files
/// among them), `RUST_LOG` and `NO_COLOR`.
pub struct Env {
    vars: HashMap<String, String>,
    no_color: Option<OsString>,
}

impl Env {
    /// Reads the environment.
    pub fn read() -> Env {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .filter(|(k, _)| {
                    ["AZURE_", "OTEL_", "GRAPHGATE_"]
                        .iter()
                        .any(|p| k.starts_with(p))
                        || k == "RUST_LOG"
                })
                .collect(),
            no_color: std::env::var_os("NO_COLOR"),
        }
    }

    /// One variable (unset or not UTF-8: `None`).
    pub fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    /// What logging reads.
    pub fn log(&self) -> LogEnv {
        LogEnv {
            rust_log: self.var("RUST_LOG"),
            no_color: self.no_color.clone(),
        }
    }

    /// Whether OTLP export is configured (traces exported, audit records shipped).
    pub fn otlp_configured(&self) -> bool {
        graphgate::audit::ship::otlp_configured(|name| self.var(name))
    }

    /// Trace export, when the standard OpenTelemetry variables ask for it.
    pub fn otlp(&self) -> Option<OtlpConfig> {
        self.otlp_configured().then(|| OtlpConfig {
            traces_endpoint: None,
            service_name: self.service_name(),
            tls: self.otlp_tls(Signal::Traces),
        })
    }

    /// Audit shipping as OTLP log records, when OTLP export is configured.
    pub fn ship(&self) -> Option<ShipConfig> {
        self.otlp_configured().then(|| ShipConfig {
            logs_endpoint: None,
            service_name: self.service_name(),
            tls: self.otlp_tls(Signal::Logs),
        })
    }

    /// The collector's TLS files for `signal` (`OTEL_EXPORTER_OTLP_[TRACES_|LOGS_]CERTIFICATE`,
    /// `..._CLIENT_CERTIFICATE`, `..._CLIENT_KEY`).
    fn otlp_tls(&self, signal: Signal) -> OtlpTls {
        OtlpTls::from_env(signal, |name| self.var(name))
    }

    /// `OTEL_SERVICE_NAME`, or `graphgate`.
    pub fn service_name(&self) -> String {
        self.var("OTEL_SERVICE_NAME")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "graphgate".into())
    }
}

/// A command's result, where a reader that went away (`graphgate ... | head`) is not an
/// error: what it wanted it got.
pub fn reader_gone_is_fine(result: std::io::Result<ExitCode>) -> std::io::Result<ExitCode> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        other => other,
    }
}

/// Writes `text` to standard output (a reader that went away is not an error).
pub fn print_out(text: &str) -> std::io::Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    reader_gone_is_fine(
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map(|()| ExitCode::SUCCESS),
    )
}

/// Binds `addr`; an error names the address and the flag that set it.
pub async fn bind(addr: std::net::SocketAddr, flag: &str) -> Fallible<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (set by {flag}): {e}").into())
}

/// Resolves on SIGTERM or Ctrl-C. SIGTERM is caught from the moment this is called (not
/// first polled): a supervisor may stop the process as soon as its banner is printed.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
