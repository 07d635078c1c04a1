//! Which credential a deployment uses, from the Azure SDK's environment variables, in the
//! order of the SDK's chain: EnvironmentCredential (secret, then certificate), then
//! WorkloadIdentityCredential, then ManagedIdentityCredential.
//!
//! One deliberate difference: managed identity is never a silent fallback. A gateway for
//! privileged actions must not borrow whatever identity its host happens to have because a
//! variable was misspelt; it is chosen with `GRAPHGATE_CREDENTIAL=managed-identity`.
//! `GRAPHGATE_CREDENTIAL` may also name any other kind, which then must be complete.

use std::path::PathBuf;

use super::{AssertionAlg, Credential, CredentialError, DEFAULT_IMDS_ENDPOINT};

/// The values `GRAPHGATE_CREDENTIAL` accepts.
pub const KINDS: &[&str] = &[
    "auto",
    "client-secret",
    "certificate",
    "workload-identity",
    "managed-identity",
];

pub(super) fn from_env(
    var: impl Fn(&str) -> Option<String>,
) -> Result<Credential, CredentialError> {
    let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let need = |name: &'static str| get(name).ok_or(CredentialError::Missing(name));
    let kind = get("GRAPHGATE_CREDENTIAL").unwrap_or_else(|| "auto".into());
    let kind = kind.trim().to_ascii_lowercase();
    if !KINDS.contains(&kind.as_str()) {
        return Err(CredentialError::Invalid(format!(
            "GRAPHGATE_CREDENTIAL {kind:?} is not one of {}",
            KINDS.join(", ")
        )));
    }
    if get("AZURE_CLIENT_CERTIFICATE_PASSWORD").is_some() {
        return Err(CredentialError::Invalid(
            "AZURE_CLIENT_CERTIFICATE_PASSWORD is set, but graphgate reads PEM only (no PKCS#12): \
             convert with `openssl pkcs12 -in cert.pfx -nodes -out cert.pem` and unset it"
                .into(),
        ));
    }
    let secret = get("AZURE_CLIENT_SECRET");
    let secret_file = get("AZURE_CLIENT_SECRET_FILE");
    let certificate = get("AZURE_CLIENT_CERTIFICATE_PATH");
    let token_file = get("AZURE_FEDERATED_TOKEN_FILE");
    let chosen = match kind.as_str() {
        "auto" if secret.is_some() || secret_file.is_some() => "client-secret",
        "auto" if certificate.is_some() => "certificate",
        "auto" if token_file.is_some() => "workload-identity",
        "auto" => {
            // Nothing configured: name the first missing variable of the usual setup.
            need("AZURE_TENANT_ID")?;
            need("AZURE_CLIENT_ID")?;
            return Err(CredentialError::Missing("AZURE_CLIENT_SECRET"));
        }
        other => other,
    };
    match chosen {
        "client-secret" => {
            let tenant_id = need("AZURE_TENANT_ID")?;
            let client_id = need("AZURE_CLIENT_ID")?;
            match (secret, secret_file) {
                (Some(_), Some(_)) => Err(CredentialError::Invalid(
                    "set AZURE_CLIENT_SECRET or AZURE_CLIENT_SECRET_FILE, not both".into(),
                )),
                (Some(secret), None) => Ok(Credential::ClientSecret {
                    tenant_id,
                    client_id,
                    secret: secret.into(),
                }),
                (None, Some(path)) => Ok(Credential::ClientSecretFile {
                    tenant_id,
                    client_id,
                    path: PathBuf::from(path),
                }),
                (None, None) => Err(CredentialError::Missing("AZURE_CLIENT_SECRET")),
            }
        }
        "certificate" => Ok(Credential::Certificate {
            tenant_id: need("AZURE_TENANT_ID")?,
            client_id: need("AZURE_CLIENT_ID")?,
            path: PathBuf::from(need("AZURE_CLIENT_CERTIFICATE_PATH")?),
            send_chain: get("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN")
                .is_some_and(|v| matches!(v.trim(), "1" | "true" | "True" | "TRUE")),
            alg: get("GRAPHGATE_CLIENT_ASSERTION_ALG")
                .map(|v| v.parse::<AssertionAlg>())
                .transpose()
                .map_err(CredentialError::Invalid)?
                .unwrap_or(AssertionAlg::Ps256),
        }),
        "workload-identity" => Ok(Credential::WorkloadIdentity {
            tenant_id: need("AZURE_TENANT_ID")?,
            client_id: need("AZURE_CLIENT_ID")?,
            token_file: PathBuf::from(need("AZURE_FEDERATED_TOKEN_FILE")?),
        }),
        _ => Ok(Credential::ManagedIdentity {
            client_id: get("AZURE_CLIENT_ID"),
            tenant_id: get("AZURE_TENANT_ID"),
            endpoint: get("AZURE_POD_IDENTITY_AUTHORITY_HOST")
                .unwrap_or_else(|| DEFAULT_IMDS_ENDPOINT.to_owned()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const IDS: [(&str, &str); 2] = [("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c")];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        IDS.iter().chain(extra).copied().collect()
    }

    #[test]
    fn missing_variables_are_named_and_suggest_the_emulator() {
        let err = from_env(env(&[("AZURE_TENANT_ID", "t")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("AZURE_CLIENT_ID is not set"), "{err}");
        assert!(err.contains("--emulator"), "{err}");
        let err = from_env(env(&IDS)).unwrap_err().to_string();
        assert!(err.starts_with("AZURE_CLIENT_SECRET is not set"), "{err}");
        assert!(err.contains("managed-identity"), "{err}");
    }

    #[test]
    fn the_sdk_order_is_secret_certificate_workload_identity() {
        let all = with(&[
            ("AZURE_CLIENT_SECRET", "s"),
            ("AZURE_CLIENT_CERTIFICATE_PATH", "/c.pem"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
        ]);
        assert_eq!(from_env(env(&all)).unwrap().kind(), "client_secret");
        assert_eq!(
            from_env(env(&all[..2]
                .iter()
                .chain(&all[3..])
                .copied()
                .collect::<Vec<_>>()))
            .unwrap()
            .kind(),
            "certificate"
        );
        assert_eq!(
            from_env(env(&with(&[("AZURE_FEDERATED_TOKEN_FILE", "/t")])))
                .unwrap()
                .kind(),
            "workload_identity"
        );
        assert_eq!(
            from_env(env(&with(&[("AZURE_CLIENT_SECRET_FILE", "/s")])))
                .unwrap()
                .kind(),
            "client_secret_file"
        );
    }

    #[test]
    fn an_explicit_kind_wins_and_must_be_complete() {
        let mut e = with(&[("AZURE_CLIENT_SECRET", "s")]);
        e.push(("GRAPHGATE_CREDENTIAL", "workload-identity"));
        let err = from_env(env(&e)).unwrap_err().to_string();
        assert!(
            err.starts_with("AZURE_FEDERATED_TOKEN_FILE is not set"),
            "{err}"
        );
        let mi = from_env(env(&[
            ("GRAPHGATE_CREDENTIAL", "managed-identity"),
            ("AZURE_CLIENT_ID", "uai"),
        ]))
        .unwrap();
        assert_eq!(mi.kind(), "managed_identity");
        assert_eq!(mi.client_id(), "uai");
        let Credential::ManagedIdentity { endpoint, .. } = &mi else {
            unreachable!()
        };
        assert_eq!(endpoint, DEFAULT_IMDS_ENDPOINT);
        let system = from_env(env(&[
            ("GRAPHGATE_CREDENTIAL", "managed-identity"),
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:1"),
        ]))
        .unwrap();
        assert_eq!(system.client_id(), "system-assigned");
        assert!(from_env(env(&[("GRAPHGATE_CREDENTIAL", "magic")])).is_err());
    }

    #[test]
    fn ambiguous_or_unsupported_settings_fail() {
        let e = with(&[
            ("AZURE_CLIENT_SECRET", "s"),
            ("AZURE_CLIENT_SECRET_FILE", "/s"),
        ]);
        assert!(
            from_env(env(&e))
                .unwrap_err()
                .to_string()
                .contains("not both")
        );
        let e = with(&[
            ("AZURE_CLIENT_CERTIFICATE_PATH", "/c.pfx"),
            ("AZURE_CLIENT_CERTIFICATE_PASSWORD", "pw"),
        ]);
        let err = from_env(env(&e)).unwrap_err().to_string();
        assert!(err.contains("PKCS#12") && !err.contains("pw\""), "{err}");
        let e = with(&[
            ("AZURE_CLIENT_CERTIFICATE_PATH", "/c.pem"),
            ("GRAPHGATE_CLIENT_ASSERTION_ALG", "ES256"),
        ]);
        assert!(from_env(env(&e)).is_err());
    }

    #[test]
    fn certificate_options_are_read() {
        let e = with(&[
            ("AZURE_CLIENT_CERTIFICATE_PATH", "/c.pem"),
            ("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "true"),
            ("GRAPHGATE_CLIENT_ASSERTION_ALG", "rs256"),
        ]);
        let Credential::Certificate {
            send_chain, alg, ..
        } = from_env(env(&e)).unwrap()
        else {
            unreachable!()
        };
        assert!(send_chain);
        assert_eq!(alg, AssertionAlg::Rs256);
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let e = with(&[("AZURE_CLIENT_SECRET", "value-of-the-secret")]);
        let shown = format!("{:?}", from_env(env(&e)).unwrap());
        assert!(!shown.contains("value-of-the-secret"), "{shown}");
    }
}
