//! The `graphgate` command line: parse the flags, read the environment once, start logging,
//! and run the command (`serve`, `emulate`, `policy`, `audit`; see `cli`).

use std::process::ExitCode;

use clap::Parser;
use graphgate::telemetry;

mod cli;
use cli::args::{Cli, Command, LogFormat};

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
        // Traces are exported by a gateway only; the other commands log locally.
        let otlp = matches!(cli.command, Command::Serve(_))
            .then(|| env.otlp())
            .flatten();
        let json = matches!(cli.log_format, LogFormat::Json);
        let telemetry = telemetry::init(json, &env.log(), otlp)?;
        let result = match cli.command {
            Command::Serve(args) => cli::serve::run(*args, &env).await,
            #[cfg(feature = "emulator")]
            Command::Emulate(args) => cli::emulate::run(args).await,
            Command::Policy(cmd) => cli::policy::run(cmd),
            Command::Audit(cmd) => Ok(cli::audit::run(cmd)?),
        };
        telemetry.shutdown().await;
        result
    });
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
