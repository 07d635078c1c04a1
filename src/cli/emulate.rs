//! `graphgate emulate`: the Entra + Graph emulator on its own, for a gateway in another process
//! (its flags, and the lines that say how to point a gateway at it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use graphgate_emulator::{
    AppRegistration, EmulatedDevice, Emulator, EmulatorConfig, FaultSpec, Faults, MaaConfig,
    Secret, Target,
};

/// The permission reading Multi Admin Approval's requests needs (granted with `--maa`).
const MAA_READ_ROLE: &str = "DeviceManagementRBAC.Read.All";

use super::Fallible;

#[derive(Args)]
pub struct EmulateArgs {
    /// Address to listen on (HTTPS).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Write the emulator's CA certificate (PEM) here.
    #[arg(long)]
    pub ca_out: Option<PathBuf>,
    /// Tenant id of the emulated directory.
    #[arg(long, default_value = graphgate_emulator::DEMO_TENANT_ID)]
    pub tenant_id: String,
    /// Client id of the registered app.
    #[arg(long, default_value = graphgate_emulator::DEMO_CLIENT_ID)]
    pub client_id: String,
    /// Client secret of the registered app.
    #[arg(long, env = "GRAPHGATE_EMULATOR_CLIENT_SECRET", default_value = graphgate_emulator::DEMO_CLIENT_SECRET, hide_default_value = true)]
    pub client_secret: String,
    /// Application permissions granted to the app (repeatable).
    #[arg(long = "role", default_value = graphgate_emulator::microsoft::PRIV_OPS)]
    pub roles: Vec<String>,
    /// Lifetime of issued tokens.
    #[arg(long, default_value_t = 3599)]
    pub token_lifetime_secs: u64,
    /// A managed device in the inventory, ID[:OS] with OS windows (the default), ios, macos
    /// or android (repeatable) [default: the demo devices].
    #[arg(long = "device", value_name = "ID[:OS]")]
    pub devices: Vec<EmulatedDevice>,
    /// How long an accepted action stays pending in the device's deviceActionResults before
    /// it is done.
    #[arg(long, default_value_t = graphgate_emulator::DEFAULT_ACTION_COMPLETION.as_secs())]
    pub action_completion_secs: u64,
    /// Inject a fault, e.g. token-down, graph-429:retry-after=5,times=2 (repeatable; see --help).
    #[arg(long = "fault", value_name = "SPEC", long_help = graphgate_emulator::FAULT_SPEC_HELP, value_parser = parse_fault)]
    pub faults: Vec<FaultSpec>,
    /// Play Intune's Multi Admin Approval for these operations (e.g. wipe,retire,delete):
    /// they are held until approved at POST /_emulator/maa/{code}/approve (the app is also
    /// granted DeviceManagementRBAC.Read.All, to read the approval requests). A name that is
    /// no action of the CSDL (nor delete) is refused.
    #[arg(long, value_name = "OPERATIONS", value_delimiter = ',', value_parser = MaaConfig::operation)]
    pub maa: Vec<String>,
    /// The status a Multi Admin Approval hold is answered with: 400, 403 or 412.
    #[arg(long, default_value_t = 403, value_parser = parse_maa_status)]
    pub maa_status: u16,
}

/// `--maa-status`: one of the statuses a hold has been seen with.
fn parse_maa_status(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .ok()
        .filter(|v| MaaConfig::STATUSES.contains(v))
        .ok_or_else(|| format!("'{s}': a hold is answered 400, 403 or 412"))
}

/// `text` quoted for a POSIX shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// One `--fault` spec (clap reports the error with the flag).
fn parse_fault(spec: &str) -> Result<FaultSpec, String> {
    spec.parse()
}

/// Runs the emulator until SIGTERM or Ctrl-C.
pub async fn run(args: EmulateArgs) -> Fallible<ExitCode> {
    let defaults = EmulatorConfig::default();
    let mut roles = args.roles;
    let maa = (!args.maa.is_empty()).then(|| {
        roles.push(MAA_READ_ROLE.to_owned());
        MaaConfig {
            operations: args.maa,
            status: args.maa_status,
        }
    });
    // The secret is printed only when it is the published demo one.
    let secret_shown = match args.client_secret == graphgate_emulator::DEMO_CLIENT_SECRET {
        true => quote(&args.client_secret),
        false => {
            "<the secret given with --client-secret or GRAPHGATE_EMULATOR_CLIENT_SECRET>".to_owned()
        }
    };
    let app_lines = format!(
        "  export AZURE_TENANT_ID={}\n  export AZURE_CLIENT_ID={}\n  export AZURE_CLIENT_SECRET={secret_shown}",
        quote(&args.tenant_id),
        quote(&args.client_id),
    );
    let config = EmulatorConfig {
        tenant_id: args.tenant_id,
        apps: vec![AppRegistration {
            client_id: args.client_id,
            client_secret: Secret::new(args.client_secret),
            roles,
        }],
        maa,
        token_lifetime: Duration::from_secs(args.token_lifetime_secs),
        devices: if args.devices.is_empty() {
            defaults.devices
        } else {
            args.devices
        },
        action_completion: Duration::from_secs(args.action_completion_secs),
        ..defaults
    };
    let emulator = Emulator::new(config)?;
    let mut faults = Faults::default();
    for FaultSpec(target, fault) in args.faults {
        match target {
            Target::Token => faults.token.push(fault),
            Target::Graph => faults.graph.push(fault),
        }
    }
    if faults != Faults::default() {
        eprintln!(
            "injecting faults: {}",
            serde_json::to_string(&faults).unwrap_or_default()
        );
    }
    emulator.set_faults(faults);
    if let Some(path) = &args.ca_out {
        std::fs::write(path, emulator.ca_pem())?;
    }
    let listener = super::bind(args.listen, "emulate --listen").await?;
    let signal = super::shutdown_signal();
    let addr = listener.local_addr()?;
    eprintln!(
        "graphgate emulator listening on https://{addr}\nIt expects this tenant and app (a gateway's credential, as a real tenant's would be):\n{app_lines}\nPoint a gateway at it with:\n  export GRAPHGATE_CONNECT_TO={}\n  export GRAPHGATE_EXTRA_CA_FILE={}",
        quote(&Emulator::connect_to(addr)),
        args.ca_out
            .as_ref()
            .map_or("<write it with --ca-out FILE>".into(), |p| quote(
                &p.display().to_string()
            )),
    );
    Arc::clone(&emulator).serve(listener, signal).await?;
    Ok(ExitCode::SUCCESS)
}
