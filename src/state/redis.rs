//! The shared store (`--state redis://...`): every step is one Lua script (EVALSHA), atomic
//! on the server and timed on its clock, so replicas share one truth: a request costs one
//! round trip before it is sent (`take`); its `settle` after the answer went out rides with
//! the next request's take in one pipeline (or goes alone after 2 ms). Each call has a
//! timeout; a failed or slow call is a [`StoreError`] (the gateway refuses, fail closed).
//! The connection is rebuilt after failures, so the gateway recovers by itself once Redis
//! is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, ErrorKind, RedisError, Script, ScriptInvocation, Value};
use arc_swap::ArcSwap;
use tokio::sync::oneshot;

use super::config::{RedisSettings, StateSetupError};
use super::records::{Created, NewRecord, Swap, Swapped, Versioned};
use super::redis_claims::{MAX_CLAIM_BYTES, done, held, running};
use super::scripts;
use super::store::{Held, Store, StoreFuture};
use super::{ClaimEnd, Settle, StoreError, StoreErrorKind, Take, Taken};

pub(super) struct Scripts {
    pub(super) take: Script,
    pub(super) settle: Script,
    pub(super) record_create: Script,
    pub(super) record_swap: Script,
    pub(super) record_get: Script,
    pub(super) record_list: Script,
    pub(super) record_claimed: Script,
}

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    take: Script::new(&scripts::take()),
    settle: Script::new(scripts::SETTLE),
    record_create: Script::new(scripts::RECORD_CREATE),
    record_swap: Script::new(scripts::RECORD_SWAP),
    record_get: Script::new(scripts::RECORD_GET),
    record_list: Script::new(scripts::RECORD_LIST),
    record_claimed: Script::new(scripts::RECORD_CLAIMED),
});

/// The shortest time between two rebuilds of the connection.
const REBUILD_EVERY: Duration = Duration::from_secs(1);
/// How often a store that failed is probed until it answers again.
const HEAL_EVERY: Duration = Duration::from_millis(250);
/// How long a settle nobody waits for waits for a take to ride with, before it goes alone.
const SETTLE_LINGER: Duration = Duration::from_millis(2);

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
    /// Settles nobody waits for (see [`Store::settle_soon`]), sent with the next take.
    soon: Mutex<Vec<Soon>>,
}

/// A settle waiting for a take to ride with: its command, and who learns how it went.
struct Soon {
    command: ::redis::Cmd,
    landed: oneshot::Sender<Result<(), StoreError>>,
}

impl Store for RedisStore {
    fn describe(&self) -> String {
        self.0.shown.clone()
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.probe())
    }

    fn take<'a>(&'a self, take: &'a Take<'a>) -> StoreFuture<'a, Taken> {
        Box::pin(self.take_all(take))
    }

    fn peek<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Held>> {
        Box::pin(self.read_claim(key))
    }

    fn settle<'a>(&'a self, settle: &'a Settle<'a>) -> StoreFuture<'a, ()> {
        Box::pin(self.settle_all(settle))
    }

    fn settle_soon<'a>(&'a self, settle: &'a Settle<'a>) -> StoreFuture<'a, ()> {
        Box::pin(self.settle_later(settle))
    }

    fn record_get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        Box::pin(self.get_record(key))
    }

    fn record_claimed<'a>(&'a self, claim: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(self.claim_holder(claim))
    }

    fn record_create<'a>(&'a self, new: &'a NewRecord<'a>) -> StoreFuture<'a, Created> {
        Box::pin(self.create_record(new))
    }

    fn record_swap<'a>(&'a self, swap: &'a Swap<'a>) -> StoreFuture<'a, Swapped> {
        Box::pin(self.swap_record(swap))
    }

    fn record_list<'a>(
        &'a self,
        index: &'a str,
        max: usize,
    ) -> StoreFuture<'a, Vec<(String, Versioned)>> {
        Box::pin(self.list_records(index, max))
    }
}

impl RedisStore {
    /// A store for `settings`; nothing is contacted until the first call.
    pub fn new(settings: &RedisSettings) -> Result<Self, StateSetupError> {
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
            rebuilt: Mutex::new(crate::clock::Instant::now()),
            healing: AtomicBool::new(false),
            timeout: settings.timeout,
            shown: settings.shown().to_owned(),
            soon: Mutex::new(Vec::new()),
        })))
    }

    /// One call on the current connection, within the timeout.
    pub(super) async fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
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
                if store.probe().await.is_ok() {
                    store.0.healing.store(false, Ordering::Release);
                    tracing::info!(store = %store.0.shown, "the state store answers again");
                    return;
                }
            }
        });
    }

    pub(super) async fn script<T: ::redis::FromRedisValue>(
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
        *last = crate::clock::Instant::now();
        match ConnectionManager::new_lazy_with_config(self.0.client.clone(), self.0.config.clone())
        {
            Ok(m) => self.0.manager.store(Arc::new(m)),
            Err(e) => tracing::warn!(error = %e, "could not renew the state store connection"),
        }
    }

    /// Whether Redis answers.
    async fn probe(&self) -> Result<(), StoreError> {
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

    /// Everything `t` asks for, in one script.
    async fn take_all(&self, t: &Take<'_>) -> Result<Taken, StoreError> {
        let waiting = self.waiting_settles();
        if waiting.is_empty() {
            return self.take_alone(t).await;
        }
        let (keys, args) = scripts::take_args(t);
        // Settles waiting for a take ride with it: one pipeline, the settles first (each
        // still its own atomic script), then the take; one write, one round trip.
        let mut pipe = ::redis::pipe();
        pipe.ignore_errors();
        let mut told = Vec::with_capacity(waiting.len());
        for soon in waiting {
            pipe.add_command(soon.command);
            told.push(soon.landed);
        }
        let mut take = ::redis::cmd("EVALSHA");
        take.arg(SCRIPTS.take.get_hash())
            .arg(keys.len())
            .arg(keys)
            .arg(args);
        pipe.add_command(take);
        let sent = self
            .call(|mut conn| async move { pipe.query_async::<Vec<Value>>(&mut conn).await })
            .await;
        let mut replies = match sent {
            Ok(replies) if replies.len() == told.len() + 1 => replies,
            Ok(replies) => {
                return Err(StoreError::new(
                    StoreErrorKind::Response,
                    format!("{} answers to {} commands", replies.len(), told.len() + 1),
                ));
            }
            Err(e) => {
                for landed in told {
                    let _ = landed.send(Err(e.clone()));
                }
                return Err(e);
            }
        };
        let taken = replies.pop();
        for (landed, reply) in told.into_iter().zip(replies) {
            let _ = landed.send(match reply {
                Value::ServerError(e) => {
                    Err(StoreError::new(StoreErrorKind::Response, e.to_string()))
                }
                _ => Ok(()),
            });
        }
        match taken {
            Some(Value::Array(reply)) => scripts::parse_take(reply),
            // The scripts are not loaded (a restarted Redis): the take did not run; once more
            // alone, loading them.
            Some(Value::ServerError(e)) if e.code() == "NOSCRIPT" => self.take_alone(t).await,
            other => Err(StoreError::new(
                StoreErrorKind::Response,
                format!("unexpected answer to the take: {other:?}"),
            )),
        }
    }

    /// [`Self::take_all`] with no settle to carry: the script alone (loaded if need be).
    async fn take_alone(&self, t: &Take<'_>) -> Result<Taken, StoreError> {
        let mut inv = SCRIPTS.take.prepare_invoke();
        let (keys, args) = scripts::take_args(t);
        for key in keys {
            inv.key(key);
        }
        for arg in args {
            inv.arg(arg);
        }
        scripts::parse_take(self.script(inv).await?)
    }

    /// How a claim ends and what a request gives back, in one script.
    async fn settle_all(&self, s: &Settle<'_>) -> Result<(), StoreError> {
        let mut inv = SCRIPTS.settle.prepare_invoke();
        let (keys, args) = settle_args(s);
        for key in keys {
            inv.key(key);
        }
        for arg in args {
            inv.arg(arg);
        }
        let _: i64 = self.script(inv).await?;
        Ok(())
    }

    /// [`Self::settle_all`] with the next take (see [`Store::settle_soon`]), or alone once
    /// [`SETTLE_LINGER`] has passed without one.
    async fn settle_later(&self, s: &Settle<'_>) -> Result<(), StoreError> {
        let (keys, args) = settle_args(s);
        let mut command = ::redis::cmd("EVALSHA");
        command
            .arg(SCRIPTS.settle.get_hash())
            .arg(keys.len())
            .arg(keys)
            .arg(args);
        let (landed, mut told) = oneshot::channel();
        self.lock_soon().push(Soon { command, landed });
        tokio::select! {
            told = &mut told => return told.unwrap_or_else(|_| Err(dropped())),
            () = tokio::time::sleep(SETTLE_LINGER) => {}
        }
        // No take came: send every settle still waiting (this one, unless a take has
        // just carried it).
        let waiting = self.waiting_settles();
        self.send_settles(waiting).await;
        told.await.unwrap_or_else(|_| Err(dropped()))
    }

    fn lock_soon(&self) -> std::sync::MutexGuard<'_, Vec<Soon>> {
        self.0.soon.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The settles waiting for a take; the caller sends them.
    fn waiting_settles(&self) -> Vec<Soon> {
        std::mem::take(&mut *self.lock_soon())
    }

    /// Sends `waiting` in one pipeline (each still one atomic script) and tells each how it
    /// went. A script not loaded (a restarted Redis) fails them: their tickets retry alone.
    async fn send_settles(&self, waiting: Vec<Soon>) {
        if waiting.is_empty() {
            return;
        }
        let mut pipe = ::redis::pipe();
        let mut told = Vec::with_capacity(waiting.len());
        for soon in waiting {
            pipe.add_command(soon.command);
            told.push(soon.landed);
        }
        let result = self
            .call(|mut conn| async move { pipe.query_async::<Vec<Value>>(&mut conn).await })
            .await
            .map(|_| ());
        for landed in told {
            let _ = landed.send(result.clone());
        }
    }
}

/// A settle whose sender went away before saying how it went.
fn dropped() -> StoreError {
    StoreError::new(
        StoreErrorKind::Connection,
        "the state store connection went away before the settle was sent",
    )
}

/// The settle script's keys and arguments for `s` (see `scripts/settle.lua`).
fn settle_args(s: &Settle<'_>) -> (Vec<String>, Vec<Vec<u8>>) {
    let budgets = s.refund.as_ref().map_or(0, |r| r.budgets.len());
    let mut keys = Vec::with_capacity(2 + budgets);
    let mut args: Vec<Vec<u8>> = Vec::with_capacity(6);
    let end: &[u8] = match &s.claim {
        None => b"none",
        Some((_, ClaimEnd::Finish { .. })) => b"finish",
        Some((_, ClaimEnd::Release)) => b"release",
    };
    args.push(end.to_vec());
    args.push(if s.refund.is_some() { b"1" } else { b"0" }.to_vec());
    if let Some((id, end)) = &s.claim {
        keys.push(id.key.to_owned());
        args.push(running(*id).into_bytes());
        if let ClaimEnd::Finish { answer, remaining } = end {
            args.push(done(*id, answer));
            args.push((remaining.as_millis() as u64).to_string().into_bytes());
        }
    }
    if let Some(r) = &s.refund {
        keys.push(r.pacing_key.to_owned());
        keys.extend(r.budgets.iter().map(|b| b.key.clone()));
        args.push(r.devices.to_string().into_bytes());
        args.push(r.pacing_member.as_bytes().to_vec());
    }
    (keys, args)
}

impl RedisStore {
    /// What `key` holds now: at most one byte past the bound is read (a longer value is
    /// refused), and a missing key reads as empty.
    async fn read_claim(&self, key: &str) -> Result<Option<Held>, StoreError> {
        let get = |mut conn: ConnectionManager| {
            let key = key.to_owned();
            async move {
                ::redis::cmd("GETRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(MAX_CLAIM_BYTES)
                    .query_async::<Vec<u8>>(&mut conn)
                    .await
            }
        };
        let value = self.call(get).await?;
        match value.is_empty() {
            true => Ok(None),
            false => held(&value).map(Some),
        }
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
