//! The emulator's throwaway PKI: a CA and one server certificate naming every cloud's Graph
//! and login hosts, and the rustls server configuration that presents it.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::EmulatorError;
use crate::microsoft::Cloud;

/// The CA's common name.
pub const CA_NAME: &str = "graphgate emulator CA";

/// The CA certificate (PEM) and the TLS configuration serving its leaf.
pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    pub(crate) server_config: Arc<ServerConfig>,
}

/// Every host name the emulator answers for: Graph and login hosts (aliases included) of
/// every cloud, each once, in `Cloud::ALL` order.
pub(crate) fn served_hosts() -> Vec<&'static str> {
    let mut hosts: Vec<&'static str> = Vec::new();
    for cloud in Cloud::ALL {
        let e = cloud.endpoints();
        let names = [e.graph_host, e.login_host]
            .into_iter()
            .chain(e.login_aliases.iter().copied());
        for name in names {
            if !hosts.contains(&name) {
                hosts.push(name);
            }
        }
    }
    // The emulated Kubernetes API server, issuer of service-account tokens.
    hosts.push(super::workload::KUBERNETES_HOST);
    hosts
}

fn pki_err(what: &str) -> impl Fn(rcgen::Error) -> EmulatorError + '_ {
    move |e| EmulatorError::Pki(format!("{what}: {e}"))
}

/// Generates the CA and the server certificate and builds the rustls configuration.
pub(crate) fn generate() -> Result<Pki, EmulatorError> {
    let ca_key = KeyPair::generate().map_err(pki_err("CA key"))?;
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).map_err(pki_err("CA params"))?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, CA_NAME);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(pki_err("CA certificate"))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names: Vec<String> = served_hosts().into_iter().map(str::to_owned).collect();
    names.extend(["localhost".to_owned(), "127.0.0.1".to_owned()]);
    let server_key = KeyPair::generate().map_err(pki_err("server key"))?;
    let mut params = CertificateParams::new(names).map_err(pki_err("server params"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "graphgate emulator");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let server_cert = params
        .signed_by(&server_key, &issuer)
        .map_err(pki_err("server certificate"))?;

    let chain = vec![server_cert.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    Ok(Pki {
        ca_pem: ca_cert.pem(),
        server_config: Arc::new(server_config(chain, key)?),
    })
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, EmulatorError> {
    let mut config = ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| EmulatorError::Pki(format!("TLS versions: {e}")))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| EmulatorError::Pki(format!("TLS certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_cover_every_cloud_once() {
        let hosts = served_hosts();
        for cloud in Cloud::ALL {
            let e = cloud.endpoints();
            assert!(hosts.contains(&e.graph_host));
            assert!(hosts.contains(&e.login_host));
            assert!(e.login_aliases.iter().all(|a| hosts.contains(a)));
        }
        let mut dedup = hosts.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), hosts.len());
    }

    #[test]
    fn generates_a_ca_and_an_h2_capable_config() {
        let pki = generate().unwrap();
        assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(pki.server_config.alpn_protocols[0], b"h2");
    }
}
