//! `graphgate operations [list|show]`: the operation catalog, offline, as text, Markdown (the
//! generated operations reference) or JSON.

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use graphgate::operation::catalog::CATALOG;
use graphgate::operation::reference::{self, OperationRef, render};

/// `graphgate operations ...`
#[derive(Debug, Args)]
pub struct OperationsArgs {
    #[command(subcommand)]
    command: Option<OperationsCommand>,
}

#[derive(Debug, Subcommand)]
enum OperationsCommand {
    /// Every operation: tier, versions, method and Multi Admin Approval coverage (the default).
    List {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Operations in full: paths, parameters (types, required), permissions, bulk names.
    Show {
        /// Operation names (`managedDevices.wipe`, or the action alone: `wipe`).
        #[arg(required_unless_present = "all")]
        operations: Vec<String>,
        /// Every operation (with `--format markdown`: the operations reference).
        #[arg(long, conflicts_with = "operations")]
        all: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

/// How to print.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// For a terminal.
    Text,
    /// Markdown (the operations reference).
    Markdown,
    /// JSON (an array; one object per operation).
    Json,
}

/// Runs the command: exit 0, or 2 naming an operation that does not exist.
pub fn run(args: OperationsArgs) -> ExitCode {
    let (names, all, format, list) = match args.command {
        None => (Vec::new(), true, Format::Text, true),
        Some(OperationsCommand::List { format }) => (Vec::new(), true, format, true),
        Some(OperationsCommand::Show {
            operations,
            all,
            format,
        }) => (operations, all, format, false),
    };
    let ops: Vec<OperationRef> = match all {
        true => reference::all(),
        false => match names.iter().map(|n| found(n)).collect::<Result<_, _>>() {
            Ok(ops) => ops,
            Err(problem) => {
                eprintln!("graphgate: {problem}");
                return ExitCode::from(2);
            }
        },
    };
    let text = match (format, list) {
        (Format::Json, _) => serde_json::to_string_pretty(&ops).unwrap_or_default() + "\n",
        (Format::Text, true) => render::text_list(&ops),
        (Format::Text, false) => ops
            .iter()
            .map(render::text_show)
            .collect::<Vec<_>>()
            .join("\n"),
        (Format::Markdown, _) if all => render::markdown(&ops),
        (Format::Markdown, _) => ops
            .iter()
            .map(render::markdown_one)
            .collect::<Vec<_>>()
            .join("\n"),
    };
    super::print_out(&text).unwrap_or(ExitCode::FAILURE)
}

/// The operation `name` names, or what to say about it.
fn found(name: &str) -> Result<OperationRef, String> {
    reference::find(name)
        .map(reference::describe)
        .ok_or_else(|| {
            format!(
                "no operation {name:?}{}; `graphgate operations list` lists all {}",
                graphgate::words::did_you_mean(name, CATALOG.iter().map(|op| op.name)),
                CATALOG.len()
            )
        })
}
