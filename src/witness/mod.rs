//! `graphgate witness`: a small C2SP `tlog-witness` (<https://c2sp.org/tlog-witness>) that a
//! security team runs on infrastructure of its own. It cosigns a gateway's audit checkpoints
//! only when each is consistent with the last one it cosigned, and remembers that one
//! durably ([`state`]), so the host that writes the log cannot later shrink or rewrite it
//! unnoticed. [`server`] is the HTTP side; [`WitnessSettings`] what it runs with (the flags,
//! `keygen` and printing are the binary's, `src/cli/witness.rs`).

pub mod server;
pub mod state;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use server::{Witness, serve};

use crate::audit::checkpoints::note::{NoteSigner, NoteVerifier};

/// What `graphgate witness serve` runs with, typed (the flags are the binary's).
#[derive(Debug, Clone)]
pub struct WitnessSettings {
    /// The witness's private key file (`graphgate witness keygen`), private to its user.
    pub key_file: PathBuf,
    /// The folder holding the newest cosigned checkpoint of each log.
    pub state_dir: PathBuf,
    /// The logs it witnesses: each one's origin line (or a prefix of origins, ending in
    /// `*`) and the public key signing it.
    pub logs: HashMap<String, NoteVerifier>,
}

impl WitnessSettings {
    /// Reads the key and the state: the witness, ready to serve; or every problem found.
    pub fn build(&self) -> Result<Witness, Vec<String>> {
        let mut problems = Vec::new();
        let signer = load_key(&self.key_file).map_err(|e| problems.push(e)).ok();
        let states = state::States::load(&self.state_dir)
            .map_err(|e| problems.push(format!("--state {}: {e}", self.state_dir.display())))
            .ok();
        if self.logs.is_empty() {
            problems.push("no --log ORIGIN=KEY: the witness would cosign nothing".to_owned());
        }
        match (signer, states, problems.is_empty()) {
            (Some(signer), Some(states), true) => {
                Ok(Witness::new(signer, self.logs.clone(), states))
            }
            _ => Err(problems),
        }
    }
}

/// Reads a witness key written by `graphgate witness keygen`, refusing one its group or
/// others may read, or a log's signing key.
pub fn load_key(path: &Path) -> Result<NoteSigner, String> {
    let named = |e: &dyn std::fmt::Display| format!("--key {}: {e}", path.display());
    crate::audit::records::fingerprint::check_private(path).map_err(|e| named(&e))?;
    let text = std::fs::read_to_string(path).map_err(|e| named(&e))?;
    match NoteSigner::parse(&text) {
        Ok(s) if s.is_cosigner() => Ok(s),
        Ok(_) => Err(named(
            &"a log's signing key, not a witness key (make one with `graphgate witness keygen`)",
        )),
        Err(e) => Err(named(&e)),
    }
}

/// Parses the `--log ORIGIN=KEY` values: every problem at once.
pub fn parse_logs(values: &[String]) -> Result<HashMap<String, NoteVerifier>, Vec<String>> {
    let mut logs = HashMap::new();
    let mut problems = Vec::new();
    for value in values {
        let Some((origin, key)) = value.split_once('=') else {
            problems.push(format!("--log {value}: expected ORIGIN=PUBLIC_KEY"));
            continue;
        };
        match NoteVerifier::parse(key) {
            Ok(k) if k.is_cosigner() => problems.push(format!(
                "--log {origin}: a witness's key, not the log's signing key"
            )),
            Ok(k) if origin.trim_end_matches('*').is_empty() => {
                problems.push(format!("--log {origin}={k}: no origin"))
            }
            Ok(_) if origin.trim_end_matches('*').contains('*') || origin.ends_with("**") => {
                problems.push(format!(
                    "--log {origin}: `*` may only end an origin prefix (ORIGIN_PREFIX*=KEY)"
                ))
            }
            Ok(k) => {
                logs.insert(origin.to_owned(), k);
            }
            Err(e) => problems.push(format!("--log {origin}: {e}")),
        }
    }
    match problems.is_empty() {
        true => Ok(logs),
        false => Err(problems),
    }
}

#[cfg(test)]
mod tests;
