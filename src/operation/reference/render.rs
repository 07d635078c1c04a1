//! The operation reference as text for a terminal (a list that fits 120 columns, and one
//! operation in full) and as Markdown (the generated operations reference).

use std::fmt::Write;

use super::{OperationRef, ParamRef};

/// The list: one line per operation, and how to see one in full.
pub fn text_list(ops: &[OperationRef]) -> String {
    let width = ops.iter().map(|o| o.name.len()).max().unwrap_or(9).max(9);
    let mut out = format!(
        "{:<width$}  {:<11}  {:<10}  {:<6}  MULTI ADMIN APPROVAL\n",
        "OPERATION", "TIER", "VERSIONS", "METHOD"
    );
    for op in ops {
        let _ = writeln!(
            out,
            "{:<width$}  {:<11}  {:<10}  {:<6}  {}",
            op.name,
            op.tier,
            op.versions.join(" "),
            op.method,
            maa_short(op)
        );
    }
    let _ = writeln!(
        out,
        "\n{}; `graphgate operations show NAME` shows one in full (paths, parameters, permissions)",
        crate::words::count(ops.len(), "operation")
    );
    out
}

fn maa_short(op: &OperationRef) -> String {
    match (op.maa.coverage, op.maa.policy_type) {
        (_, Some(policy)) => format!("device action ({policy})"),
        ("never", _) => "never (a read)".to_owned(),
        _ => "app-only writes policy only".to_owned(),
    }
}

/// One operation in full.
pub fn text_show(op: &OperationRef) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} ({})", op.name, op.tier);
    let kind = match op.invocation {
        "function" => format!("Graph function {}()", op.action),
        "delete" => "DELETE of the managed device itself".to_owned(),
        _ => format!("Graph action {}", op.action),
    };
    let _ = writeln!(
        out,
        "  {kind}: {} {}; success: {}",
        op.method,
        on_what(op),
        op.success_status
    );
    let _ = writeln!(out, "  versions: {}", op.versions.join(", "));
    let _ = writeln!(out, "  paths ({}):", op.method);
    let width = op
        .paths
        .iter()
        .map(|p| p.versions.join(", ").len())
        .max()
        .unwrap_or(0)
        .max("simplified".len());
    for p in &op.paths {
        let _ = writeln!(out, "    {:<width$}  {}", p.versions.join(", "), p.path);
    }
    let _ = writeln!(out, "    {:<width$}  {}", "simplified", op.simplified_path);
    if !op.simplified_fields.is_empty() {
        let _ = writeln!(
            out,
            "  simplified body fields: {}",
            op.simplified_fields.join(", ")
        );
    }
    let _ = writeln!(out, "  body: {}", body(op));
    parameters_text(op, &mut out);
    let _ = writeln!(out, "  permission: {}", permission(op));
    let _ = writeln!(out, "  Multi Admin Approval (Intune): {}", op.maa.note);
    bulk_text(op, &mut out);
    example_rule(op, &mut out);
    out
}

fn on_what(op: &OperationRef) -> &'static str {
    match op.binding {
        "user" => "on a user (every device of theirs)",
        "devices" => "on the devices its body lists (decided device by device)",
        _ => "on one managed device",
    }
}

fn body(op: &OperationRef) -> String {
    match (op.body, op.wrapper) {
        ("none", _) => "none".to_owned(),
        (_, Some(wrapper)) => format!("required, every parameter wrapped in {wrapper:?}"),
        ("required", None) => "required (JSON)".to_owned(),
        _ => "optional (JSON; none is the same as {})".to_owned(),
    }
}

fn permission(op: &OperationRef) -> String {
    match op.permission_documented {
        Some(doc) if doc == op.permission_required => {
            format!("{} (as Microsoft documents)", op.permission_required)
        }
        Some(doc) => format!(
            "{} (graphgate requires it; Microsoft documents {doc}, which the service was seen to refuse)",
            op.permission_required
        ),
        None => format!(
            "{} (graphgate requires it; Microsoft documents none)",
            op.permission_required
        ),
    }
}

fn parameters_text(op: &OperationRef, out: &mut String) {
    if op.parameters.is_empty() {
        let _ = writeln!(out, "  parameters: none");
        return;
    }
    let _ = writeln!(
        out,
        "  parameters (as policy conditions name them: `when: - {{ param: NAME, ... }}`):"
    );
    let name_w = op
        .parameters
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(4);
    let _ = writeln!(
        out,
        "    {:<name_w$}  {:<11}  {:<8}  {:<10}  NOTES",
        "NAME", "TYPE", "REQUIRED", "VERSIONS"
    );
    for p in &op.parameters {
        let [name, ty, required, versions, notes] = param_cells(p);
        let line = format!("    {name:<name_w$}  {ty:<11}  {required:<8}  {versions:<10}  {notes}");
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// A parameter's cells: name, type, required, versions, notes.
fn param_cells(p: &ParamRef) -> [String; 5] {
    [
        p.name.clone(),
        p.ty.to_owned(),
        if p.required { "yes" } else { "no" }.to_owned(),
        p.versions.join(", "),
        notes(p),
    ]
}

fn notes(p: &ParamRef) -> String {
    let mut notes = Vec::new();
    if p.secret {
        notes.push("secret: a condition may test only present or absent".to_owned());
    }
    if p.address {
        notes.push("one email address".to_owned());
    }
    if !p.condition {
        notes.push("not a condition: the devices are decided one by one".to_owned());
    }
    if !p.values.is_empty() {
        notes.push(format!("one of: {}", p.values.join(", ")));
    }
    notes.join("; ")
}

fn bulk_text(op: &OperationRef, out: &mut String) {
    match (op.binding, op.bulk.as_slice()) {
        (_, []) => {}
        ("devices", actions) => {
            let _ = writeln!(
                out,
                "  actionName values offered (each device is decided as the operation it runs):"
            );
            for b in actions {
                let implies = b
                    .implies
                    .as_ref()
                    .map(|i| format!(" (implies {i})"))
                    .unwrap_or_default();
                let _ = writeln!(out, "    {:<37} {}{implies}", b.action_name, b.operation);
            }
        }
        (_, actions) => {
            for b in actions {
                let _ = writeln!(
                    out,
                    "  bulk: a beta executeAction with actionName {:?} runs it on each listed device (the policy decides each as this operation)",
                    b.action_name
                );
            }
        }
    }
}

/// A rule for the operation, ready to adapt; with a condition on its first boolean (or
/// enum) parameter.
fn example_rule(op: &OperationRef, out: &mut String) {
    if op.binding == "devices" {
        let _ = writeln!(
            out,
            "  in policy.yaml: name the operations its actionNames run (e.g. managedDevices.wipe), not this one"
        );
        return;
    }
    let _ = writeln!(out, "  a rule for it in policy.yaml:");
    let _ = writeln!(out, "    - name: may-{}", op.action);
    let _ = writeln!(out, "      callers: [<caller name>]");
    let _ = writeln!(out, "      operations: [{}]", op.name);
    if op.binding == "device" {
        let _ = writeln!(
            out,
            "      devices: any    # or a list of managed-device ids"
        );
    }
    let condition = op
        .parameters
        .iter()
        .filter(|p| p.condition && !p.secret)
        .find_map(|p| match (p.ty, p.values.first()) {
            ("boolean", _) => Some(format!("{{ param: {}, equals: true }}", p.name)),
            ("enum", Some(first)) => Some(format!("{{ param: {}, one_of: [{first}] }}", p.name)),
            _ => None,
        });
    if let Some(condition) = condition {
        let _ = writeln!(out, "      when:\n        - {condition}");
    }
}

/// The operations reference in Markdown: a summary table, then each operation.
pub fn markdown(ops: &[OperationRef]) -> String {
    let mut out = String::from(
        "# Operations reference\n\n\
         Every operation graphgate gates, generated from its catalog by `graphgate operations \
         show --all --format markdown` (do not edit by hand). A policy rule names operations by \
         the names below; its conditions name parameters by the names in each table.\n\n\
         | Operation | Tier | Versions | Method | Permission graphgate requires | Multi Admin Approval |\n\
         |---|---|---|---|---|---|\n",
    );
    for op in ops {
        let _ = writeln!(
            out,
            "| [`{}`](#{}) | {} | {} | {} | `{}` | {} |",
            op.name,
            anchor(op.name),
            op.tier,
            op.versions.join(", "),
            op.method,
            op.permission_required,
            maa_short(op)
        );
    }
    for op in ops {
        out.push('\n');
        out.push_str(&markdown_one(op));
    }
    out
}

/// The heading anchor GitHub and mdBook give `name`'s section.
fn anchor(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// One operation's section in Markdown.
pub fn markdown_one(op: &OperationRef) -> String {
    let mut out = format!("## {}\n\n", op.name);
    let _ = writeln!(out, "- **Tier:** {}", op.tier);
    let _ = writeln!(
        out,
        "- **Graph:** `{}` {}; success status {}",
        op.method,
        on_what(op),
        op.success_status
    );
    let _ = writeln!(out, "- **Versions:** {}", op.versions.join(", "));
    let _ = writeln!(out, "- **Body:** {}", body(op).replace('"', "`"));
    let _ = writeln!(out, "- **Permission:** {}", permission(op));
    let _ = writeln!(out, "- **Multi Admin Approval:** {}", op.maa.note);
    out.push_str("- **Paths:**\n");
    for p in &op.paths {
        let _ = writeln!(out, "  - {}: `{}`", p.versions.join(", "), p.path);
    }
    let _ = writeln!(out, "  - simplified API: `{}`", op.simplified_path);
    for b in &op.bulk {
        let implies = b
            .implies
            .as_ref()
            .map(|i| format!(" (implies `{i}`)"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "- **Bulk:** `actionName` `{}` runs `{}`{implies}",
            b.action_name, b.operation
        );
    }
    if op.parameters.is_empty() {
        out.push_str("\nNo parameters.\n");
        return out;
    }
    out.push_str("\n| Parameter | Type | Required | Versions | Notes |\n|---|---|---|---|---|\n");
    for p in &op.parameters {
        let [name, ty, required, versions, notes] = param_cells(p);
        let _ = writeln!(
            out,
            "| `{name}` | {ty} | {required} | {versions} | {notes} |"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::{all, describe, find};
    use super::*;

    #[test]
    fn the_list_fits_120_columns_and_names_every_operation() {
        let ops = all();
        let text = text_list(&ops);
        for line in text.lines() {
            assert!(line.chars().count() <= 120, "{} wide: {line}", line.len());
        }
        for op in &ops {
            assert!(text.contains(op.name), "{}", op.name);
        }
        assert!(text.contains("35 operations;"), "{text}");
    }

    #[test]
    fn one_operation_shows_its_parameters_permissions_and_a_rule() {
        let text = text_show(&describe(find("managedDevices.wipe").unwrap()));
        for part in [
            "managedDevices.wipe (destructive)",
            "v1.0, beta  /deviceManagement/managedDevices/{managedDeviceId}/wipe",
            "beta",
            "keepUserData",
            "secret: a condition may test only present or absent",
            "one of: default, doNotObliterate",
            "DeviceManagementManagedDevices.PrivilegedOperations.All (graphgate requires it; Microsoft documents DeviceManagementManagedDevices.ReadWrite.All",
            "device-action access policy (deviceWipe)",
            "actionName \"wipe\"",
            "- { param: keepEnrollmentData, equals: true }",
        ] {
            assert!(text.contains(part), "{part:?} in:\n{text}");
        }
    }

    #[test]
    fn the_markdown_reference_links_every_section() {
        let ops = all();
        let md = markdown(&ops);
        for op in &ops {
            assert!(md.contains(&format!("\n## {}\n", op.name)), "{}", op.name);
            assert!(md.contains(&format!("(#{})", anchor(op.name))));
        }
        assert_eq!(anchor("managedDevices.wipe"), "manageddeviceswipe");
    }
}
