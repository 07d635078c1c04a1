//! The systemd unit as systemd runs it: for each cloud's environment file, the unit's
//! ExecStartPre (the audit HMAC key on first start) and ExecStart run with exactly that
//! environment and nothing inherited, against the emulator (`launch`), the test playing the
//! operator's install steps from docs/deploy.md. `systemd-analyze verify` checks the unit.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use graphgate::cloud::Cloud;
use graphgate_emulator::{RegisteredCertificate, TestCertificate};

use super::launch::{self, BIN, Pki, Root, Shipped, Tenant};
use super::{deploy, read, repo, tool_available};

/// The name callers use for a host-installed gateway in this test (its certificate's).
const HOST_NAME: &str = "graphgate.internal";
/// The PATH systemd gives services.
const SYSTEMD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn unit() -> String {
    read(&deploy().join("systemd/graphgate@.service"))
}

/// Every `key=` value of the unit's [Service] section, specifiers resolved for `instance`.
fn service(key: &str, instance: &str) -> Vec<String> {
    let text = unit();
    let section = text.split("[Service]").nth(1).unwrap();
    let section = section.split("\n[").next().unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| specifiers(v, instance))
        .collect()
}

/// systemd's `%i` (the instance) and `%%`; any other specifier is unexpected here.
fn specifiers(value: &str, instance: &str) -> String {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('i') => out.push_str(instance),
            Some('%') => out.push('%'),
            other => panic!("specifier %{other:?} in {value}: teach the test about it"),
        }
    }
    out
}

/// The cloud's environment file, as systemd reads it.
pub fn env_file(cloud: Cloud) -> Vec<(String, String)> {
    let path = deploy().join(format!("systemd/env/{cloud}.env"));
    read(&path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_owned(), v.trim().trim_matches('"').to_owned())
        })
        .collect()
}

/// A command line as systemd splits it: quotes group words, the `-+@!:` prefixes are
/// dropped, then `$$` is a dollar and `${VAR}` / `$VAR` are taken from `env`.
pub(super) fn command_line(line: &str, env: &[(String, String)]) -> Vec<String> {
    let line = line.trim_start_matches(['-', '+', '@', '!', ':']);
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let w = word.get_or_insert_with(String::new);
                for q in chars.by_ref().take_while(|q| *q != c) {
                    w.push(q);
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words.iter().map(|w| substitute(w, env)).collect()
}

fn substitute(word: &str, env: &[(String, String)]) -> String {
    let value = |name: &str| {
        let found = env.iter().find(|(k, _)| k == name);
        found.map(|(_, v)| v.clone()).unwrap_or_default()
    };
    let mut out = String::new();
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').unwrap();
            out.push_str(&value(&braced[..end]));
            rest = &braced[end + 1..];
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out.push_str(&value(&rest[..end]));
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn the_unit_is_sandboxed_and_verifies_for_every_cloud() {
    let text = unit();
    for line in [
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "User=graphgate",
        "EnvironmentFile=/etc/graphgate/%i.env",
        "Restart=on-failure",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}");
    }
    // systemd's SIGKILL comes after the gateway's own shutdown grace and flush (the audit
    // flush and the exporters' turn take up to a few seconds more).
    let grace: u64 = super::flags::serve_default("--shutdown-grace-secs")
        .unwrap()
        .parse()
        .unwrap();
    let stop = service("TimeoutStopSec", "x");
    let stop: u64 = stop[0].trim_end_matches('s').parse().unwrap();
    assert!(stop >= grace + 5, "TimeoutStopSec={stop}s, grace {grace}s");
    // Writable: the state directories only (the audit log and the key), nothing else.
    assert!(!text.contains("ReadWritePaths="));
    let state = service("StateDirectory", "x").join(" ");
    assert_eq!(state, "graphgate/audit graphgate/keys");
    if !tool_available("systemd-analyze", &["--version"]) {
        return;
    }
    let dir = crate::common::temp_dir("unit");
    let env_dir = deploy().join("systemd/env");
    let local = text.replace("/usr/local/bin/graphgate", BIN).replace(
        "/etc/graphgate/%i.env",
        &format!("{}/%i.env", env_dir.display()),
    );
    for cloud in Cloud::ALL {
        let path = dir.join(format!("graphgate@{cloud}.service"));
        std::fs::write(&path, &local).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify graphgate@{cloud}: {stderr}"
        );
    }
    assert_exposure_at_most(&dir.join("graphgate@us-gov.service"), 1.2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `systemd-analyze security` rates the unit's exposure at most `limit` (docs/deploy.md
/// quotes the rating). Offline rating needs systemd 250 or newer.
pub(super) fn assert_exposure_at_most(unit: &std::path::Path, limit: f64) {
    let version = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let major: u32 = version.split_whitespace().nth(1).unwrap().parse().unwrap();
    if major < 250 {
        let note = format!("SKIPPED: systemd {major} cannot rate a unit offline\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), note.as_bytes());
        return;
    }
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rating = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|l| l.split(": ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no rating in: {text}"));
    let rating: f64 = rating.parse().unwrap();
    assert!(rating <= limit, "exposure {rating} > {limit}: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_env_file_starts_a_ready_gateway_that_answers_an_allowed_mtls_request() {
    let pki = Pki::new();
    let credential = TestCertificate::generate("graphgate smoke app").unwrap();
    let mut runs = Vec::new();
    for cloud in Cloud::ALL {
        let root = Root::new(&format!("systemd-{cloud}"));
        let env: Vec<(String, String)> = env_file(cloud)
            .into_iter()
            .map(|(k, v)| (k, root.map(&v)))
            .chain([("PATH".to_owned(), SYSTEMD_PATH.to_owned())])
            .collect();
        let var = |name: &str| {
            let found = env.iter().find(|(k, _)| k == name);
            found
                .unwrap_or_else(|| panic!("{cloud}.env: {name} missing"))
                .1
                .clone()
        };
        install(cloud, &root, &env, &pki, &credential);
        first_start_creates_the_key(cloud, &env, &var("GRAPHGATE_AUDIT_HMAC_KEY_FILE"));
        let exec_start = service("ExecStart", cloud.name());
        assert_eq!(exec_start.len(), 1);
        let mut argv = command_line(&exec_start[0], &env);
        assert_eq!(
            argv[0], "/usr/local/bin/graphgate",
            "docs/deploy.md installs it there"
        );
        argv[0] = BIN.to_owned();
        let tenant = Tenant {
            tenant_id: var("AZURE_TENANT_ID"),
            client_id: var("AZURE_CLIENT_ID"),
        };
        let mut config = tenant.emulator_config();
        config.certificates.push(RegisteredCertificate {
            client_id: tenant.client_id.clone(),
            certificate_der: credential.cert_der.clone(),
        });
        let shipped = Shipped {
            name: format!("{cloud}.env"),
            argv,
            policy: var("GRAPHGATE_POLICY").into(),
            audit_log: var("GRAPHGATE_AUDIT_LOG").into(),
            env,
            cwd: root.dir.clone(),
            probes: vec!["/readyz".into(), "/healthz".into()],
            server_name: HOST_NAME.into(),
            token_caller: None,
        };
        runs.push((shipped, config, root));
    }
    launch::prove_all(runs, std::sync::Arc::new(pki)).await;
}

/// The operator's install steps (docs/deploy.md, "systemd"): the unit's state directories
/// and every file the environment file names.
fn install(
    cloud: Cloud,
    root: &Root,
    env: &[(String, String)],
    pki: &Pki,
    credential: &TestCertificate,
) {
    for dir in service("StateDirectory", cloud.name())
        .join(" ")
        .split_whitespace()
    {
        let path = root.path(&format!("/var/lib/{dir}"));
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let server = pki.server_ca.server_named(&[HOST_NAME]);
    for (name, value) in env {
        let content = match name.as_str() {
            "GRAPHGATE_TLS_CERT" => server.cert_pem.clone(),
            "GRAPHGATE_TLS_KEY" => server.key_pem.clone(),
            "GRAPHGATE_CLIENT_CA" => pki.client_ca.pem.clone(),
            "GRAPHGATE_POLICY" => read(&repo().join("policy.yaml")),
            "AZURE_CLIENT_CERTIFICATE_PATH" => credential.combined_pem(),
            _ => continue,
        };
        let path = std::path::Path::new(value);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640)).unwrap();
    }
}

/// Runs the unit's ExecStartPre lines twice: the first creates the HMAC key (64 hex
/// characters, mode 0400), the second leaves it as it is.
fn first_start_creates_the_key(cloud: Cloud, env: &[(String, String)], key: &str) {
    let run = || {
        for line in service("ExecStartPre", cloud.name()) {
            let argv = command_line(&line, env);
            let out = Command::new(&argv[0])
                .args(&argv[1..])
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "{cloud}: ExecStartPre {argv:?}: {stderr}"
            );
        }
        std::fs::read_to_string(key).unwrap_or_else(|e| panic!("{cloud}: {key}: {e}"))
    };
    let first = run();
    assert_eq!(first.len(), 64, "{first:?}");
    assert!(first.chars().all(|c| c.is_ascii_hexdigit()), "{first:?}");
    let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o400, "{cloud}: key mode {mode:o}");
    assert_eq!(run(), first, "{cloud}: the second start kept the key");
}

#[test]
fn the_install_steps_provide_every_file_the_env_files_name() {
    let readme = read(&repo().join("docs/deploy.md"));
    for cloud in Cloud::ALL {
        let state: Vec<String> = service("StateDirectory", cloud.name())
            .join(" ")
            .split_whitespace()
            .map(|d| format!("/var/lib/{d}/"))
            .collect();
        for (name, value) in env_file(cloud) {
            if !value.starts_with('/') || state.iter().any(|d| value.starts_with(d)) {
                continue;
            }
            assert!(
                readme.contains(&value),
                "{cloud}.env: {name}={value}: docs/deploy.md never installs it"
            );
        }
    }
}

/// The unit's `Documentation=` names graphgate's own documents, each installed by
/// docs/deploy.md's steps from a file in the repository, and its man page, which the steps
/// generate with `graphgate man --out-dir` into a directory `man` searches, and which `man`
/// renders without a warning.
#[test]
fn the_units_documentation_is_graphgates_and_the_install_steps_put_it_there() {
    let text = unit();
    let unit_section = text.split("[Unit]").nth(1).unwrap();
    let unit_section = unit_section.split("\n[").next().unwrap();
    let documented: Vec<&str> = unit_section
        .lines()
        .filter_map(|l| l.strip_prefix("Documentation="))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(documented.len() >= 3, "{documented:?}");
    // (installed path, source) of every `install` line writing under /usr/share/doc.
    let readme = read(&repo().join("docs/deploy.md"));
    let mut installed: Vec<(String, String)> = Vec::new();
    for line in readme.lines().map(str::trim) {
        let words: Vec<&str> = line.split('#').next().unwrap().split_whitespace().collect();
        if words.first() != Some(&"install") || !line.contains("/usr/share/doc/") {
            continue;
        }
        let args: Vec<&str> = words[1..]
            .iter()
            .copied()
            .filter(|w| !w.starts_with('-') && !w.starts_with("0"))
            .collect();
        if let Some(t) = words.iter().position(|w| *w == "-t") {
            let dir = words[t + 1];
            for source in args.iter().filter(|a| **a != dir) {
                let name = source.rsplit('/').next().unwrap();
                installed.push((format!("{dir}/{name}"), (*source).to_owned()));
            }
        } else {
            installed.push((args[1].to_owned(), args[0].to_owned()));
        }
    }
    let (pages, files): (Vec<&str>, Vec<&str>) =
        documented.into_iter().partition(|u| u.starts_with("man:"));
    assert_eq!(pages, ["man:graphgate(1)"]);
    let man_dir = readme
        .lines()
        .filter_map(|l| l.trim().strip_prefix("graphgate man --out-dir "))
        .map(|rest| rest.split_whitespace().next().unwrap())
        .next()
        .expect("docs/deploy.md installs the man pages with `graphgate man --out-dir DIR`");
    assert!(
        man_dir.ends_with("/share/man/man1"),
        "{man_dir}: not where man looks for section 1"
    );
    let dir = std::env::temp_dir().join(format!("graphgate-man-{}", std::process::id()));
    let out = std::process::Command::new(crate::common::process::BIN)
        .args(["man", "--out-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let page = dir.join("graphgate.1");
    assert!(read(&page).contains(".TH graphgate 1"), "not graphgate(1)");
    assert!(dir.join("graphgate-serve.1").is_file());
    let usable = crate::common::require_tool(
        "man",
        &["man", "--version"],
        "Debian's man-db (.ci/run installs it)",
    );
    if usable {
        let man = std::process::Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&page)
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let rendered = String::from_utf8_lossy(&man.stdout);
        assert!(man.status.success() && man.stderr.is_empty(), "{man:?}");
        assert!(rendered.contains("graphgate-serve(1)"), "{rendered}");
    }
    for uri in files {
        let path = uri
            .strip_prefix("file:")
            .unwrap_or_else(|| panic!("{uri}: not one of graphgate's installed documents"));
        let (_, source) = installed
            .iter()
            .find(|(to, _)| to == path)
            .unwrap_or_else(|| panic!("{path}: docs/deploy.md never installs it"));
        assert!(
            repo().join(source).is_file(),
            "{source} is not in the repository"
        );
    }
}
