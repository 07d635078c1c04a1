//! What `serve --emulator` adds to `graphgate serve`: the emulator started in-process, the
//! demo callers' files and the second (TLS) listener they need, the banner, the token
//! renewal, and `--print-policy`. Builds without the `emulator` feature get the stubs that
//! refuse `--emulator`.

use std::process::ExitCode;
#[cfg(feature = "emulator")]
use std::sync::Arc;

use graphgate::app::{App, Listeners, Problems, ServeConfig};
#[cfg(feature = "emulator")]
use graphgate::app::{AuditTarget, PolicySource, TlsSource};
use tokio::sync::watch;

use super::Fallible;
use super::args::ServeArgs;

/// What `--emulator` contributes: the emulator's address, CA and demo credential.
#[cfg(feature = "emulator")]
pub(super) type Emulated = super::demo::RunningEmulator;
#[cfg(not(feature = "emulator"))]
pub(super) type Emulated = std::convert::Infallible;

/// Starts the in-process emulator when `--emulator` asks for it (until `stop`).
#[cfg(feature = "emulator")]
pub(super) async fn emulated(
    args: &ServeArgs,
    mut stop: watch::Receiver<bool>,
    problems: &mut Problems,
) -> Option<Emulated> {
    if !args.emulator {
        return None;
    }
    let mut config = graphgate_emulator::EmulatorConfig {
        token_lifetime: std::time::Duration::from_secs(args.emulator_token_lifetime_secs),
        ..Default::default()
    };
    if args.bounds.maa_handling {
        // The demo app may read Intune's approval requests, as MAA handling needs.
        for app in &mut config.apps {
            app.roles
                .push(graphgate::approval::maa::READ_PERMISSIONS[0].to_owned());
        }
    }
    if args.audit.reconcile_outcomes {
        // The demo app may read devices, as reconciliation needs.
        for app in &mut config.apps {
            app.roles
                .push(graphgate::audit::reconcile::READ_PERMISSION.to_owned());
        }
    }
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    problems.take(super::demo::start_emulator(config, stopped).await)
}

#[cfg(not(feature = "emulator"))]
pub(super) async fn emulated(
    args: &ServeArgs,
    _stop: watch::Receiver<bool>,
    problems: &mut Problems,
) -> Option<Emulated> {
    if args.emulator {
        problems.push("--emulator: this build has no emulator (built without the `emulator` feature, as production builds are)");
    }
    None
}

/// `--print-policy`: the demo policy, as `--emulator` writes it.
#[cfg(feature = "emulator")]
pub(super) fn print_demo_policy() -> Fallible<ExitCode> {
    Ok(super::print_out(&graphgate_emulator::demo::policy_yaml())?)
}

#[cfg(not(feature = "emulator"))]
pub(super) fn print_demo_policy() -> Fallible<ExitCode> {
    Err("--print-policy: this build has no emulator, so no demo policy (built without the `emulator` feature)".into())
}

/// What `--emulator` writes for its demo callers (beside the audit log): certificates, the
/// service account's token, and the demo policy unless `--policy` names one, which the
/// gateway then reads from there (and follows). A second callers' listener serves TLS with
/// the demo CA for the mTLS caller.
#[cfg(feature = "emulator")]
pub(super) fn demo_files(
    args: &ServeArgs,
    emulated: Option<&Emulated>,
    config: &mut ServeConfig,
) -> Fallible<Option<super::demo::files::DemoFiles>> {
    let Some(emu) = emulated else {
        return Ok(None);
    };
    let log = match &config.audit {
        AuditTarget::Log(settings) => Some(settings.log.clone()),
        _ => None,
    };
    let dir = super::demo::files::demo_dir(log.as_deref());
    let yaml = args
        .policy
        .is_none()
        .then(graphgate_emulator::demo::policy_yaml);
    let files = super::demo::files::write(&dir, yaml.as_deref(), &emu.emulator)?;
    if args.policy.is_none() {
        config.policy = PolicySource::File(files.policy.clone());
    }
    config.extra_tls = Some(TlsSource::Files {
        cert: files.server_cert.clone(),
        key: files.server_key.clone(),
        client_ca: Some(files.ca.clone()),
        client_crl: None,
    });
    Ok(Some(files))
}

#[cfg(not(feature = "emulator"))]
pub(super) fn demo_files(
    _: &ServeArgs,
    _: Option<&Emulated>,
    _: &mut ServeConfig,
) -> Fallible<Option<std::convert::Infallible>> {
    Ok(None)
}

/// The banner: where everything is, and a ready-made request of each demo caller kind.
#[cfg(feature = "emulator")]
pub(super) fn print_demo(
    args: &ServeArgs,
    app: &App,
    listeners: &Listeners,
    emu: &Emulated,
    files: &super::demo::files::DemoFiles,
    policy_path: Option<&std::path::Path>,
) -> Fallible<()> {
    let policy = &app.gateway().installed().policy;
    let tls = match &listeners.extra_tls {
        Some(l) => l.local_addr()?,
        None => return Ok(()),
    };
    let at = super::demo::Addresses {
        gateway: listeners.main.local_addr()?,
        tls,
        emulator: emu.addr,
    };
    let path = policy_path.unwrap_or(&files.policy);
    eprintln!(
        "{}",
        super::demo::banner(
            policy,
            path,
            args.policy.is_none(),
            &at,
            files,
            args.cloud,
            &emu.credential
        )
    );
    Ok(())
}

#[cfg(not(feature = "emulator"))]
pub(super) fn print_demo(
    _: &ServeArgs,
    _: &App,
    _: &Listeners,
    _: &Emulated,
    _: &std::convert::Infallible,
    _: Option<&std::path::Path>,
) -> Fallible<()> {
    Ok(())
}

/// Renews the demo service account's token file until the gateway stops.
#[cfg(feature = "emulator")]
pub(super) fn start_token_renewal(
    emu: &Emulated,
    files: &super::demo::files::DemoFiles,
    mut stop: watch::Receiver<bool>,
) {
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::spawn(super::demo::files::renew_token(
        Arc::clone(&emu.emulator),
        files.token.clone(),
        stopped,
    ));
}

#[cfg(not(feature = "emulator"))]
pub(super) fn start_token_renewal(
    _: &Emulated,
    _: &std::convert::Infallible,
    _: watch::Receiver<bool>,
) {
}
