//! The `--state` setting, parsed and checked at start-up: `memory` (one process; budgets in a
//! local file) or a `redis://` / `rediss://` URL (Redis 6+ or Valkey), its password possibly
//! from a file, its CA possibly private. Every mistake stops start-up with a message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ::redis::IntoConnectionInfo;

use super::budget_file::BudgetFileError;
use crate::secret::Secret;

/// Where the state lives.
#[derive(Debug, Clone)]
pub enum StateConfig {
    /// In this process; budget counts in `budget_file` and pending approvals in
    /// `approvals_file` (if any) across restarts.
    Memory {
        /// The file keeping budget counts.
        budget_file: Option<PathBuf>,
        /// The file keeping approvals (the store's versioned records).
        approvals_file: Option<PathBuf>,
    },
    /// In Redis or Valkey, shared by every replica pointed at it.
    Redis(RedisSettings),
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig::Memory {
            budget_file: None,
            approvals_file: None,
        }
    }
}

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// The URL as given (it may hold a password, so it is a secret).
    pub(super) url: Secret,
    /// The password, when read from a file.
    pub(super) password: Option<Secret>,
    /// PEM CA certificates for `rediss://` (else the system's roots).
    pub(super) ca_pem: Option<Vec<u8>>,
    /// Longest wait for any one answer (or connection) before failing closed.
    pub timeout: Duration,
    /// `redis[s]://host:port/db`, without credentials.
    pub(super) shown: String,
    /// The deployment's name in the store's keys (`--state-namespace`); `None`: derived
    /// from the app registration (see [`super::namespace::default_deployment`]).
    pub(super) deployment: Option<String>,
}

impl RedisSettings {
    /// `redis[s]://host:port/db`, without credentials.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// What `--state` comes with.
#[derive(Debug, Clone, Default)]
pub struct StateOptions {
    /// `GRAPHGATE_STATE_PASSWORD_FILE`: the Redis password, from a file.
    pub password_file: Option<PathBuf>,
    /// `GRAPHGATE_STATE_CA_FILE`: PEM CAs for `rediss://`.
    pub ca_file: Option<PathBuf>,
    /// `GRAPHGATE_STATE_TIMEOUT_MS`.
    pub timeout: Duration,
    /// `GRAPHGATE_BUDGET_FILE` (memory only).
    pub budget_file: Option<PathBuf>,
    /// `GRAPHGATE_APPROVALS_FILE` (memory only).
    pub approvals_file: Option<PathBuf>,
    /// `GRAPHGATE_STATE_NAMESPACE` (or the default `serve` derives): the deployment's name
    /// in a shared store's keys.
    pub namespace: Option<String>,
}

/// The state store cannot be set up; start-up stops.
#[derive(Debug, thiserror::Error)]
pub enum StateSetupError {
    /// `--state` is neither `memory` nor a usable Redis URL.
    #[error("--state / GRAPHGATE_STATE: {0}")]
    Setting(String),
    /// A file it names cannot be read.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The memory store's budget file is unreadable or damaged.
    #[error(transparent)]
    BudgetFile(#[from] BudgetFileError),
    /// The memory store's approvals file is unreadable or damaged.
    #[error(transparent)]
    RecordFile(#[from] super::RecordFileError),
}

impl StateConfig {
    /// The deployment's name in a shared store's keys, when one was given (`None` for the
    /// memory store, whose keys no other deployment sees).
    pub fn deployment(&self) -> Option<&str> {
        match self {
            StateConfig::Redis(r) => r.deployment.as_deref(),
            StateConfig::Memory { .. } => None,
        }
    }

    /// Parses `--state` with its companions.
    pub fn parse(value: &str, options: StateOptions) -> Result<StateConfig, StateSetupError> {
        let bad = |m: &str| Err(StateSetupError::Setting(m.to_owned()));
        if value == "memory" {
            if options.password_file.is_some() || options.ca_file.is_some() {
                return bad(
                    "GRAPHGATE_STATE_PASSWORD_FILE and GRAPHGATE_STATE_CA_FILE are for a redis:// state; the state is 'memory'",
                );
            }
            return Ok(StateConfig::Memory {
                budget_file: options.budget_file,
                approvals_file: options.approvals_file,
            });
        }
        let tls = if value.starts_with("rediss://") {
            true
        } else if value.starts_with("redis://") {
            false
        } else {
            return bad("use 'memory' or a redis:// or rediss:// URL (Redis 6+ or Valkey)");
        };
        if options.budget_file.is_some() {
            return bad(
                "GRAPHGATE_BUDGET_FILE is for --state memory; with Redis, budgets live in Redis",
            );
        }
        if options.approvals_file.is_some() {
            return bad(
                "GRAPHGATE_APPROVALS_FILE is for --state memory; with Redis, approvals live in Redis",
            );
        }
        if value.contains('#') {
            return bad(
                "URL fragments (such as #insecure) are not accepted: a rediss:// server's certificate is always verified",
            );
        }
        if options.ca_file.is_some() && !tls {
            return bad("GRAPHGATE_STATE_CA_FILE needs a rediss:// (TLS) URL");
        }
        let info = value.into_connection_info().map_err(|e| {
            StateSetupError::Setting(format!("not a usable Redis URL ({})", e.kind_name()))
        })?;
        let settings = info.redis_settings();
        let password = options
            .password_file
            .as_deref()
            .map(read_password)
            .transpose()?;
        if password.is_some() && settings.password().is_some() {
            return bad(
                "the Redis password is given twice: in the URL and in GRAPHGATE_STATE_PASSWORD_FILE; keep one",
            );
        }
        let shown = format!(
            "{}://{}/{}",
            if tls { "rediss" } else { "redis" },
            info.addr(),
            settings.db()
        );
        let ca_pem = options.ca_file.as_deref().map(read_ca).transpose()?;
        if let Some(name) = &options.namespace
            && !super::namespace::valid_deployment(name)
        {
            return bad(
                "--state-namespace / GRAPHGATE_STATE_NAMESPACE must be 1 to 64 letters, digits, '.', '_' or '-'",
            );
        }
        Ok(StateConfig::Redis(RedisSettings {
            url: Secret::new(value),
            password,
            ca_pem,
            timeout: options.timeout,
            shown,
            deployment: options.namespace,
        }))
    }
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> StateSetupError {
    StateSetupError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The password file's first line (a trailing newline, as `echo` writes, is not part of it).
fn read_password(path: &Path) -> Result<Secret, StateSetupError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() || password.contains(['\r', '\n']) {
        return Err(file_error(path, "must hold the Redis password on one line"));
    }
    Ok(Secret::new(password))
}

fn read_ca(path: &Path) -> Result<Vec<u8>, StateSetupError> {
    crate::tls::certs_from_file(path).map_err(|e| file_error(path, e))?;
    std::fs::read(path).map_err(|e| file_error(path, e))
}

/// The kind of a Redis error, without its text (which could echo the URL).
trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for ::redis::RedisError {
    fn kind_name(&self) -> String {
        format!("{:?}", self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<StateConfig, StateSetupError> {
        StateConfig::parse(value, StateOptions::default())
    }

    fn redis(value: &str) -> RedisSettings {
        match parse(value).unwrap() {
            StateConfig::Redis(r) => r,
            StateConfig::Memory { .. } => panic!("{value} is Redis"),
        }
    }

    #[test]
    fn memory_or_a_redis_url_and_nothing_else() {
        assert!(matches!(
            parse("memory").unwrap(),
            StateConfig::Memory { .. }
        ));
        assert_eq!(
            redis("redis://:s3cret@cache.internal:6380/2").shown(),
            "redis://cache.internal:6380/2"
        );
        assert_eq!(
            redis("rediss://cache.internal").shown(),
            "rediss://cache.internal:6379/0"
        );
        let r = redis("redis://user:s3cret@cache.internal/0");
        assert!(!format!("{r:?}").contains("s3cret"), "{r:?}");
        for (value, says) in [
            ("Memory", "use 'memory' or a redis://"),
            ("http://cache", "use 'memory' or a redis://"),
            ("unix:///run/redis.sock", "use 'memory' or a redis://"),
            ("rediss://cache#insecure", "always verified"),
            ("redis://:pw@cache:notaport", "not a usable Redis URL"),
        ] {
            let err = parse(value).unwrap_err().to_string();
            assert!(err.contains(says), "{value}: {err}");
            assert!(!err.contains("pw@"), "{err}");
        }
    }

    #[test]
    fn companions_fit_the_mode() {
        let dir = std::env::temp_dir().join(format!("gg-state-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("pw");
        std::fs::write(&pw, "hunter2\n").unwrap();
        let with = |password_file: Option<PathBuf>, budget_file: Option<PathBuf>| StateOptions {
            password_file,
            budget_file,
            ..StateOptions::default()
        };
        let r = StateConfig::parse("redis://cache", with(Some(pw.clone()), None)).unwrap();
        let StateConfig::Redis(r) = r else { panic!() };
        assert_eq!(r.password.as_ref().map(Secret::expose), Some("hunter2"));
        let twice = StateConfig::parse("redis://:a@cache", with(Some(pw.clone()), None));
        assert!(twice.unwrap_err().to_string().contains("given twice"));
        let memory_pw = StateConfig::parse("memory", with(Some(pw), None));
        assert!(
            memory_pw
                .unwrap_err()
                .to_string()
                .contains("for a redis:// state")
        );
        let redis_file = StateConfig::parse("redis://cache", with(None, Some(dir.join("b"))));
        assert!(
            redis_file
                .unwrap_err()
                .to_string()
                .contains("for --state memory")
        );
        std::fs::write(dir.join("empty"), "\n").unwrap();
        let empty = StateConfig::parse("redis://cache", with(Some(dir.join("empty")), None));
        assert!(empty.unwrap_err().to_string().contains("on one line"));
        let ca = StateOptions {
            ca_file: Some(dir.join("ca.pem")),
            ..StateOptions::default()
        };
        let plain = StateConfig::parse("redis://cache", ca).unwrap_err();
        assert!(plain.to_string().contains("needs a rediss://"));
    }
}
