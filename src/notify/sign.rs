//! `Graphgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, Stripe's
//! scheme: the receiver recomputes the HMAC with the shared secret over the timestamp and
//! the raw body, compares in constant time, and refuses a timestamp too far from its clock
//! (a replayed delivery).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::Secret;

/// The header's name.
pub const HEADER: &str = "graphgate-signature";

/// The header's value for `body` sent at `unix` seconds (`None` only if HMAC refused the
/// key, which it does for no length).
pub fn signature(secret: &Secret, unix: u64, body: &[u8]) -> Option<String> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes()).ok()?;
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "t={unix},v1={}",
        crate::policy::hex(&mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_stripes_recipe() {
        // HMAC-SHA256(key "whsec_test", "1700000000.{}"), computed with Python's hmac module.
        let got = signature(&Secret::new("whsec_test"), 1_700_000_000, b"{}");
        assert_eq!(
            got.as_deref(),
            Some(
                "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
            )
        );
    }
}
