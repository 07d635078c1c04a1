//! The C2SP `tlog-witness` wire format (<https://c2sp.org/tlog-witness>), for both ends: the
//! `add-checkpoint` request body (`old <size>`, up to 63 base64 consistency-proof lines, an
//! empty line, the signed checkpoint), the `409` body (`text/x.tlog.size`), and the origin
//! hash of the monitoring path.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

use super::tree::Hash;

/// Most consistency-proof lines a request may carry.
pub const MAX_PROOF_LINES: usize = 63;
/// The media type of a 409's body.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// The body of `add-checkpoint` for `note`, from `old` with `proof`.
pub fn request_body(old: u64, proof: &[Hash], note: &str) -> String {
    let mut body = format!("old {old}\n");
    for h in proof {
        body.push_str(&B64.encode(h.0));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}

/// An `add-checkpoint` request, parsed.
#[derive(Debug)]
pub struct AddCheckpoint<'a> {
    /// The size the client believes the witness last cosigned.
    pub old: u64,
    /// The consistency proof from `old`.
    pub proof: Vec<Hash>,
    /// The signed checkpoint.
    pub note: &'a str,
}

/// Parses a request body; the error says what is malformed (a 400).
pub fn parse_request(body: &str) -> Result<AddCheckpoint<'_>, &'static str> {
    let (first, mut rest) = body
        .split_once('\n')
        .ok_or("the body starts with an `old <size>` line")?;
    let old = first
        .strip_prefix("old ")
        .and_then(decimal)
        .ok_or("the first line is `old <size>`, a decimal without leading zeroes")?;
    let mut proof = Vec::new();
    loop {
        let (line, after) = rest
            .split_once('\n')
            .ok_or("an empty line ends the consistency proof")?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err("more than 63 consistency proof lines");
        }
        let bytes = B64
            .decode(line)
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or("a proof line is not the base64 of a 32-byte hash")?;
        let mut h = [0u8; 32];
        h.copy_from_slice(&bytes);
        proof.push(Hash(h));
    }
    Ok(AddCheckpoint {
        old,
        proof,
        note: rest,
    })
}

/// A decimal size as the protocol writes it: digits, no leading zero (but `0`).
pub fn decimal(text: &str) -> Option<u64> {
    let canonical = text == "0" || (!text.starts_with('0') && !text.is_empty());
    match canonical && text.bytes().all(|b| b.is_ascii_digit()) {
        true => text.parse().ok(),
        false => None,
    }
}

/// The size in a 409's body (`<size>\n`).
pub fn parse_size(body: &str) -> Option<u64> {
    decimal(body.strip_suffix('\n')?)
}

/// The monitoring path's origin hash: lower-case hex SHA-256 of the origin.
pub fn origin_hash(origin: &str) -> String {
    super::chain::hex(&Sha256::digest(origin.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_and_malformed_ones_are_named() {
        let proof = [Hash([1; 32]), Hash([2; 32])];
        let note = "o\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} o AAAA\n";
        let body = request_body(3, &proof, note);
        let parsed = parse_request(&body).unwrap();
        assert_eq!((parsed.old, parsed.proof.len(), parsed.note), (3, 2, note));
        assert_eq!(parse_request(&request_body(0, &[], note)).unwrap().old, 0);
        for bad in [
            "old 03\n\nx".to_owned(),
            "old -1\n\nx".to_owned(),
            "new 3\n\nx".to_owned(),
            "old 3\nnot base64!\n\nx".to_owned(),
            "old 3\nAAAA\n\nx".to_owned(),
            "old 3\n".to_owned(),
            format!(
                "old 3\n{}\nx",
                "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n".repeat(64)
            ),
        ] {
            assert!(parse_request(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_size("28\n"), Some(28));
        assert_eq!(parse_size("028\n"), None);
        assert_eq!(origin_hash("example.com/behind-the-sofa").len(), 64);
    }
}
