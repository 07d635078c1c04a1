//! The generated references: the command-line reference (`docs/reference/configuration.md`:
//! every command, flag and argument of the clap definition, with its environment variable,
//! default and help) and the operations reference (`docs/reference/operations.md`: the
//! catalog as `graphgate operations show --all --format markdown` prints it, rendered by
//! `operation::reference::render::markdown`). A test compares each checked-in file with a
//! fresh one; `UPDATE_DOCS=1` rewrites them.

use std::fmt::Write as _;

use clap::{Arg, ArgAction, Command, CommandFactory};

use super::args::Cli;

/// Where the references are checked in, from the repository's root.
const PATH: &str = "docs/reference/configuration.md";
const OPERATIONS_PATH: &str = "docs/reference/operations.md";

/// The whole reference, as Markdown.
fn configuration_markdown() -> String {
    let mut out = String::from(
        "# Command-line reference\n\n\
         <!-- Generated from the clap definition (src/cli/args.rs and the modules it \
         flattens) by `UPDATE_DOCS=1 cargo test --bin graphgate reference`; do not edit. -->\n\n\
         Every command of `graphgate`, and every flag with the environment variable that sets \
         it (a flag on the command line wins), its default and what it does. \
         [Configuration](../configuration.md) explains the settings by topic, and the \
         variables that are not flags (`AZURE_*`, `OTEL_*`).\n",
    );
    let root = Cli::command();
    command(&mut out, &root, "graphgate", &root);
    out
}

/// One command's section, then its subcommands'.
fn command(out: &mut String, cmd: &Command, path: &str, root: &Command) {
    let has_own = cmd.get_arguments().any(|a| !a.is_hide_set());
    if has_own || cmd.get_subcommands().next().is_none() {
        let _ = write!(out, "\n## `{path}`\n\n");
        if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
            let about = cell(&about.to_string());
            let stop = if about.ends_with('.') { "" } else { "." };
            let _ = write!(out, "{about}{stop}\n\n");
        }
        table(out, cmd, std::ptr::eq(cmd, root));
    }
    // In the definition's order: `serve` first.
    for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
        command(out, sub, &format!("{path} {}", sub.get_name()), root);
    }
}

fn table(out: &mut String, cmd: &Command, root: bool) {
    let args: Vec<&Arg> = cmd.get_arguments().filter(|a| !a.is_hide_set()).collect();
    if args.is_empty() {
        out.push_str("No flags");
        out.push_str(if root { ".\n" } else { " of its own.\n" });
        return;
    }
    out.push_str("| Flag | Environment | Default | Description |\n|---|---|---|---|\n");
    for arg in args {
        let flag = match (arg.get_long(), arg.is_positional()) {
            (Some(long), _) => format!("`--{long}`"),
            (None, _) => {
                let name = arg.get_value_names().and_then(|n| n.first()).map_or_else(
                    || arg.get_id().to_string().to_uppercase(),
                    ToString::to_string,
                );
                format!("`<{name}>`")
            }
        };
        let env = arg.get_env().map_or_else(
            || "(none)".to_owned(),
            |e| format!("`{}`", e.to_string_lossy()),
        );
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        let default = match (defaults.is_empty(), arg.get_action()) {
            (false, _) => format!("`{}`", defaults.join(",")),
            (true, ArgAction::SetTrue) => "off".to_owned(),
            (true, ArgAction::Append) => "none (repeatable)".to_owned(),
            (true, _) if arg.is_required_set() => "required".to_owned(),
            (true, _) => "none".to_owned(),
        };
        let mut help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        if !help.is_empty() && !help.ends_with('.') {
            help.push('.');
        }
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| format!("`{}`", v.get_name()))
            .collect();
        if !values.is_empty() && !matches!(arg.get_action(), ArgAction::SetTrue) {
            let _ = write!(help, " One of {}.", values.join(", "));
        }
        let _ = writeln!(out, "| {flag} | {env} | {default} | {} |", cell(&help));
    }
}

/// Text fit for one table cell: one line, `|` escaped.
fn cell(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    // Outside code spans `<id>` would be read as an HTML tag (and hidden): write it as text.
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for c in text.chars() {
        match c {
            '`' => {
                in_code = !in_code;
                out.push(c);
            }
            '|' => out.push_str("\\|"),
            '<' if !in_code => out.push_str("&lt;"),
            '>' if !in_code => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The checked-in file at `path` is `fresh`; with `UPDATE_DOCS=1` it is rewritten.
    pub(crate) fn check_generated(path: &str, fresh: &str) {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        if std::env::var("UPDATE_DOCS").is_ok_and(|v| v == "1") {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, fresh).unwrap();
            return;
        }
        let checked_in = std::fs::read_to_string(&file).unwrap_or_default();
        if checked_in != fresh {
            let line = checked_in
                .lines()
                .zip(fresh.lines())
                .position(|(a, b)| a != b)
                .map_or(
                    checked_in.lines().count().min(fresh.lines().count()) + 1,
                    |n| n + 1,
                );
            panic!(
                "{path} is stale (first difference at line {line}): rewrite it with \
                 UPDATE_DOCS=1 cargo test --bin graphgate reference, and commit it"
            );
        }
    }

    #[test]
    fn the_configuration_reference_is_the_clap_definitions() {
        let fresh = configuration_markdown();
        // Serve's flags are in its section, with their variables.
        let serve = fresh.split("\n## `graphgate serve`\n").nth(1).unwrap();
        let serve = serve.split("\n## ").next().unwrap();
        for flag in ["--listen", "--audit-log", "--state", "--max-body-bytes"] {
            let row = serve
                .lines()
                .find(|l| l.starts_with(&format!("| `{flag}` |")))
                .unwrap_or_else(|| panic!("{flag}"));
            let env = format!("GRAPHGATE_{}", flag[2..].replace('-', "_").to_uppercase());
            assert!(row.contains(&env), "{row}");
        }
        check_generated(PATH, &fresh);
    }

    #[test]
    fn a_cell_shows_placeholders_as_text_and_keeps_code_spans() {
        assert_eq!(
            cell("links to <URL>/a/<id>, `<log>.anchor` | x"),
            "links to &lt;URL&gt;/a/&lt;id&gt;, `<log>.anchor` \\| x"
        );
    }

    #[test]
    fn the_operations_reference_is_the_catalogs() {
        use graphgate::operation::reference;
        let fresh = reference::render::markdown(&reference::all());
        for op in graphgate::operation::catalog::CATALOG {
            assert!(
                fresh.contains(&format!("\n## {}\n", op.name)),
                "{}",
                op.name
            );
        }
        assert!(
            fresh.contains("| `keepUserData` | boolean |"),
            "wipe's parameter"
        );
        check_generated(OPERATIONS_PATH, &fresh);
    }
}
