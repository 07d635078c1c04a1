//! `graphgate completions SHELL` and `graphgate man`: shell completion scripts and the man
//! pages, generated from the same command definition the parser uses (clap_complete,
//! clap_mangen), so neither can drift from the flags.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use super::args::{Cli, CompletionsArgs, ManArgs};

/// The binary's name, as completions and man pages call it.
const NAME: &str = "graphgate";

/// Prints the completion script.
pub fn completions(args: &CompletionsArgs) -> ExitCode {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, NAME, &mut script);
    super::print_out(&String::from_utf8_lossy(&script)).unwrap_or(ExitCode::FAILURE)
}

/// Prints graphgate(1), or writes every page into `--out-dir`.
pub fn man(args: &ManArgs) -> std::io::Result<ExitCode> {
    let command = Cli::command();
    match &args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            clap_mangen::generate_to(command, dir)?;
            eprintln!("man pages written to {}", dir.display());
        }
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(command).render(&mut out)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
