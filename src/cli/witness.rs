//! `graphgate witness serve|keygen`: the flags of the witness a security team runs on
//! infrastructure of its own, its key's making, and what it prints; the witness itself is
//! the library's ([`graphgate::witness`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use graphgate::audit::checkpoints::note::NoteSigner;
use graphgate::witness::WitnessSettings;

use super::{Fallible, bind, shutdown_signal};

/// `graphgate witness ...`
#[derive(Debug, Subcommand)]
pub enum WitnessCommand {
    /// Run a witness: cosign the checkpoints of the logs it is told about.
    Serve(ServeArgs),
    /// Make a witness's Ed25519 cosignature key pair: writes the private key (mode 0600) and
    /// prints the public key for the gateway's --audit-witness and `audit verify --witness-key`.
    Keygen(KeygenArgs),
}

/// What `witness serve` runs with.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The witness's private key file (`graphgate witness keygen`), private to its user.
    #[arg(long, env = "GRAPHGATE_WITNESS_KEY")]
    pub key: PathBuf,
    /// Folder for the state (the newest cosigned checkpoint of each log); keep it on durable
    /// storage of its own.
    #[arg(long, env = "GRAPHGATE_WITNESS_STATE")]
    pub state: PathBuf,
    /// A log to witness: `ORIGIN=PUBLIC_KEY`, its checkpoints' origin line and the public
    /// key that signs them (as `graphgate audit keygen` printed it), or `PREFIX*=PUBLIC_KEY`
    /// for every log whose origin starts with PREFIX (one log per Kubernetes pod, say);
    /// repeatable (in the environment, comma-separated).
    #[arg(
        long = "log",
        value_name = "ORIGIN=KEY",
        env = "GRAPHGATE_WITNESS_LOG",
        value_delimiter = ',',
        required = true
    )]
    pub logs: Vec<String>,
    /// Address to listen on (plain HTTP: the protocol's trust is in the signatures; put TLS
    /// in front if the network asks for it).
    #[arg(
        long,
        env = "GRAPHGATE_WITNESS_LISTEN",
        default_value = "127.0.0.1:7380"
    )]
    pub listen: SocketAddr,
    /// Check the key, the state folder and the logs without listening: print every problem
    /// and exit, non-zero if there is any.
    #[arg(long)]
    pub check_config: bool,
}

/// What `witness keygen` makes.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The witness's name, a schema-less URL, e.g. `witness-1.security.corp.example`.
    #[arg(long)]
    pub name: String,
    /// Where to write the private key (must not exist).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs a witness subcommand.
pub async fn run(cmd: WitnessCommand) -> Fallible<ExitCode> {
    match cmd {
        WitnessCommand::Serve(args) => serve(args).await,
        WitnessCommand::Keygen(args) => Ok(keygen(&args)),
    }
}

fn keygen(args: &KeygenArgs) -> ExitCode {
    let (signer, encoded) = match NoteSigner::generate_cosigner(&args.name) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("graphgate: --name {:?}: {e}", args.name);
            return ExitCode::from(2);
        }
    };
    let mut text = encoded.expose().to_owned();
    text.push('\n');
    if let Err(e) =
        graphgate::audit::records::fingerprint::write_private(&args.out, text.as_bytes())
    {
        eprintln!("graphgate: {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    eprintln!(
        "witness key written to {} (mode 0600): give it to `graphgate witness serve --key`; its public key, for the gateway's --audit-witness URL=KEY and `audit verify --witness-key`:",
        args.out.display()
    );
    println!("{}", signer.verifier());
    ExitCode::SUCCESS
}

/// Flags → settings → the witness (every problem at once) → listen until SIGTERM or Ctrl-C.
async fn serve(args: ServeArgs) -> Fallible<ExitCode> {
    let signal = shutdown_signal();
    let (logs, mut problems) = match graphgate::witness::parse_logs(&args.logs) {
        Ok(logs) => (logs, Vec::new()),
        Err(problems) => (Default::default(), problems),
    };
    let settings = WitnessSettings {
        key_file: args.key.clone(),
        state_dir: args.state.clone(),
        logs,
    };
    let witness = match settings.build() {
        Ok(w) if problems.is_empty() => Some(w),
        Ok(_) => None,
        Err(found) => {
            problems.extend(found);
            None
        }
    };
    if args.check_config {
        for problem in &problems {
            println!("problem: {problem}");
        }
        return Ok(match problems.is_empty() {
            true => {
                println!("configuration OK");
                ExitCode::SUCCESS
            }
            false => ExitCode::FAILURE,
        });
    }
    let Some(witness) = witness else {
        return Err(problems.join("\n").into());
    };
    let listener = bind(args.listen, "--listen / GRAPHGATE_WITNESS_LISTEN").await?;
    let addr = listener.local_addr()?;
    let public = witness.public_key();
    tracing::info!(listen = %addr, key = %public, logs = ?witness.origins(), "witness listening");
    eprintln!("witness {public} listening on http://{addr}");
    graphgate::witness::serve(listener, Arc::new(witness), signal).await?;
    Ok(ExitCode::SUCCESS)
}
