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
use super::records::{Created, NewRecord, Swap, Swapped, Versioned};
use super::scripts;
use super::store::{ClaimId, ClaimState, Held, Store, StoreFuture};
use super::{Admission, Admit, Limiter, Refund, StoreError, StoreErrorKind};
use crate::idempotency::StoredResponse;

pub(super) struct Scripts {
    pub(super) claim: Script,
    pub(super) finish: Script,
    pub(super) release: Script,
    pub(super) gcra: Script,
    pub(super) admit: Script,
    pub(super) refund: Script,
    pub(super) record_create: Script,
    pub(super) record_swap: Script,
    pub(super) record_get: Script,
    pub(super) record_list: Script,
    pub(super) record_claimed: Script,
}

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    claim: Script::new(scripts::CLAIM),
    finish: Script::new(scripts::FINISH),
    release: Script::new(scripts::RELEASE),
    gcra: Script::new(&scripts::gcra()),
    admit: Script::new(&scripts::admit()),
    refund: Script::new(scripts::REFUND),
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

    fn claim<'a>(&'a self, id: ClaimId<'a>, window: Duration) -> StoreFuture<'a, ClaimState> {
        Box::pin(self.take_claim(id, window))
    }

    fn peek<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Held>> {
        Box::pin(self.read_claim(key))
    }

    fn finish<'a>(
        &'a self,
        id: ClaimId<'a>,
        answer: &'a StoredResponse,
        remaining: Duration,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.finish_claim(id, answer, remaining))
    }

    fn release<'a>(&'a self, id: ClaimId<'a>) -> StoreFuture<'a, ()> {
        Box::pin(self.release_claim(id))
    }

    fn limit<'a>(
        &'a self,
        limiters: &'a [Limiter],
        cost: u32,
    ) -> StoreFuture<'a, Option<(usize, Duration)>> {
        Box::pin(self.charge(limiters, cost))
    }

    fn admit<'a>(&'a self, admission: &'a Admission<'a>) -> StoreFuture<'a, Admit> {
        Box::pin(self.take(admission))
    }

    fn refund<'a>(&'a self, refund: &'a Refund<'a>) -> StoreFuture<'a, ()> {
        Box::pin(self.give_back(refund))
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

    /// GCRA on every limiter, `cost` units each, all or nothing.
    async fn charge(
        &self,
        limiters: &[Limiter],
        cost: u32,
    ) -> Result<Option<(usize, Duration)>, StoreError> {
        let mut inv = SCRIPTS.gcra.prepare_invoke();
        for l in limiters {
            let (interval, tolerance) = gcra_params(l.rate);
            inv.key(&l.key).arg(interval).arg(tolerance);
        }
        inv.arg(cost.max(1));
        let (refused, wait): (usize, u64) = self.script(inv).await?;
        Ok(refused
            .checked_sub(1)
            .map(|i| (i, Duration::from_micros(wait))))
    }

    /// Budgets and a write slot, together or not at all.
    async fn take(&self, a: &Admission<'_>) -> Result<Admit, StoreError> {
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
    async fn give_back(&self, r: &Refund<'_>) -> Result<(), StoreError> {
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
}
