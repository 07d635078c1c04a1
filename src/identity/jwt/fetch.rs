//! Fetching an issuer's keys: its OpenID discovery document and then its JWKS, a JWKS URL,
//! or a file, through the gateway's own outbound client (rustls with certificate checks,
//! HTTPS only, no redirects), each exchange bounded in size and time.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use tokio::io::AsyncReadExt;

use super::jwks::{self, JwksError, KeyMap};
use crate::policy::{JwtIssuer, KeySource};
use crate::upstream::{BoxFuture, HttpClient};

/// Largest discovery document, key set or bundle file read.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Why an issuer's keys could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// No answer (connection refused, TLS failure...).
    #[error("{url}: {reason}")]
    Unreachable {
        /// What was fetched.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// An answer other than 200.
    #[error("{url}: HTTP {status}")]
    Status {
        /// What was fetched.
        url: String,
        /// The status.
        status: u16,
    },
    /// No complete answer in time.
    #[error("{url}: no complete answer within {ms} ms")]
    Timeout {
        /// What was fetched.
        url: String,
        /// The limit.
        ms: u128,
    },
    /// Larger than [`MAX_DOCUMENT_BYTES`].
    #[error("{url}: larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge {
        /// What was fetched (or read).
        url: String,
    },
    /// A discovery document without a usable `issuer` and `jwks_uri`.
    #[error("{url}: not an OpenID configuration with an https jwks_uri")]
    NotDiscovery {
        /// What was fetched.
        url: String,
    },
    /// A discovery document for another issuer (OpenID Connect Discovery §4.3).
    #[error("{url}: its issuer is {found:?}, not the configured {expected:?}")]
    IssuerMismatch {
        /// What was fetched.
        url: String,
        /// Its `issuer`.
        found: String,
        /// The configured issuer.
        expected: String,
    },
    /// A discovery document naming a `jwks_uri` on a host the issuer is not pinned to.
    #[error(
        "{url}: its jwks_uri is on {host}, not the issuer's host (pin_jwks_host is on for this issuer)"
    )]
    JwksHostNotPinned {
        /// The discovery document.
        url: String,
        /// The host it named.
        host: String,
    },
    /// A document that is not a usable key set.
    #[error("{url}: {error}")]
    Keys {
        /// What was fetched (or read).
        url: String,
        /// What is wrong with it.
        error: JwksError,
    },
    /// A file that cannot be read.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Obtains an issuer's current keys (a trait so the cache can be tested without sockets).
pub trait KeyLoader: Send + Sync {
    /// The issuer's keys, now.
    fn load<'a>(&'a self, issuer: &'a JwtIssuer) -> BoxFuture<'a, Result<KeyMap, FetchError>>;
}

/// Loads keys over the gateway's outbound client, or from files.
#[derive(Clone)]
pub struct HttpLoader {
    http: HttpClient,
}

impl HttpLoader {
    /// A loader using `http`.
    pub fn new(http: HttpClient) -> Self {
        HttpLoader { http }
    }

    async fn load_keys(&self, issuer: &JwtIssuer) -> Result<KeyMap, FetchError> {
        let timeout = issuer.fetch_timeout;
        let (url, bytes) = match &issuer.keys {
            KeySource::File(path) => (path.display().to_string(), read_file(path).await?),
            KeySource::JwksUrl(url) => (url.clone(), self.get(url, timeout).await?),
            KeySource::Discovery(url) => {
                let jwks_uri = self.discover(url, &issuer.issuer, timeout).await?;
                // Pinned: keys only from the issuer's own host, never wherever a (forged
                // or redirected) discovery document points.
                let host = crate::policy::jwt::url_host(&jwks_uri).unwrap_or_default();
                if !issuer.jwks_host_allowed(url, host) {
                    return Err(FetchError::JwksHostNotPinned {
                        url: url.clone(),
                        host: host.to_owned(),
                    });
                }
                let bytes = self.get(&jwks_uri, timeout).await?;
                (jwks_uri, bytes)
            }
        };
        jwks::parse(&bytes).map_err(|error| FetchError::Keys { url, error })
    }

    /// The `jwks_uri` of the discovery document at `url`, whose `issuer` must be `issuer`.
    async fn discover(
        &self,
        url: &str,
        issuer: &str,
        timeout: Duration,
    ) -> Result<String, FetchError> {
        let bytes = self.get(url, timeout).await?;
        let doc: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|_| FetchError::NotDiscovery {
                url: url.to_owned(),
            })?;
        let field = |name: &str| doc.get(name).and_then(serde_json::Value::as_str);
        let found = field("issuer").ok_or_else(|| FetchError::NotDiscovery {
            url: url.to_owned(),
        })?;
        if found != issuer {
            return Err(FetchError::IssuerMismatch {
                url: url.to_owned(),
                found: found.to_owned(),
                expected: issuer.to_owned(),
            });
        }
        field("jwks_uri")
            .filter(|u| u.starts_with("https://"))
            .map(str::to_owned)
            .ok_or_else(|| FetchError::NotDiscovery {
                url: url.to_owned(),
            })
    }

    /// One bounded GET: status 200, at most [`MAX_DOCUMENT_BYTES`], within `timeout`.
    async fn get(&self, url: &str, timeout: Duration) -> Result<Bytes, FetchError> {
        let unreachable = |reason: String| FetchError::Unreachable {
            url: url.to_owned(),
            reason,
        };
        let req = Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| unreachable(e.to_string()))?;
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| unreachable(with_sources(&e)))?;
            if resp.status() != StatusCode::OK {
                return Err(FetchError::Status {
                    url: url.to_owned(),
                    status: resp.status().as_u16(),
                });
            }
            match Limited::new(resp.into_body(), MAX_DOCUMENT_BYTES)
                .collect()
                .await
            {
                Ok(body) => Ok(body.to_bytes()),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(FetchError::TooLarge {
                    url: url.to_owned(),
                }),
                Err(e) => Err(unreachable(e.to_string())),
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(FetchError::Timeout {
                    url: url.to_owned(),
                    ms: timeout.as_millis(),
                })
            })
    }
}

impl KeyLoader for HttpLoader {
    fn load<'a>(&'a self, issuer: &'a JwtIssuer) -> BoxFuture<'a, Result<KeyMap, FetchError>> {
        Box::pin(self.load_keys(issuer))
    }
}

/// Reads a key file of at most [`MAX_DOCUMENT_BYTES`].
async fn read_file(path: &Path) -> Result<Bytes, FetchError> {
    let failed = |e: std::io::Error| FetchError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let file = tokio::fs::File::open(path).await.map_err(failed)?;
    let mut bytes = Vec::new();
    file.take(MAX_DOCUMENT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(failed)?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(FetchError::TooLarge {
            url: path.display().to_string(),
        });
    }
    Ok(Bytes::from(bytes))
}

/// An error and its sources, `: `-separated (the transport's reason is in a source).
fn with_sources(e: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(e), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
