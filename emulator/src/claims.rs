//! The app-only access token Entra issues for Graph (v1.0 shape, graph-facts §3): which
//! claims it carries and how the emulator mints one.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::AppRegistration;
use super::signing_key::SigningKey;
use crate::microsoft::Cloud;

/// The claims of an app-only Graph token.
#[derive(Debug, Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    tid: &'a str,
    appid: &'a str,
    appidacr: &'static str,
    oid: String,
    sub: String,
    /// Left out when the app holds no application permission, as Entra does.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    roles: &'a [String],
    idtyp: &'static str,
    ver: &'static str,
    uti: String,
}

/// The service principal's object id: a GUID that is stable per tenant and app.
pub(crate) fn object_id(tenant: &str, client_id: &str) -> String {
    let digest = Sha256::digest(
        format!("{tenant}/{client_id}")
            .to_ascii_lowercase()
            .as_bytes(),
    );
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// A random `uti` like Entra's: 22 base64url characters.
fn unique_token_id() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
}

/// Mints a token for `app` in `tenant`, audience `cloud`'s Graph resource, issued `now`
/// (Unix seconds) and expiring `lifetime_secs` later (negative: already expired).
pub(crate) fn mint(
    key: &SigningKey,
    tenant: &str,
    app: &AppRegistration,
    cloud: Cloud,
    now: i64,
    lifetime_secs: i64,
) -> Result<String, String> {
    let oid = object_id(tenant, &app.client_id);
    let claims = Claims {
        aud: cloud.endpoints().resource,
        iss: format!("https://sts.windows.net/{tenant}/"),
        iat: now,
        // Entra back-dates nbf by five minutes to absorb clock skew.
        nbf: now - 300,
        exp: now + lifetime_secs,
        tid: tenant,
        appid: &app.client_id,
        appidacr: "1",
        sub: oid.clone(),
        oid,
        roles: &app.roles,
        idtyp: "app",
        ver: "1.0",
        uti: unique_token_id(),
    };
    key.sign(&claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_id_is_a_stable_guid() {
        let a = object_id("t", "c");
        assert_eq!(a, object_id("T", "C"));
        assert_ne!(a, object_id("t", "d"));
        assert!(crate::microsoft::is_guid(&a));
        assert_eq!(unique_token_id().len(), 22);
    }
}
