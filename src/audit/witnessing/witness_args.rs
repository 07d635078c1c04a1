//! The witness flags of `graphgate serve` (`--audit-witness`, `--audit-witness-quorum`) and
//! `--audit-new-tree`, the deliberate start of a new log.

use clap::Args;

use super::witness::WitnessConfig;

/// The witness flags of `graphgate serve`.
#[derive(Debug, Args)]
pub struct WitnessArgs {
    /// A witness to cosign the audit checkpoints: `URL=PUBLIC_KEY`, its submission prefix
    /// and its cosignature key (as `graphgate witness keygen` printed it); repeatable (in
    /// the environment, comma-separated). Needs --audit-signing-key-file.
    #[arg(
        long = "audit-witness",
        env = "GRAPHGATE_AUDIT_WITNESS",
        value_name = "URL=KEY",
        value_delimiter = ',',
        requires = "audit_signing_key_file"
    )]
    pub audit_witness: Vec<String>,
    /// How many witnesses must cosign a checkpoint for it to count as witnessed (the
    /// quorum whose age is reported) [default: all of them].
    #[arg(long, env = "GRAPHGATE_AUDIT_WITNESS_QUORUM", requires = "audit_witness", value_parser = clap::value_parser!(u64).range(1..))]
    pub audit_witness_quorum: Option<u64>,
    /// Start a new audit log on purpose: the current log's files (records, anchor,
    /// checkpoints, tree, cosignatures) are moved into a folder beside it, and the new log's
    /// first record says so. Witnesses of the old log refuse the new one until their
    /// operators reset it.
    #[arg(long, env = "GRAPHGATE_AUDIT_NEW_TREE")]
    pub audit_new_tree: bool,
}

impl WitnessArgs {
    /// The witnesses and the quorum; every bad value named at once.
    pub fn witnesses(&self) -> Result<(Vec<WitnessConfig>, usize), String> {
        let mut configs = Vec::new();
        let mut problems = Vec::new();
        for value in &self.audit_witness {
            match WitnessConfig::parse(value) {
                Ok(c) => configs.push(c),
                Err(e) => problems.push(format!("--audit-witness {e}")),
            }
        }
        let quorum = self
            .audit_witness_quorum
            .map_or(configs.len(), |q| usize::try_from(q).unwrap_or(usize::MAX));
        if quorum > configs.len() && !configs.is_empty() {
            problems.push(format!(
                "--audit-witness-quorum {quorum} is more than the {} witness(es) given",
                configs.len()
            ));
        }
        match problems.is_empty() {
            true => Ok((configs, quorum)),
            false => Err(problems.join("; ")),
        }
    }
}
