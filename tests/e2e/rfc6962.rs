//! An independent RFC 6962 Merkle tree verifier, written from the RFC (and the verification
//! algorithms of its successor, RFC 9162 §2.1.3.2 and §2.1.4.2), sharing no code with the
//! gateway: the tree hash by its recursive definition, and the checks of inclusion and
//! consistency proofs. The tests hold the gateway's trees, receipts, witness submissions and
//! tiles to it.

use sha2::{Digest, Sha256};

pub type H = [u8; 32];

/// SHA-256(0x00 || leaf).
pub fn leaf(data: &[u8]) -> H {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// SHA-256(0x01 || left || right).
pub fn node(left: &H, right: &H) -> H {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// MTH(D[n]) (RFC 6962 §2.1): the empty string's hash, a leaf's, or the node of the largest
/// power of two smaller than n leaves on the left and the rest on the right.
pub fn root(leaves: &[Vec<u8>]) -> H {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaf(&leaves[0]),
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            node(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// RFC 9162 §2.1.3.2: verifies that `leaf_hash` is leaf `index` of the tree of `size` with
/// root `root`, given the audit path `proof`.
pub fn verify_inclusion(index: u64, size: u64, leaf_hash: &H, proof: &[H], root: &H) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnum, mut snum) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if snum == 0 {
            return false;
        }
        if fnum & 1 == 1 || fnum == snum {
            r = node(p, &r);
            if fnum & 1 == 0 {
                while fnum & 1 == 0 && fnum != 0 {
                    fnum >>= 1;
                    snum >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        fnum >>= 1;
        snum >>= 1;
    }
    snum == 0 && &r == root
}

/// RFC 9162 §2.1.4.2: verifies that the tree of `first` leaves (root `first_hash`) is a
/// prefix of the tree of `second` leaves (root `second_hash`), given `proof`.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_hash: &H,
    second_hash: &H,
    proof: &[H],
) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_hash == second_hash;
    }
    if first == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<H> = proof.to_vec();
    if first.is_power_of_two() {
        path.insert(0, *first_hash);
    }
    let (mut fnum, mut snum) = (first - 1, second - 1);
    while fnum & 1 == 1 {
        fnum >>= 1;
        snum >>= 1;
    }
    let Some((start, rest)) = path.split_first() else {
        return false;
    };
    let (mut fr, mut sr) = (*start, *start);
    for c in rest {
        if snum == 0 {
            return false;
        }
        if fnum & 1 == 1 || fnum == snum {
            fr = node(c, &fr);
            sr = node(c, &sr);
            if fnum & 1 == 0 {
                while fnum & 1 == 0 && fnum != 0 {
                    fnum >>= 1;
                    snum >>= 1;
                }
            }
        } else {
            sr = node(&sr, c);
        }
        fnum >>= 1;
        snum >>= 1;
    }
    &fr == first_hash && &sr == second_hash && snum == 0
}

pub fn hex(h: &H) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn b64(text: &str) -> H {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap()
        .try_into()
        .unwrap()
}
