//! `graphgate completions SHELL` and `graphgate man`: shell completion scripts and the man
//! pages, generated from the same command definition the parser uses (clap_complete,
//! clap_mangen), so neither can drift from the flags.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::args::Cli;

/// `graphgate completions SHELL`
#[derive(Debug, Args)]
#[command(after_help = "Install, for example:
  bash:  graphgate completions bash > /etc/bash_completion.d/graphgate   (or: source <(graphgate completions bash))
  zsh:   graphgate completions zsh > \"${fpath[1]}/_graphgate\"
  fish:  graphgate completions fish > ~/.config/fish/completions/graphgate.fish")]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: Shell,
}

/// `graphgate man`
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write graphgate.1 and a page per command (graphgate-serve.1, ...) into this
    /// directory instead of printing graphgate(1).
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

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
