//! `graphgate witness`: a small C2SP `tlog-witness` (<https://c2sp.org/tlog-witness>) that a
//! security team runs on infrastructure of its own. It cosigns a gateway's audit checkpoints
//! only when each is consistent with the last one it cosigned, and remembers that one
//! durably ([`state`]), so the host that writes the log cannot later shrink or rewrite it
//! unnoticed. [`server`] is the HTTP side; `keygen` makes its key.

pub mod server;
pub mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::audit::note::{NoteSigner, NoteVerifier};

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
    /// key that signs them (as `graphgate audit keygen` printed it); repeatable.
    #[arg(long = "log", value_name = "ORIGIN=KEY", required = true)]
    pub logs: Vec<String>,
    /// Address to listen on (plain HTTP: the protocol's trust is in the signatures; put TLS
    /// in front if the network asks for it).
    #[arg(
        long,
        env = "GRAPHGATE_WITNESS_LISTEN",
        default_value = "127.0.0.1:7380"
    )]
    pub listen: SocketAddr,
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
pub async fn run(cmd: WitnessCommand) -> std::io::Result<ExitCode> {
    match cmd {
        WitnessCommand::Serve(args) => serve(args).await,
        WitnessCommand::Keygen(args) => keygen(&args),
    }
}

fn keygen(args: &KeygenArgs) -> std::io::Result<ExitCode> {
    let (signer, encoded) = match NoteSigner::generate_cosigner(&args.name) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("graphgate: --name {:?}: {e}", args.name);
            return Ok(ExitCode::from(2));
        }
    };
    let mut text = encoded.expose().to_owned();
    text.push('\n');
    if let Err(e) = crate::audit::fingerprint::write_private(&args.out, text.as_bytes()) {
        eprintln!("graphgate: {}: {e}", args.out.display());
        return Ok(ExitCode::FAILURE);
    }
    eprintln!(
        "witness key written to {} (mode 0600): give it to `graphgate witness serve --key`; its public key, for the gateway's --audit-witness URL=KEY and `audit verify --witness-key`:",
        args.out.display()
    );
    println!("{}", signer.verifier());
    Ok(ExitCode::SUCCESS)
}

/// Parses the `--log ORIGIN=KEY` values: every problem at once.
pub fn parse_logs(values: &[String]) -> Result<HashMap<String, NoteVerifier>, String> {
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
            Ok(k) if origin.is_empty() => problems.push(format!("--log ={k}: no origin")),
            Ok(k) => {
                logs.insert(origin.to_owned(), k);
            }
            Err(e) => problems.push(format!("--log {origin}: {e}")),
        }
    }
    match problems.is_empty() {
        true => Ok(logs),
        false => Err(problems.join("; ")),
    }
}

async fn serve(args: ServeArgs) -> std::io::Result<ExitCode> {
    let usage = |e: String| {
        eprintln!("graphgate: {e}");
        Ok(ExitCode::from(2))
    };
    if let Err(e) = crate::audit::fingerprint::check_private(&args.key) {
        return usage(format!("--key {}: {e}", args.key.display()));
    }
    let text = std::fs::read_to_string(&args.key)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", args.key.display())))?;
    let signer = match NoteSigner::parse(&text) {
        Ok(s) if s.is_cosigner() => s,
        Ok(_) => {
            return usage(format!(
                "--key {}: a log's signing key, not a witness key (make one with `graphgate witness keygen`)",
                args.key.display()
            ));
        }
        Err(e) => return usage(format!("--key {}: {e}", args.key.display())),
    };
    let logs = match parse_logs(&args.logs) {
        Ok(l) => l,
        Err(e) => return usage(e),
    };
    let states = state::States::load(&args.state).map_err(|e| {
        std::io::Error::new(e.kind(), format!("--state {}: {e}", args.state.display()))
    })?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("--listen {}: {e}", args.listen)))?;
    let addr = listener.local_addr()?;
    let public = signer.verifier();
    let origins: Vec<&String> = logs.keys().collect();
    tracing::info!(listen = %addr, key = %public, logs = ?origins, "witness listening");
    eprintln!("witness {public} listening on http://{addr}");
    let witness = Arc::new(server::Witness::new(signer, logs, states));
    server::serve(listener, witness, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
