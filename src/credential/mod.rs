//! The gateway's own Entra credential and how each kind obtains an app-only token: a client
//! secret (value or file), a certificate (signed client assertion), workload identity
//! federation (a projected token file) or a managed identity (IMDS).
//!
//! Layout: `select` (which kind, from the Azure SDK's environment variables), `entra`
//! (the client-credentials exchange), `certificate` (PEM loading and the assertion),
//! `imds` (managed identity over plain HTTP), `privilege` (the least-privilege report).
//! Files (secret, certificate, federated token) are re-read on every token request, so a
//! rotated file is used by the next token without a restart.

mod certificate;
mod entra;
mod imds;
pub mod privilege;
mod select;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use certificate::{AssertionAlg, ClientCertificate};
pub use entra::{ClientAuth, EntraErrorFields, EntraTokenFields, TransportError, request_token};
pub use imds::{DEFAULT_IMDS_ENDPOINT, IMDS_API_VERSION};
pub use privilege::LeastPrivilegeReport;

use crate::cloud::Cloud;
use crate::operation::route::is_guid;
use crate::secret::Secret;
use crate::upstream::{BoxFuture, HttpClient};

/// Longest token-endpoint exchange before it counts as failed.
pub const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest token-endpoint response read.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// The gateway app's credential, as configured (files are named, not read, here).
#[derive(Debug, Clone)]
pub enum Credential {
    /// `AZURE_CLIENT_SECRET`.
    ClientSecret {
        /// `AZURE_TENANT_ID`
        tenant_id: String,
        /// `AZURE_CLIENT_ID`
        client_id: String,
        /// `AZURE_CLIENT_SECRET`
        secret: Secret,
    },
    /// `AZURE_CLIENT_SECRET_FILE`: the secret is read from the file for every token request.
    ClientSecretFile {
        /// `AZURE_TENANT_ID`
        tenant_id: String,
        /// `AZURE_CLIENT_ID`
        client_id: String,
        /// The file holding the secret (trailing whitespace ignored).
        path: PathBuf,
    },
    /// `AZURE_CLIENT_CERTIFICATE_PATH`: a PEM file with the certificate and its RSA key.
    Certificate {
        /// `AZURE_TENANT_ID`
        tenant_id: String,
        /// `AZURE_CLIENT_ID`
        client_id: String,
        /// The PEM file (re-read when its contents change).
        path: PathBuf,
        /// `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN`: add `x5c` (subject name + issuer auth).
        send_chain: bool,
        /// The assertion's signature algorithm first tried.
        alg: AssertionAlg,
    },
    /// `AZURE_FEDERATED_TOKEN_FILE`: workload identity federation (e.g. AKS).
    WorkloadIdentity {
        /// `AZURE_TENANT_ID`
        tenant_id: String,
        /// `AZURE_CLIENT_ID`
        client_id: String,
        /// The projected token, re-read for every request (the kubelet rotates it).
        token_file: PathBuf,
    },
    /// A managed identity through IMDS (`GRAPHGATE_CREDENTIAL=managed-identity`).
    ManagedIdentity {
        /// A user-assigned identity's client id; `None` for the system-assigned one.
        client_id: Option<String>,
        /// `AZURE_TENANT_ID` when set (only labels the cache key and logs).
        tenant_id: Option<String>,
        /// IMDS base URL, `http://169.254.169.254` unless `AZURE_POD_IDENTITY_AUTHORITY_HOST`.
        endpoint: String,
    },
}

/// A required variable is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A variable the chosen credential needs is unset.
    #[error(
        "{0} is not set: graphgate needs AZURE_TENANT_ID, AZURE_CLIENT_ID and one of AZURE_CLIENT_SECRET, AZURE_CLIENT_SECRET_FILE, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE, or GRAPHGATE_CREDENTIAL=managed-identity (or run `graphgate serve --emulator` to try it locally)"
    )]
    Missing(&'static str),
    /// Two variables that exclude each other are both set, or a value is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A credential file cannot be used at start-up.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why (never its contents).
        reason: String,
    },
    /// `AZURE_AUTHORITY_HOST` names a host of another cloud.
    #[error(
        "AZURE_AUTHORITY_HOST {given:?} is not an authority of the {cloud} cloud (expected {expected})"
    )]
    WrongAuthority {
        /// What was set.
        given: String,
        /// The deployment's cloud.
        cloud: Cloud,
        /// The cloud's authority host.
        expected: &'static str,
    },
}

impl Credential {
    /// Chooses the credential from environment variables, read through `var` (see `select`).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Credential, CredentialError> {
        select::from_env(var)
    }

    /// The kind, for start-up logs and metrics (never the secret).
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::ClientSecret { .. } => "client_secret",
            Credential::ClientSecretFile { .. } => "client_secret_file",
            Credential::Certificate { .. } => "certificate",
            Credential::WorkloadIdentity { .. } => "workload_identity",
            Credential::ManagedIdentity { .. } => "managed_identity",
        }
    }

    /// The tenant the app lives in (`managed-identity` when IMDS decides it).
    pub fn tenant_id(&self) -> &str {
        match self {
            Credential::ClientSecret { tenant_id, .. }
            | Credential::ClientSecretFile { tenant_id, .. }
            | Credential::Certificate { tenant_id, .. }
            | Credential::WorkloadIdentity { tenant_id, .. } => tenant_id,
            Credential::ManagedIdentity { tenant_id, .. } => {
                tenant_id.as_deref().unwrap_or("managed-identity")
            }
        }
    }

    /// The app's client id (`system-assigned` for a system-assigned managed identity).
    pub fn client_id(&self) -> &str {
        match self {
            Credential::ClientSecret { client_id, .. }
            | Credential::ClientSecretFile { client_id, .. }
            | Credential::Certificate { client_id, .. }
            | Credential::WorkloadIdentity { client_id, .. } => client_id,
            Credential::ManagedIdentity { client_id, .. } => {
                client_id.as_deref().unwrap_or("system-assigned")
            }
        }
    }

    /// What is wrong with its tenant and client ids (see [`id_problems`]).
    pub fn id_problems(&self) -> Vec<String> {
        match self {
            Credential::ManagedIdentity {
                client_id,
                tenant_id,
                ..
            } => id_problems(tenant_id.as_deref(), client_id.as_deref()),
            _ => id_problems(Some(self.tenant_id()), Some(self.client_id())),
        }
    }

    /// Checks at start-up that the credential's files can be used now (they are read again
    /// for every token request).
    pub fn check(&self) -> Result<(), CredentialError> {
        let file_err = |path: &PathBuf, reason: String| CredentialError::File {
            path: path.clone(),
            reason,
        };
        match self {
            Credential::ClientSecretFile { path, .. } => read_secret_file(path)
                .map(drop)
                .map_err(|e| file_err(path, e)),
            Credential::WorkloadIdentity { token_file, .. } => read_secret_file(token_file)
                .map(drop)
                .map_err(|e| file_err(token_file, e)),
            Credential::Certificate { path, .. } => ClientCertificate::load(path)
                .map(drop)
                .map_err(|e| file_err(path, e)),
            Credential::ClientSecret { .. } | Credential::ManagedIdentity { .. } => Ok(()),
        }
    }
}

/// What is wrong with the app's ids, every problem: `AZURE_TENANT_ID` must be the tenant's
/// id (a GUID) or one of its domain names (`contoso.onmicrosoft.com`), `AZURE_CLIENT_ID` the
/// app's client id (a GUID). An absent or empty one is not judged here (its absence is
/// reported where it is needed).
pub fn id_problems(tenant_id: Option<&str>, client_id: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(tenant) = given(tenant_id)
        && !is_guid(tenant)
        && !is_domain_name(tenant)
    {
        let why = match tenant.to_ascii_lowercase().as_str() {
            "common" | "organizations" | "consumers" => {
                " (an app-only token is issued by one tenant: give its own id)"
            }
            _ => "",
        };
        problems.push(format!(
            "AZURE_TENANT_ID {tenant:?} is neither a tenant id (a GUID, e.g. 72f988bf-86f1-41af-91ab-2d7cd011db47) nor a domain name of the tenant (e.g. contoso.onmicrosoft.com){why}"
        ));
    }
    if let Some(client) = given(client_id)
        && !is_guid(client)
    {
        problems.push(format!(
            "AZURE_CLIENT_ID {client:?} is not a client id: the app registration's Application (client) ID is a GUID, e.g. 3f0c1d8e-5a4b-4c2d-9e8f-7a6b5c4d3e2f"
        ));
    }
    problems
}

/// A value that was given: trimmed, not empty.
fn given(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// A DNS name of at least two labels (letters, digits, inner hyphens; at most 63 each, 253
/// in all), as a tenant's verified domains are.
fn is_domain_name(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.chars().any(|c| c.is_ascii_alphabetic()))
}

/// Reads a secret-bearing file (a client secret or a federated token): see
/// [`crate::secret::read_file`].
fn read_secret_file(path: &std::path::Path) -> Result<Secret, String> {
    crate::secret::read_file(path)
}

/// The authority host to use: `AZURE_AUTHORITY_HOST` if set (it must belong to `cloud`),
/// otherwise the cloud's own.
pub fn authority_host(cloud: Cloud, configured: Option<&str>) -> Result<String, CredentialError> {
    let Some(given) = configured.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(cloud.endpoints().login_host.to_owned());
    };
    let host = given
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_ascii_lowercase();
    if Cloud::by_login_host(&host).any(|c| c == cloud) {
        Ok(host)
    } else {
        Err(CredentialError::WrongAuthority {
            given: given.to_owned(),
            cloud,
            expected: cloud.endpoints().login_host,
        })
    }
}

/// A token as Entra issued it.
#[derive(Debug)]
pub struct IssuedToken {
    /// The bearer token.
    pub access_token: Secret,
    /// Lifetime from issue.
    pub expires_in: Duration,
    /// Entra's hint for when to refresh, when it sends one.
    pub refresh_in: Option<Duration>,
}

/// Where the token broker gets new tokens: Entra (or IMDS) through [`EntraSource`], or a
/// fake in tests. It lives here, with the token and the error it yields, so the broker
/// depends on credentials and never the other way round.
pub trait TokenSource: Send + Sync + 'static {
    /// Requests one new token.
    fn fetch(&self) -> BoxFuture<'_, Result<IssuedToken, TokenError>>;
}

/// Entra refused, or could not be reached.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// Entra answered with an OAuth error.
    #[error("Entra refused the token request: {error}{}{}", .aadsts.map(|c| format!(" (AADSTS{c})")).unwrap_or_default(), .trace_id.as_ref().map(|t| format!(", trace id {t}")).unwrap_or_default())]
    Refused {
        /// OAuth `error`.
        error: String,
        /// The first AADSTS code.
        aadsts: Option<u32>,
        /// Entra's trace id.
        trace_id: Option<String>,
        /// Entra's correlation id.
        correlation_id: Option<String>,
    },
    /// No usable answer: unreachable, timed out, or not a token response.
    #[error("the token endpoint is unavailable: {0}")]
    Unavailable(String),
    /// A credential file (secret, certificate, federated token) could not be used.
    #[error("the credential cannot be used: {0}")]
    Credential(String),
    /// A token whose lifetime is shorter than the expiry margin is useless.
    #[error(
        "Entra issued a token living {lifetime_secs} s, inside the {margin_secs} s expiry margin"
    )]
    TooShortLived {
        /// Its lifetime.
        lifetime_secs: u64,
        /// The margin.
        margin_secs: u64,
    },
}

/// Entra (or IMDS) as the broker's token source: the deployment's credential, authority
/// and scope, and what the credential keeps between requests (the last good certificate).
pub struct EntraSource {
    http: HttpClient,
    credential: Credential,
    authority_host: String,
    scope: String,
    resource: String,
    certificate: Option<certificate::CertificateFile>,
    imds: Option<imds::ImdsClient>,
}

impl EntraSource {
    /// A source for `credential` in `cloud`, asking `authority_host` (or IMDS).
    pub fn new(
        http: HttpClient,
        credential: Credential,
        cloud: Cloud,
        authority_host: String,
    ) -> Result<Self, CredentialError> {
        let certificate = match &credential {
            Credential::Certificate {
                path,
                send_chain,
                alg,
                ..
            } => Some(certificate::CertificateFile::new(
                path.clone(),
                *send_chain,
                *alg,
            )),
            _ => None,
        };
        let imds = match &credential {
            Credential::ManagedIdentity { endpoint, .. } => Some(imds::ImdsClient::new(endpoint)?),
            _ => None,
        };
        Ok(EntraSource {
            http,
            credential,
            authority_host,
            scope: cloud.endpoints().scope.to_owned(),
            resource: cloud.endpoints().resource.to_owned(),
            certificate,
            imds,
        })
    }

    /// The token endpoint this source posts to.
    pub fn token_url(&self) -> String {
        format!(
            "https://{}/{}/oauth2/v2.0/token",
            self.authority_host,
            self.credential.tenant_id()
        )
    }

    async fn fetch_token(&self) -> Result<IssuedToken, TokenError> {
        let url = self.token_url();
        let client_id = self.credential.client_id();
        let auth = match &self.credential {
            Credential::ClientSecret { secret, .. } => entra::ClientAuth::Secret(secret.clone()),
            Credential::ClientSecretFile { path, .. } => {
                entra::ClientAuth::Secret(read_file(path).await?)
            }
            Credential::WorkloadIdentity { token_file, .. } => {
                entra::ClientAuth::Assertion(read_file(token_file).await?)
            }
            Credential::Certificate { .. } => {
                let Some(cert) = &self.certificate else {
                    return Err(TokenError::Credential("no certificate loaded".into()));
                };
                return cert
                    .request_token(&self.http, client_id, &url, &self.scope)
                    .await;
            }
            Credential::ManagedIdentity { client_id, .. } => {
                let Some(imds) = &self.imds else {
                    return Err(TokenError::Credential("no IMDS client".into()));
                };
                return imds
                    .request_token(&self.resource, client_id.as_deref())
                    .await;
            }
        };
        request_token(&self.http, client_id, &url, &self.scope, auth).await
    }
}

/// Reads a secret-bearing file off the async runtime's worker.
async fn read_file(path: &std::path::Path) -> Result<Secret, TokenError> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || read_secret_file(&owned))
        .await
        .map_err(|e| TokenError::Credential(e.to_string()))?
        .map_err(|e| TokenError::Credential(format!("{}: {e}", path.display())))
}

impl TokenSource for EntraSource {
    fn fetch(&self) -> BoxFuture<'_, Result<IssuedToken, TokenError>> {
        Box::pin(self.fetch_token())
    }
}

/// Builds the broker's source; shared by `app` and tests.
pub fn source(
    http: HttpClient,
    credential: Credential,
    cloud: Cloud,
    authority_host: String,
) -> Result<Arc<EntraSource>, CredentialError> {
    EntraSource::new(http, credential, cloud, authority_host).map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_is_a_guid_or_a_domain_and_a_client_a_guid() {
        const GUID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        for tenant in [
            GUID,
            "contoso.onmicrosoft.com",
            "CONTOSO.com",
            "corp.contoso.co.uk",
        ] {
            assert!(id_problems(Some(tenant), Some(GUID)).is_empty(), "{tenant}");
        }
        assert!(
            id_problems(None, Some("")).is_empty(),
            "absent ones are not judged"
        );
        for tenant in [
            "contoso",
            "common",
            "72f988bf86f141af91ab2d7cd011db47",
            "-a.com",
            "a..com",
            "a.123",
            "contoso.onmicrosoft.com/",
        ] {
            let problems = id_problems(Some(tenant), Some(GUID));
            assert_eq!(problems.len(), 1, "{tenant}: {problems:?}");
            assert!(
                problems[0].starts_with(&format!("AZURE_TENANT_ID {tenant:?}")),
                "{problems:?}"
            );
        }
        assert!(id_problems(Some("common"), None)[0].contains("one tenant"));
        // Both at once, each named.
        let both = id_problems(Some("contoso"), Some("my-app"));
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(both[1].starts_with("AZURE_CLIENT_ID \"my-app\" is not a client id"));
        let managed = Credential::ManagedIdentity {
            client_id: Some("system".into()),
            tenant_id: None,
            endpoint: DEFAULT_IMDS_ENDPOINT.into(),
        };
        assert_eq!(managed.id_problems().len(), 1);
    }

    #[test]
    fn authority_host_must_belong_to_the_cloud() {
        assert_eq!(
            authority_host(Cloud::China, None).unwrap(),
            "login.partner.microsoftonline.cn"
        );
        assert_eq!(
            authority_host(Cloud::China, Some("https://login.chinacloudapi.cn/")).unwrap(),
            "login.chinacloudapi.cn"
        );
        assert_eq!(
            authority_host(Cloud::UsDod, Some("login.microsoftonline.us")).unwrap(),
            "login.microsoftonline.us"
        );
        assert!(authority_host(Cloud::UsGov, Some("https://login.microsoftonline.com/")).is_err());
    }

    #[test]
    fn secret_files_are_trimmed_and_never_echoed() {
        let dir = std::env::temp_dir().join(format!("gg-cred-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("secret");
        std::fs::write(&f, "s3cr3t-value\n").unwrap();
        assert_eq!(read_secret_file(&f).unwrap().expose(), "s3cr3t-value");
        std::fs::write(&f, " \n").unwrap();
        assert_eq!(read_secret_file(&f).unwrap_err(), "the file is empty");
        let missing = read_secret_file(&dir.join("nope")).unwrap_err();
        assert!(missing.starts_with("cannot read"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
