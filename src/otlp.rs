//! The OTLP/HTTP exporters' transport, for traces and for audit shipping: `http://` or
//! `https://` collectors. Over TLS the collector's certificate is checked against the
//! system's roots, or, when `OTEL_EXPORTER_OTLP_CERTIFICATE` (or the signal's own
//! `OTEL_EXPORTER_OTLP_{TRACES,LOGS}_CERTIFICATE`) names a PEM file, against the CAs in it;
//! a client certificate is presented when `..._CLIENT_CERTIFICATE` and `..._CLIENT_KEY` are
//! set (mutual TLS). The variable names and their precedence are OpenTelemetry's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry_http::hyper::HyperClient;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use crate::tls;

/// Which signal an exporter sends (its variables are `OTEL_EXPORTER_OTLP_<SIGNAL>_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Log records (the shipped audit records).
    Logs,
}

impl Signal {
    fn prefix(self) -> &'static str {
        match self {
            Signal::Traces => "OTEL_EXPORTER_OTLP_TRACES_",
            Signal::Logs => "OTEL_EXPORTER_OTLP_LOGS_",
        }
    }
}

/// The TLS files of one signal's exporter, as the environment names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtlpTls {
    /// PEM CAs the collector's certificate must chain to (instead of the system's roots).
    pub certificate: Option<PathBuf>,
    /// PEM certificate chain presented to the collector.
    pub client_certificate: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub client_key: Option<PathBuf>,
}

impl OtlpTls {
    /// The files `var` names for `signal`: the signal's own variable, else the general one
    /// (`OTEL_EXPORTER_OTLP_CERTIFICATE`, `_CLIENT_CERTIFICATE`, `_CLIENT_KEY`).
    pub fn from_env(signal: Signal, var: impl Fn(&str) -> Option<String>) -> Self {
        let file = |suffix: &str| {
            [
                format!("{}{suffix}", signal.prefix()),
                format!("OTEL_EXPORTER_OTLP_{suffix}"),
            ]
            .iter()
            .find_map(|name| var(name).filter(|v| !v.is_empty()))
            .map(PathBuf::from)
        };
        OtlpTls {
            certificate: file("CERTIFICATE"),
            client_certificate: file("CLIENT_CERTIFICATE"),
            client_key: file("CLIENT_KEY"),
        }
    }
}

/// The exporter's transport could not be set up (a start-up error: nothing is exported in
/// clear or unchecked instead).
#[derive(Debug, thiserror::Error)]
pub enum OtlpTlsError {
    /// A certificate or key file could not be read.
    #[error("OTLP exporter TLS: {0}")]
    Pem(#[from] tls::PemError),
    /// The client key could not be read.
    #[error("OTLP exporter TLS: cannot read the client key {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A client certificate without its key, or a key without its certificate.
    #[error(
        "OTLP exporter TLS: set both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY (or neither)"
    )]
    HalfClientIdentity,
    /// rustls refused the configuration (e.g. a key that does not match its certificate).
    #[error("OTLP exporter TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// An OTLP exporter (traces, or audit shipping) could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ExportSetupError {
    /// The exporter refused its configuration.
    #[error(transparent)]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The collector's TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] OtlpTlsError),
}

/// The HTTP client an OTLP exporter sends with.
pub type OtlpHttpClient = HyperClient<HttpsConnector<HttpConnector>>;

/// An HTTP client for `http://` and `https://` collectors with `tls`'s trust and identity;
/// each export may take at most `timeout`.
pub fn http_client(tls: &OtlpTls, timeout: Duration) -> Result<OtlpHttpClient, OtlpTlsError> {
    let config = client_config(tls)?;
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(HyperClient::new(https, timeout, None))
}

/// The rustls client configuration for `tls`.
pub fn client_config(tls: &OtlpTls) -> Result<rustls::ClientConfig, OtlpTlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.certificate {
        Some(path) => {
            for cert in tls::certs_from_file(path)? {
                roots.add(cert)?;
            }
        }
        None => system_roots(&mut roots),
    }
    let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match (&tls.client_certificate, &tls.client_key) {
        (Some(cert), Some(key)) => {
            builder.with_client_auth_cert(tls::certs_from_file(cert)?, read_key(key)?)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(OtlpTlsError::HalfClientIdentity),
    })
}

/// The system's trusted roots (`SSL_CERT_FILE`/`SSL_CERT_DIR` are honoured); where the
/// system has none (a distroless image without a bundle), the Mozilla roots built in.
fn system_roots(roots: &mut rustls::RootCertStore) {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "a system root certificate could not be read");
    }
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, OtlpTlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| OtlpTlsError::Key {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn a_signals_own_variable_wins_over_the_general_one() {
        let vars = env(&[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/all/ca.pem"),
            ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "/logs/ca.pem"),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/all/client.pem"),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/all/client.key"),
            ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", ""),
        ]);
        let logs = OtlpTls::from_env(Signal::Logs, &vars);
        assert_eq!(logs.certificate, Some("/logs/ca.pem".into()));
        assert_eq!(logs.client_certificate, Some("/all/client.pem".into()));
        let traces = OtlpTls::from_env(Signal::Traces, &vars);
        assert_eq!(traces.certificate, Some("/all/ca.pem".into()));
        assert_eq!(
            traces.client_key,
            Some("/all/client.key".into()),
            "an empty variable is unset"
        );
        assert_eq!(
            OtlpTls::from_env(Signal::Traces, env(&[])),
            OtlpTls::default()
        );
    }

    #[test]
    fn half_a_client_identity_and_unreadable_files_are_start_up_errors() {
        let half = OtlpTls {
            client_certificate: Some("/nowhere/client.pem".into()),
            ..OtlpTls::default()
        };
        assert!(matches!(
            client_config(&half),
            Err(OtlpTlsError::HalfClientIdentity)
        ));
        let missing = OtlpTls {
            certificate: Some("/nowhere/ca.pem".into()),
            ..OtlpTls::default()
        };
        let err = client_config(&missing).unwrap_err().to_string();
        assert!(err.contains("/nowhere/ca.pem"), "{err}");
        assert!(client_config(&OtlpTls::default()).is_ok(), "system roots");
    }
}
