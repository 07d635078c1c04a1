//! mTLS identity edges: a certificate with a URI SAN is matched on its URI SANs only (its CN
//! may name another workload), a certificate with several CNs is refused, and client
//! certificates are checked against a CRL file that is re-read when it changes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Duration;

use common::pki::{Ca, Leaf, client_config};
use common::*;

const SPIFFE: &str = "spiffe://corp.example/ns/rooms/sa/rotator";
const CN: &str = "legacy-rotator.corp.example";

fn policy() -> String {
    format!(
        "version: 1\ncallers:\n  - name: spiffe-svc\n    mtls:\n      uri_san: {SPIFFE}\n  - name: cn-svc\n    mtls:\n      subject_cn: {CN}\nrules:\n  - name: both-may-rotate\n    callers: [spiffe-svc, cn-svc]\n    operations: [managedDevices.updateWindowsDeviceAccount]\n"
    )
}

struct Mtls {
    h: Harness,
    server_ca: Ca,
    client_ca: Ca,
}

async fn start_mtls(crl: Option<std::path::PathBuf>, client_ca: Ca) -> Mtls {
    let server_ca = Ca::new("server CA");
    let server = server_ca.server();
    let tls = graphgate::tls::server_config(&graphgate::tls::ServerTls {
        cert_pem: server.cert_pem,
        key_pem: graphgate::secret::Secret::new(server.key_pem),
        client_ca_pem: Some(client_ca.pem.clone()),
        client_crl: crl,
    })
    .unwrap();
    let h = start_with(Options {
        policy: Some(policy()),
        tls: Some(tls),
        ..Options::default()
    })
    .await;
    Mtls {
        h,
        server_ca,
        client_ca,
    }
}

impl Mtls {
    async fn call(&self, leaf: &Leaf) -> Result<(u16, String), String> {
        tls_call(
            self.h.gateway,
            client_config(&self.server_ca, Some(leaf)),
            None,
        )
        .await
    }
}

#[tokio::test]
async fn a_uri_san_certificate_is_never_a_cn_caller_and_several_cns_are_refused() {
    let m = start_mtls(None, Ca::new("client CA")).await;
    // The CN names the CN caller, but the URI SAN names another workload.
    let other_workload = m
        .client_ca
        .client(Some("spiffe://corp.example/ns/other/sa/x"), CN);
    let (status, body) = m.call(&other_workload).await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("does not identify any caller"), "{body}");
    // Two CNs, the first naming the CN caller (the second added under CN's OID, 2.5.4.3).
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, CN);
    params.distinguished_name.push(
        rcgen::DnType::CustomDnType(vec![2, 5, 4, 3]),
        "someone-else",
    );
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let two_cns = m.client_ca.leaf(params);
    let (status, body) = m.call(&two_cns).await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("several subject common names"), "{body}");
    // The plain cases still work.
    let cn_only = m.client_ca.client(None, CN);
    assert_eq!(m.call(&cn_only).await.unwrap().0, 204);
    let spiffe = m.client_ca.client(Some(SPIFFE), "anything");
    assert_eq!(m.call(&spiffe).await.unwrap().0, 204);
    assert_eq!(m.h.emulator.graph_requests().len(), 2);
}

#[tokio::test]
async fn a_certificate_revoked_in_the_crl_file_is_refused_from_the_next_handshake() {
    let dir = temp_dir("crl");
    let crl = dir.join("clients.crl.pem");
    let client_ca = Ca::new("client CA");
    std::fs::write(&crl, client_ca.crl(&[])).unwrap();
    let m = start_mtls(Some(crl.clone()), client_ca).await;
    let doomed = m.client_ca.client(Some(SPIFFE), "doomed");
    let kept = m.client_ca.client(None, CN);
    assert_eq!(m.call(&doomed).await.unwrap().0, 204);
    // Revoke it, replacing the file the safe way (write, then rename over).
    let next = dir.join("clients.crl.pem.new");
    std::fs::write(&next, m.client_ca.crl(&[&doomed])).unwrap();
    std::fs::rename(&next, &crl).unwrap();
    // The file is checked every few seconds: wait (bounded) for the first refused handshake,
    // trying again every 50 ms.
    let wait = graphgate::tls::client_crl::CHECK_INTERVAL * 3;
    let mut every = tokio::time::interval(Duration::from_millis(50));
    let refused = tokio::time::timeout(wait, async {
        loop {
            every.tick().await;
            match m.call(&doomed).await {
                Err(e) => return e,
                Ok((204, _)) => {}
                Ok(other) => panic!("unexpected answer {other:?}"),
            }
        }
    })
    .await
    .expect("the revoked certificate is refused within three checks");
    // Under TLS 1.3 the server's certificate_revoked alert reaches the client only after its
    // Finished, so the client sees the connection fail, not a status.
    tracing::debug!(%refused, "revoked certificate refused");
    let sent = m.h.emulator.graph_requests().len();
    assert!(m.call(&doomed).await.is_err(), "and stays refused");
    assert_eq!(
        m.call(&kept).await.unwrap().0,
        204,
        "others are not affected"
    );
    assert_eq!(m.h.emulator.graph_requests().len(), sent + 1);
}
