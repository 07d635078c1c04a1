//! The shared store (`--state redis://...`): every operation is one Lua script (EVALSHA),
//! atomic on the server and timed on its clock, so replicas share one truth. Each call has a
//! timeout; a failed or slow call is a [`StoreError`] (the gateway refuses, fail closed).
//! The connection is rebuilt after failures, so the gateway recovers by itself once Redis
//! is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, ErrorKind, RedisError, Script, ScriptInvocation, Value};
use arc_swap::ArcSwap;

use super::algo::{gcra_params, micros};
use super::config::{RedisSettings, StateSetupError};
use super::{
    Admission, Admit, Claim, ClaimSettings, Limiter, Refund, StoreError, StoreErrorKind, Ticket,
    TicketInner, metrics,
};
use crate::idempotency::StoredResponse;
use crate::policy::hex;

struct Scripts {
    claim: Script,
    finish: Script,
    release: Script,
    gcra: Script,
    admit: Script,
    refund: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    claim: Script::new(include_str!("scripts/claim.lua")),
    finish: Script::new(include_str!("scripts/finish.lua")),
    release: Script::new(include_str!("scripts/release.lua")),
    gcra: Script::new(include_str!("scripts/gcra.lua")),
    admit: Script::new(include_str!("scripts/admit.lua")),
    refund: Script::new(include_str!("scripts/refund.lua")),
});

/// The shortest time between two rebuilds of the connection.
const REBUILD_EVERY: Duration = Duration::from_secs(1);
/// How often a store that failed is probed until it answers again.
const HEAL_EVERY: Duration = Duration::from_millis(250);
/// How long a claim's answer or release keeps being retried in the background.
const SETTLE_RETRY_FOR: Duration = Duration::from_secs(60);
/// How often a duplicate looks again whether the first request has finished.
const POLL_MIN: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(200);

/// A handle on the shared store (cheap to clone).
#[derive(Clone)]
pub struct RedisStore(Arc<Inner>);

struct Inner {
    client: Client,
    config: ConnectionManagerConfig,
    manager: ArcSwap<ConnectionManager>,
    rebuilt: Mutex<tokio::time::Instant>,
    /// Whether a probe is running to bring the connection back.
    healing: AtomicBool,
    timeout: Duration,
    shown: String,
    claims: ClaimSettings,
}

impl RedisStore {
    /// A store for `settings`; nothing is contacted until the first call.
    pub fn new(settings: &RedisSettings, claims: ClaimSettings) -> Result<Self, StateSetupError> {
        let setup = |e: RedisError| StateSetupError::Setting(format!("{:?}", e.kind()));
        // redis-rs builds its rustls config from the process default provider: make it
        // ring, the provider of the whole tree (a no-op if one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut info = ::redis::IntoConnectionInfo::into_connection_info(settings.url.expose())
            .map_err(setup)?;
        if let Some(password) = &settings.password {
            let with = info
                .redis_settings()
                .clone()
                .set_password(password.expose());
            info = info.set_redis_settings(with);
        }
        let client = match &settings.ca_pem {
            Some(pem) => Client::build_with_tls(
                info,
                ::redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => Client::open(info),
        }
        .map_err(setup)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(setup)?;
        Ok(RedisStore(Arc::new(Inner {
            client,
            config,
            manager: ArcSwap::from_pointee(manager),
            rebuilt: Mutex::new(tokio::time::Instant::now()),
            healing: AtomicBool::new(false),
            timeout: settings.timeout,
            shown: settings.shown().to_owned(),
            claims,
        })))
    }

    /// `redis[s]://host:port/db`.
    pub fn describe(&self) -> &str {
        &self.0.shown
    }

    /// One call on the current connection, within the timeout.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let conn = ConnectionManager::clone(&self.0.manager.load());
        let error = match tokio::time::timeout(self.0.timeout, f(conn)).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => StoreError::new(classify(&e), e.to_string()),
            Err(_) => StoreError::new(
                StoreErrorKind::Timeout,
                format!("no answer within {} ms", self.0.timeout.as_millis()),
            ),
        };
        if error.kind() != StoreErrorKind::Response {
            self.rebuild();
            self.heal();
        }
        Err(error)
    }

    /// Probes the store in the background until it answers again, so the connection is
    /// back before the next request needs it (rather than that request finding it down).
    fn heal(&self) {
        if self.0.healing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.0.healing.store(false, Ordering::Release);
            return;
        };
        let weak: Weak<Inner> = Arc::downgrade(&self.0);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(HEAL_EVERY).await;
                // Only a live store is probed; a dropped one ends the probe.
                let Some(inner) = weak.upgrade() else { return };
                let store = RedisStore(inner);
                if store.ping().await.is_ok() {
                    store.0.healing.store(false, Ordering::Release);
                    tracing::info!(store = %store.0.shown, "the state store answers again");
                    return;
                }
            }
        });
    }

    async fn script<T: ::redis::FromRedisValue>(
        &self,
        invocation: ScriptInvocation<'static>,
    ) -> Result<T, StoreError> {
        self.call(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await
    }

    /// A fresh connection manager, at most once per [`REBUILD_EVERY`]: redis-rs reconnects
    /// by itself after I/O errors, but not after every failure (a refused AUTH, a server
    /// still loading); a new manager starts clean whatever the cause.
    fn rebuild(&self) {
        let mut last = self.0.rebuilt.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() < REBUILD_EVERY {
            return;
        }
        *last = tokio::time::Instant::now();
        match ConnectionManager::new_lazy_with_config(self.0.client.clone(), self.0.config.clone())
        {
            Ok(m) => self.0.manager.store(Arc::new(m)),
            Err(e) => tracing::warn!(error = %e, "could not renew the state store connection"),
        }
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let pong: String = self
            .call(|mut conn| async move { ::redis::cmd("PING").query_async(&mut conn).await })
            .await?;
        match pong.as_str() {
            "PONG" => Ok(()),
            other => Err(StoreError::new(
                StoreErrorKind::Response,
                format!("PING answered {other:?}"),
            )),
        }
    }

    /// GCRA on every limiter, all or nothing.
    pub async fn limit(
        &self,
        limiters: &[Limiter],
    ) -> Result<Option<(usize, Duration)>, StoreError> {
        let mut inv = SCRIPTS.gcra.prepare_invoke();
        for l in limiters {
            let (interval, tolerance) = gcra_params(l.rate);
            inv.key(&l.key).arg(interval).arg(tolerance);
        }
        let (refused, wait): (usize, u64) = self.script(inv).await?;
        Ok(refused
            .checked_sub(1)
            .map(|i| (i, Duration::from_micros(wait))))
    }

    /// Budgets and a write slot, together or not at all.
    pub async fn admit(&self, a: &Admission<'_>) -> Result<Admit, StoreError> {
        let mut inv = SCRIPTS.admit.prepare_invoke();
        inv.key(a.pacing_key)
            .arg(a.pacing_count)
            .arg(micros(a.pacing_window))
            .arg(a.pacing_member)
            .arg(a.devices);
        for b in a.budgets {
            inv.key(&b.key).arg(b.limit).arg(b.window_end);
        }
        let reply: Vec<Value> = self.script(inv).await?;
        parse_admit(&reply).ok_or_else(|| {
            StoreError::new(
                StoreErrorKind::Response,
                format!("unexpected answer {reply:?}"),
            )
        })
    }

    /// Gives back the write slot and `devices` on each budget.
    pub async fn refund(&self, r: &Refund<'_>) -> Result<(), StoreError> {
        let mut inv = SCRIPTS.refund.prepare_invoke();
        inv.key(r.pacing_key);
        for b in r.budgets {
            inv.key(&b.key);
        }
        inv.arg(r.devices).arg(r.pacing_member);
        let _: i64 = self.script(inv).await?;
        Ok(())
    }
}

fn classify(e: &RedisError) -> StoreErrorKind {
    if e.is_timeout() {
        StoreErrorKind::Timeout
    } else if e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
    {
        StoreErrorKind::Auth
    } else if e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
    {
        StoreErrorKind::Connection
    } else {
        StoreErrorKind::Response
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

fn parse_admit(reply: &[Value]) -> Option<Admit> {
    let (Value::BulkString(status), rest) = reply.split_first()? else {
        return None;
    };
    match (status.as_slice(), rest) {
        (b"ok", used) => Some(Admit::Admitted {
            used: used.iter().map(int).collect::<Option<_>>()?,
        }),
        (b"budget", [index, used]) => Some(Admit::OverBudget {
            index: usize::try_from(int(index)?).ok()?.checked_sub(1)?,
            used: int(used)?,
        }),
        (b"pace", [wait]) => Some(Admit::Paced(Duration::from_micros(int(wait)?))),
        _ => None,
    }
}

// Idempotency claims. A claim's value is 'R' + fingerprint (hex) + owner while the first
// request runs, then 'D' + fingerprint + the stored answer.

/// What a claim's value says.
enum Seen {
    Mismatch,
    Running,
    Done(Arc<StoredResponse>),
}

fn judge(value: &[u8], fingerprint: &str) -> Result<Seen, StoreError> {
    let bad = || {
        StoreError::new(
            StoreErrorKind::Response,
            "an idempotency claim in an unknown format",
        )
    };
    let (state, rest) = value.split_first().ok_or_else(bad)?;
    let fp = rest.get(..64).ok_or_else(bad)?;
    if fp != fingerprint.as_bytes() {
        return Ok(Seen::Mismatch);
    }
    match state {
        b'R' => Ok(Seen::Running),
        b'D' => StoredResponse::decode(&rest[64..])
            .map(|s| Seen::Done(Arc::new(s)))
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

impl RedisStore {
    /// Claims `key` for the request with `fingerprint`, or waits (up to the bound) for the
    /// request that holds it and answers with its result.
    pub async fn claim(&self, key: &str, fingerprint: [u8; 32]) -> Result<Claim, StoreError> {
        let fp = hex(&fingerprint);
        let deadline = tokio::time::Instant::now() + self.0.claims.wait;
        loop {
            let running = format!("R{fp}{}", uuid::Uuid::new_v4().simple());
            let mut inv = SCRIPTS.claim.prepare_invoke();
            inv.key(key)
                .arg(&running)
                .arg(self.0.claims.window.as_millis().max(1) as u64);
            let held = match metrics::timed("claim", self.script(inv)).await? {
                Value::Int(1) => {
                    return Ok(Claim::Run(Ticket(TicketInner::Redis(RedisTicket {
                        store: self.clone(),
                        key: key.to_owned(),
                        running,
                        fingerprint: fp,
                        claimed: tokio::time::Instant::now(),
                        done: false,
                    }))));
                }
                Value::BulkString(v) => v,
                other => {
                    return Err(StoreError::new(
                        StoreErrorKind::Response,
                        format!("unexpected claim answer {other:?}"),
                    ));
                }
            };
            if let Some(claim) = self.wait_for_first(key, &fp, held, deadline).await? {
                return Ok(claim);
            }
            // The first let its key go (its action did not run): claim it again.
        }
    }

    /// Waits for the request holding `key` (whose value is `held`) to finish, looking again
    /// every 10 ms, doubling to 200 ms, until `deadline`. `None` when the key was let go.
    async fn wait_for_first(
        &self,
        key: &str,
        fp: &str,
        held: Vec<u8>,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Claim>, StoreError> {
        let mut poll = POLL_MIN;
        let mut seen = Some(held);
        while let Some(value) = seen {
            match judge(&value, fp)? {
                Seen::Mismatch => return Ok(Some(Claim::Mismatch)),
                Seen::Done(stored) => return Ok(Some(Claim::Replay(stored))),
                Seen::Running => {}
            }
            if tokio::time::Instant::now() + poll > deadline {
                return Ok(Some(Claim::InFlight));
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(POLL_MAX);
            let get = |mut conn: ConnectionManager| {
                let key = key.to_owned();
                async move {
                    ::redis::cmd("GET")
                        .arg(key)
                        .query_async::<Option<Vec<u8>>>(&mut conn)
                        .await
                }
            };
            seen = metrics::timed("poll", self.call(get)).await?;
        }
        Ok(None)
    }

    async fn settle_once(
        &self,
        invocation: ScriptInvocation<'static>,
        op: &'static str,
    ) -> Result<i64, StoreError> {
        metrics::timed(op, self.script(invocation)).await
    }
}

/// The right to run a request whose key this replica claimed in Redis.
pub struct RedisTicket {
    store: RedisStore,
    key: String,
    running: String,
    fingerprint: String,
    claimed: tokio::time::Instant,
    done: bool,
}

impl RedisTicket {
    /// Stores the answer; if Redis cannot take it now, keeps trying in the background
    /// (duplicates meanwhile wait or get 409, and are never run again).
    pub async fn finish(mut self, stored: StoredResponse) {
        self.done = true;
        let mut value = format!("D{}", self.fingerprint).into_bytes();
        value.extend_from_slice(&stored.encode());
        let (store, key, running, claimed) = (
            self.store.clone(),
            self.key.clone(),
            self.running.clone(),
            self.claimed,
        );
        let window = store.0.claims.window;
        let attempt = move || {
            let left = window.saturating_sub(claimed.elapsed()).as_millis() as u64;
            let mut inv = SCRIPTS.finish.prepare_invoke();
            inv.key(&key).arg(&running).arg(&value).arg(left);
            inv
        };
        if let Err(e) = store.settle_once(attempt(), "finish").await {
            tracing::warn!(error = %e, "could not store an idempotent answer in the state store; retrying in the background");
            spawn_retries(store, "finish", attempt);
        }
    }
}

impl Drop for RedisTicket {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let (key, running) = (self.key.clone(), self.running.clone());
        spawn_retries(self.store.clone(), "release", move || {
            let mut inv = SCRIPTS.release.prepare_invoke();
            inv.key(&key).arg(&running);
            inv
        });
    }
}

/// Runs `make()` in the background until Redis takes it, for up to [`SETTLE_RETRY_FOR`].
fn spawn_retries(
    store: RedisStore,
    op: &'static str,
    make: impl Fn() -> ScriptInvocation<'static> + Send + 'static,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let give_up = tokio::time::Instant::now() + SETTLE_RETRY_FOR;
        let mut pause = Duration::from_millis(100);
        loop {
            match store.settle_once(make(), op).await {
                Ok(_) => return,
                Err(e) if tokio::time::Instant::now() + pause > give_up => {
                    tracing::error!(error = %e, op, "gave up on an idempotency claim in the state store; duplicates of its key get 409 until the window ends");
                    return;
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_answers_are_read_strictly() {
        let s = |t: &str| Value::BulkString(t.as_bytes().to_vec());
        assert_eq!(
            parse_admit(&[s("ok"), Value::Int(3), Value::Int(7)]),
            Some(Admit::Admitted { used: vec![3, 7] })
        );
        assert_eq!(
            parse_admit(&[s("budget"), Value::Int(2), Value::Int(20)]),
            Some(Admit::OverBudget { index: 1, used: 20 })
        );
        assert_eq!(
            parse_admit(&[s("pace"), Value::Int(1_500_000)]),
            Some(Admit::Paced(Duration::from_millis(1500)))
        );
        assert_eq!(
            parse_admit(&[s("budget"), Value::Int(0), Value::Int(1)]),
            None
        );
        assert_eq!(parse_admit(&[s("pace")]), None);
        assert_eq!(parse_admit(&[]), None);
    }

    #[test]
    fn claims_are_judged_by_fingerprint_then_state() {
        let fp = "a".repeat(64);
        let running = format!("R{fp}owner").into_bytes();
        assert!(matches!(judge(&running, &fp), Ok(Seen::Running)));
        assert!(matches!(
            judge(&running, &"b".repeat(64)),
            Ok(Seen::Mismatch)
        ));
        assert!(judge(b"R", &fp).is_err());
        assert!(judge(format!("D{fp}garbage").as_bytes(), &fp).is_err());
        assert!(judge(format!("X{fp}").as_bytes(), &fp).is_err());
    }
}
