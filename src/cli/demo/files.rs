//! What `serve --emulator` writes for its demo callers, into the demo directory beside the
//! audit log: the demo policy (the gateway reads and follows it there, so an edit is
//! reloaded), a demo CA with the TLS listener's certificate and the mTLS caller's client
//! certificate, and the Kubernetes service account's projected token, renewed as the
//! kubelet renews it. Rewritten at every start (a fresh CA each time).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use graphgate_emulator::Emulator;
use graphgate_emulator::demo::{
    DEMO_K8S_NAMESPACE, DEMO_K8S_SERVICE_ACCOUNT, DEMO_MTLS_CALLER, DEMO_MTLS_URI_SAN,
    DEMO_TOKEN_AUDIENCE,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};

use crate::cli::Fallible;

/// The demo files' paths.
#[derive(Debug, Clone)]
pub struct DemoFiles {
    /// The directory holding them.
    pub dir: PathBuf,
    /// The demo policy (written when no `--policy` is given).
    pub policy: PathBuf,
    /// The demo CA (PEM): trust it for the TLS listener.
    pub ca: PathBuf,
    /// The TLS listener's certificate chain and key.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// The mTLS demo caller's certificate and key.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// The emulator's CA (PEM): trust it to call the emulator itself.
    pub emulator_ca: PathBuf,
    /// The demo service account's projected token.
    pub token: PathBuf,
}

/// How long a demo service-account token lives (a kubelet's default request is an hour).
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// How often it is renewed (at half its life, well before it expires, as the kubelet does).
const TOKEN_RENEW: Duration = Duration::from_secs(1800);

/// The demo directory: `graphgate-demo` beside the audit log (each log its own, so two
/// demos never share one), or a directory of this process's own without a log.
pub fn demo_dir(audit_log: Option<&Path>) -> PathBuf {
    match audit_log.and_then(Path::parent) {
        Some(dir) => dir.join("graphgate-demo"),
        None => std::env::temp_dir().join(format!("graphgate-demo-{}", std::process::id())),
    }
}

/// Writes the demo files into `dir` (the policy only when `policy_yaml` is given).
pub fn write(dir: &Path, policy_yaml: Option<&str>, emulator: &Emulator) -> Fallible<DemoFiles> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let files = DemoFiles {
        dir: dir.to_owned(),
        policy: dir.join("policy.yaml"),
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client-key.pem"),
        emulator_ca: dir.join("emulator-ca.pem"),
        token: dir.join("k8s-token"),
    };
    let pki = Pki::generate()?;
    let write = |path: &Path, text: &str| {
        replace(path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
    };
    write(&files.ca, &pki.ca_pem)?;
    write(&files.server_cert, &pki.server.0)?;
    write(&files.server_key, &pki.server.1)?;
    write(&files.client_cert, &pki.client.0)?;
    write(&files.client_key, &pki.client.1)?;
    write(&files.emulator_ca, emulator.ca_pem())?;
    if let Some(yaml) = policy_yaml {
        write(&files.policy, yaml)?;
    }
    write_token(emulator, &files.token)?;
    Ok(files)
}

/// Mints the demo service account's token and writes it (in place of the last one).
pub fn write_token(emulator: &Emulator, path: &Path) -> Fallible<()> {
    let lifetime = i64::try_from(TOKEN_LIFETIME.as_secs()).unwrap_or(3600);
    let token = emulator.service_account_token(
        DEMO_K8S_NAMESPACE,
        DEMO_K8S_SERVICE_ACCOUNT,
        &[DEMO_TOKEN_AUDIENCE],
        lifetime,
    )?;
    replace(path, token.as_bytes()).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// Renews the token file every [`TOKEN_RENEW`] until `stop` resolves.
pub async fn renew_token(
    emulator: Arc<Emulator>,
    path: PathBuf,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = tokio::time::sleep(TOKEN_RENEW) => {}
            () = &mut stop => return,
        }
        if let Err(e) = write_token(&emulator, &path) {
            tracing::warn!(error = %e, "the demo service-account token was not renewed");
        }
    }
}

/// Writes `bytes` to `path` atomically (a reader sees the old file or the new one, whole),
/// readable by its owner only.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    graphgate::audit::records::fingerprint::write_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// The demo CA and the two certificates it signs: (certificate PEM, key PEM).
struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
}

impl Pki {
    fn generate() -> Result<Pki, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name
            .push(DnType::CommonName, "graphgate demo CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key)?.pem();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |params: CertificateParams| -> Result<(String, String), rcgen::Error> {
            let key = KeyPair::generate()?;
            Ok((params.signed_by(&key, &issuer)?.pem(), key.serialize_pem()))
        };
        let mut server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?;
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client
            .subject_alt_names
            .push(SanType::URI(DEMO_MTLS_URI_SAN.try_into()?));
        client
            .distinguished_name
            .push(DnType::CommonName, DEMO_MTLS_CALLER);
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        Ok(Pki {
            ca_pem,
            server: leaf(server)?,
            client: leaf(client)?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The token file is a valid service-account token for the demo audience, replaced
    /// (not appended to) every [`TOKEN_RENEW`] on the clock, until stopped.
    #[tokio::test(start_paused = true)]
    async fn the_token_is_renewed_before_it_expires_until_stopped() {
        let emulator = Emulator::new(graphgate_emulator::EmulatorConfig::default()).unwrap();
        let dir =
            std::env::temp_dir().join(format!("graphgate-demo-test-{}", uuid::Uuid::new_v4()));
        let files = write(&dir, None, &emulator).unwrap();
        assert!(!files.policy.exists(), "no policy unless asked");
        let first = std::fs::read_to_string(&files.token).unwrap();
        let claims = |token: &str| -> serde_json::Value {
            use base64::Engine;
            let part = token.split('.').nth(1).unwrap();
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        let c = claims(&first);
        assert_eq!(c["sub"], graphgate_emulator::demo::demo_k8s_subject());
        assert_eq!(c["aud"][0], DEMO_TOKEN_AUDIENCE);
        let lifetime = c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap();
        assert!(lifetime > i64::try_from(TOKEN_RENEW.as_secs()).unwrap());
        let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(renew_token(
            Arc::clone(&emulator),
            files.token.clone(),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ));
        let read = || std::fs::read_to_string(&files.token).unwrap();
        // The task starts its wait before the clock moves.
        tokio::task::yield_now().await;
        tokio::time::advance(TOKEN_RENEW - Duration::from_secs(1)).await;
        tokio::task::yield_now().await;
        assert_eq!(read(), first, "not renewed early");
        tokio::time::advance(Duration::from_secs(2)).await;
        let mut renewed = read();
        for _ in 0..100 {
            if renewed != first {
                break;
            }
            tokio::task::yield_now().await;
            renewed = read();
        }
        assert_ne!(renewed, first, "renewed once its time came");
        assert_eq!(claims(&renewed)["sub"], c["sub"]);
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files.token)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(dir_mode & 0o777, 0o700);
        }
    }
}
