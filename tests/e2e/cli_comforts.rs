//! The command line's comforts, as a user meets them: `operations` (the catalog offline),
//! shell completions loaded in each shell, the man page, `policy check` suggesting the name
//! meant and listing the valid ones, counts in words, and `serve --check-config` judging the
//! app's tenant and client ids.

use std::process::{Command, Output};

use crate::cli::{OutputWithin, graphgate};
use crate::common::require_tool;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh directory for one test's files.
fn dir(tag: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("graphgate-comforts-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn operations_lists_the_catalog_and_shows_one_operation_in_full() {
    let out = graphgate(&["operations"]).env_clear().output_within();
    let list = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    for line in list.lines() {
        assert!(
            line.chars().count() <= 120,
            "wider than 120 columns: {line}"
        );
    }
    let rows: Vec<&str> = list
        .lines()
        .filter(|l| l.starts_with("managedDevices.") || l.starts_with("users."))
        .collect();
    assert_eq!(rows.len(), 35, "{list}");
    let wipe = rows
        .iter()
        .find(|r| r.starts_with("managedDevices.wipe "))
        .unwrap();
    assert!(
        wipe.contains("destructive") && wipe.contains("deviceWipe"),
        "{wipe}"
    );
    assert!(list.contains("35 operations;"), "{list}");
    assert_eq!(
        stdout(&graphgate(&["operations", "list"]).output_within()),
        list
    );

    // One in full, by its action alone: paths, parameters with types, permissions, MAA.
    let out = graphgate(&["operations", "show", "cleanWindowsDevice"]).output_within();
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    for part in [
        "managedDevices.cleanWindowsDevice (destructive)",
        "/deviceManagement/managedDevices/{managedDeviceId}/cleanWindowsDevice",
        "/api/v1/managedDevices/{managedDeviceId}/cleanWindowsDevice",
        "keepUserData  boolean      yes",
        "DeviceManagementManagedDevices.PrivilegedOperations.All (as Microsoft documents)",
        "held only where an access policy holds app-only Graph writes",
        "- { param: keepUserData, equals: true }",
    ] {
        assert!(text.contains(part), "{part:?} in:\n{text}");
    }

    // JSON, for scripts: every operation with its parameters.
    let out = graphgate(&["operations", "show", "--all", "--format", "json"]).output_within();
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 35);
    let scan = all
        .iter()
        .find(|o| o["name"] == "managedDevices.windowsDefenderScan")
        .unwrap();
    assert_eq!(scan["parameters"][0]["name"], "quickScan");
    assert_eq!(scan["parameters"][0]["type"], "boolean");
    assert_eq!(scan["parameters"][0]["required"], true);
    assert_eq!(
        scan["permission_required"],
        "DeviceManagementManagedDevices.PrivilegedOperations.All"
    );
    let read = all
        .iter()
        .find(|o| o["name"] == "managedDevices.getFileVaultKey")
        .unwrap();
    assert_eq!(
        (read["method"].as_str(), read["maa"]["coverage"].as_str()),
        (Some("GET"), Some("never"))
    );

    // Markdown: the operations reference, a section per operation.
    let out = graphgate(&["operations", "show", "--all", "--format", "markdown"]).output_within();
    let md = stdout(&out);
    assert!(md.starts_with("# Operations reference\n"), "{md}");
    assert_eq!(md.matches("\n## ").count(), 35);

    // A name that is not one: exit 2, the closest one named.
    let out = graphgate(&["operations", "show", "managedDevices.whipe"]).output_within();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("(did you mean managedDevices.wipe?)"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
}

/// Each shell's script, generated from the binary's own definition; where the shell is
/// installed (CI installs bash, zsh and fish), it loads without error and completes a
/// subcommand and a flag.
#[test]
fn completions_load_in_each_shell_and_complete_commands_and_flags() {
    let script = |shell: &str| {
        let out = graphgate(&["completions", shell]).output_within();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains("graphgate") && text.contains("operations"),
            "{shell}: {text}"
        );
        text
    };
    for shell in ["elvish", "powershell"] {
        script(shell);
    }
    let out = graphgate(&["completions", "tcsh"]).output_within();
    assert_eq!(out.status.code(), Some(2), "an unknown shell is refused");

    let dir = dir("completions");
    let run = |shell: &str, code: String| -> String {
        let out = Command::new(shell)
            .arg("-c")
            .arg(code)
            .current_dir(&dir)
            .output_within();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{shell}: {out:?}"
        );
        stdout(&out)
    };
    if require_tool("bash", &["bash", "--version"], "Debian's bash") {
        let file = dir.join("graphgate.bash");
        std::fs::write(&file, script("bash")).unwrap();
        let words = |line: &str| {
            run(
                "bash",
                format!(
                    "source {} && COMP_WORDS=({line}) && COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)) && _graphgate graphgate \"${{COMP_WORDS[-1]}}\" && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                    file.display()
                ),
            )
        };
        assert_eq!(words("graphgate ope"), "operations\n");
        assert!(words("graphgate audit query --fo").contains("--format"));
    }
    if require_tool(
        "zsh",
        &["zsh", "--version"],
        "Debian's zsh (.ci/run installs it)",
    ) {
        let file = dir.join("_graphgate");
        std::fs::write(&file, script("zsh")).unwrap();
        let out = run(
            "zsh",
            format!(
                "autoload -U compinit && compinit -u -d {}/.zcompdump && source {} && print $_comps[graphgate]",
                dir.display(),
                file.display()
            ),
        );
        assert_eq!(out, "_graphgate\n");
    }
    if require_tool(
        "fish",
        &["fish", "--version"],
        "Debian's fish (.ci/run installs it)",
    ) {
        let file = dir.join("graphgate.fish");
        std::fs::write(&file, script("fish")).unwrap();
        let out = run(
            "fish",
            format!(
                "source {}; complete -C'graphgate oper'; complete -C'graphgate operations show --for'",
                file.display()
            ),
        );
        assert!(out.starts_with("operations\t"), "{out}");
        assert!(out.contains("--format"), "{out}");
    }
}

/// `graphgate man` prints graphgate(1), naming every command; `--out-dir` writes a page per
/// command (the systemd unit's test renders them with `man`).
#[test]
fn the_man_page_names_every_command() {
    let out = graphgate(&["man"]).output_within();
    let page = stdout(&out);
    assert!(
        out.status.success() && page.contains(".TH graphgate 1"),
        "{page}"
    );
    for command in [
        "serve",
        "emulate",
        "policy",
        "audit",
        "operations",
        "completions",
        "man",
    ] {
        assert!(
            page.contains(&format!("graphgate\\-{command}(1)")),
            "{command}: {page}"
        );
    }
    let dir = dir("man");
    let out = graphgate(&["man", "--out-dir", dir.to_str().unwrap()]).output_within();
    assert!(out.status.success(), "{}", stderr(&out));
    for page in [
        "graphgate.1",
        "graphgate-serve.1",
        "graphgate-audit-query.1",
        "graphgate-operations-show.1",
    ] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap();
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
    // Its flags are the parser's: serve's page documents --check-config.
    let serve = std::fs::read_to_string(dir.join("graphgate-serve.1")).unwrap();
    assert!(serve.contains("check\\-config"), "{serve}");
}

#[test]
fn policy_check_suggests_the_name_meant_and_lists_the_valid_ones() {
    let dir = dir("suggest");
    let file = dir.join("policy.yaml");
    std::fs::write(
        &file,
        "version: 1
callers:
  - name: wiper
    api_key_sha256: \"1f2d3c4b5a69788796a5b4c3d2e1f0011223344556677889aabbccddeeff0011\"
rules:
  - name: wipe-keeping-data
    callers: [wipper]
    operations: [managedDevices.wipe]
    when:
      - { param: keepUserdata, equals: true }
  - name: retire
    callers: [wiper]
    operations: [managedDevices.retyre]
    tier: destructiv
  - name: scan
    callers: [wiper]
    operations: [managedDevices.syncDevice]
    when:
      - { param: quickScan, equals: true }
",
    )
    .unwrap();
    let out = graphgate(&["policy", "check", file.to_str().unwrap()]).output_within();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let line = |needle: &str| {
        err.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{err}"))
            .to_owned()
    };
    let param = line("has no parameter \"keepUserdata\"");
    assert!(param.contains(":10:9: "), "{param}");
    assert!(param.contains("(did you mean keepUserData?)"), "{param}");
    assert!(
        param.contains("its parameters: keepEnrollmentData, keepUserData, macOsUnlockCode, persistEsimDataPlan, obliterationBehavior, useProtectedWipe"),
        "{param}"
    );
    assert!(
        param.contains("graphgate operations show managedDevices.wipe"),
        "{param}"
    );
    let caller = line("unknown caller \"wipper\"");
    assert!(
        caller.contains("(did you mean wiper?); callers: wiper"),
        "{caller}"
    );
    let op = line("unknown operation \"managedDevices.retyre\"");
    assert!(op.contains("(did you mean managedDevices.retire?); known operations: managedDevices.retire, managedDevices.wipe"), "{op}");
    assert!(line("unknown tier \"destructiv\"").contains("(did you mean destructive?)"));
    let none = line("has no parameter \"quickScan\"");
    assert!(
        none.contains("it takes no parameters") && !none.contains("did you mean"),
        "{none}"
    );
    // A misspelt key (reported alone: the file is not read further).
    std::fs::write(
        &file,
        "version: 1\ncallers:\n  - name: a\n    api_key_sha256: x\n    rate_limt: 5 per hour\nrules: []\n",
    )
    .unwrap();
    let out = graphgate(&["policy", "check", file.to_str().unwrap()]).output_within();
    let err = stderr(&out);
    assert!(
        err.contains("unknown key `rate_limt` (did you mean rate_limit?); expected one of: "),
        "{err}"
    );
}

#[test]
fn counts_are_written_in_words() {
    let dir = dir("plurals");
    let file = dir.join("policy.yaml");
    std::fs::write(
        &file,
        "version: 1
callers:
  - name: one
    api_key_sha256: \"1f2d3c4b5a69788796a5b4c3d2e1f0011223344556677889aabbccddeeff0011\"
rules:
  - name: only
    callers: [one]
    operations: [managedDevices.syncDevice]
",
    )
    .unwrap();
    let out = graphgate(&["policy", "check", file.to_str().unwrap()]).output_within();
    let text = stdout(&out);
    assert!(
        text.contains(": OK (1 caller, 1 rule, policy hash "),
        "{text}"
    );
    std::fs::write(&file, "version: 1\ncallers: []\nrules: []\nrulez: []\n").unwrap();
    let out = graphgate(&["policy", "check", file.to_str().unwrap()]).output_within();
    assert!(
        stderr(&out).contains("policy.yaml has 1 error:"),
        "{}",
        stderr(&out)
    );
    let shipped = graphgate(&["policy", "check", "policy.yaml"]).output_within();
    let text = stdout(&shipped);
    assert!(
        text.contains(" callers, ") && text.contains(" rules, "),
        "{text}"
    );
}

/// `serve --check-config` judges the app's ids with every other problem: a tenant is a GUID
/// or one of its domain names, a client id a GUID.
#[test]
fn serve_refuses_a_tenant_or_client_id_that_is_not_one() {
    let dir = dir("ids");
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, "version: 1\ncallers: []\nrules: []\n").unwrap();
    let check = |tenant: &str, client: &str, secret: Option<&str>| {
        let mut cmd = graphgate(&[
            "serve",
            "--check-config",
            "--audit-log",
            "none",
            "--policy",
            policy.to_str().unwrap(),
        ]);
        cmd.env("AZURE_TENANT_ID", tenant)
            .env("AZURE_CLIENT_ID", client);
        if let Some(secret) = secret {
            cmd.env("AZURE_CLIENT_SECRET", secret);
        }
        let out = cmd.output_within();
        let problems: Vec<String> = stdout(&out)
            .lines()
            .filter_map(|l| l.strip_prefix("problem: "))
            .map(str::to_owned)
            .collect();
        (out.status.code(), problems)
    };
    let (code, problems) = check("contoso", "my-app", Some("s"));
    assert_eq!(code, Some(1));
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("AZURE_TENANT_ID \"contoso\" is neither a tenant id"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("AZURE_CLIENT_ID \"my-app\" is not a client id"),
        "{problems:?}"
    );
    // With the secret missing too: all three at once.
    let (_, problems) = check("common", "my-app", None);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("AZURE_CLIENT_SECRET is not set"))
    );
    assert!(problems.iter().any(|p| p.contains("issued by one tenant")));
    // A domain name of the tenant, and a GUID, are ids.
    for tenant in [
        "contoso.onmicrosoft.com",
        "72f988bf-86f1-41af-91ab-2d7cd011db47",
    ] {
        let (code, problems) = check(tenant, "11111111-2222-3333-4444-555555555555", Some("s"));
        assert_eq!((code, problems), (Some(0), vec![]), "{tenant}");
    }
}
