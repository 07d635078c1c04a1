//! The `graphgate` command line: parse the flags, read the environment once, start logging,
//! and run the command (`serve`, `emulate`, `policy`, `audit`, `witness`, `approvals`,
//! `operations`, `completions`, `man`; see `cli`).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use graphgate::telemetry;

mod cli;
use cli::args::{Cli, Command, LogFormat};

/// How long the exit waits for tasks still running once serving, the audit flush and the
/// exporters' flush are done (or given up).
const EXIT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the trace exporter gets to send what it holds at exit (a collector that hangs
/// must not hold the process past its grace period).
const TELEMETRY_FLUSH: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = cli::Env::read();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("graphgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Traces are exported by a gateway only; the other commands log locally. Unusable
        // collector TLS files export nothing: `serve` reports them with every other problem
        // and stops (nothing is ever exported in clear or unchecked instead).
        let otlp = match &cli.command {
            Command::Serve(args) if !args.check_config => env.otlp(),
            _ => None,
        };
        let otlp = otlp.filter(|o| graphgate::otlp::client_config(&o.tls).is_ok());
        let json = matches!(cli.log_format, LogFormat::Json);
        let telemetry = telemetry::init(json, &env.log(), otlp)?;
        let result = match cli.command {
            Command::Serve(args) => cli::serve::run(*args, &env).await,
            #[cfg(feature = "emulator")]
            Command::Emulate(args) => cli::emulate::run(args).await,
            Command::Policy(cmd) => cli::policy::run(cmd),
            Command::Audit(cmd) => Ok(cli::reader_gone_is_fine(cli::audit::run(cmd))?),
            Command::Witness(cmd) => cli::witness::run(cmd).await,
            Command::Approvals(args) => cli::approvals::run(args).await,
            Command::Operations(args) => Ok(cli::operations::run(args)),
            Command::Completions(args) => Ok(cli::manual::completions(&args)),
            Command::Man(args) => Ok(cli::reader_gone_is_fine(cli::manual::man(&args))?),
        };
        if tokio::time::timeout(TELEMETRY_FLUSH, telemetry.shutdown())
            .await
            .is_err()
        {
            eprintln!("graphgate: traces not exported within {TELEMETRY_FLUSH:?} at exit");
        }
        result
    });
    // Whatever is still running (a call past the grace period, a blocking export) does not
    // hold the exit: the audit is flushed and the exporters were given their turn.
    runtime.shutdown_timeout(EXIT_TIMEOUT);
    match result {
        Ok(code) => code,
        Err(e) => {
            // Start-up problems are reported together, one a line.
            for line in e.to_string().lines() {
                eprintln!("graphgate: {line}");
            }
            ExitCode::FAILURE
        }
    }
}
