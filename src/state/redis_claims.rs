//! Idempotency claims in Redis: one atomic script takes a key (or reports who holds it), a
//! duplicate polls for the first request's answer up to a bound, and the holder's ticket
//! stores the answer or lets the key go, retrying in the background if Redis is away.
//! A claim's value is 'R' + fingerprint (hex) + owner while the first request runs, then
//! 'D' + fingerprint + the stored answer.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{ScriptInvocation, Value};

use super::redis::{RedisStore, SCRIPTS};
use super::{Claim, StoreError, StoreErrorKind, Ticket, TicketInner, metrics};
use crate::idempotency::StoredResponse;
use crate::policy::hex;

/// How long a claim's answer or release keeps being retried in the background.
const SETTLE_RETRY_FOR: Duration = Duration::from_secs(60);
/// Longest claim value read: a kind byte, the fingerprint (hex), then the owner or the
/// stored answer. A longer one (no gateway writes one) is refused without being read whole:
/// the store is not trusted to bound what it sends.
const MAX_CLAIM_BYTES: usize = 1 + 64 + crate::idempotency::MAX_STORED_BYTES;

/// How often a duplicate looks again whether the first request has finished.
const POLL_MIN: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(200);

/// What a claim's value says.
enum Seen {
    Mismatch,
    Running,
    Done(Arc<StoredResponse>),
}

/// `value`, if no longer than any claim a gateway writes.
fn bounded(value: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    if value.len() > MAX_CLAIM_BYTES {
        return Err(StoreError::new(
            StoreErrorKind::Response,
            "an idempotency claim longer than any graphgate writes",
        ));
    }
    Ok(value)
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
    /// A duplicate stops waiting (answered [`Claim::InFlight`]) when `stop` turns true.
    pub async fn claim(
        &self,
        key: &str,
        fingerprint: [u8; 32],
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Claim, StoreError> {
        let fp = hex(&fingerprint);
        let deadline = crate::clock::Instant::now() + self.claims().wait;
        loop {
            let running = format!("R{fp}{}", uuid::Uuid::new_v4().simple());
            let mut inv = SCRIPTS.claim.prepare_invoke();
            inv.key(key)
                .arg(&running)
                .arg(self.claims().window.as_millis().max(1) as u64)
                .arg(MAX_CLAIM_BYTES);
            let held = match metrics::timed("claim", self.script(inv)).await? {
                Value::Int(1) => {
                    return Ok(Claim::Run(Ticket(TicketInner::Redis(RedisTicket {
                        store: self.clone(),
                        key: key.to_owned(),
                        running,
                        fingerprint: fp,
                        claimed: crate::clock::Instant::now(),
                        done: false,
                    }))));
                }
                Value::BulkString(v) => bounded(v)?,
                other => {
                    return Err(StoreError::new(
                        StoreErrorKind::Response,
                        format!("unexpected claim answer {other:?}"),
                    ));
                }
            };
            let waited = self.wait_for_first(key, &fp, held, deadline, &mut stop);
            if let Some(claim) = waited.await? {
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
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<Option<Claim>, StoreError> {
        let mut poll = POLL_MIN;
        let mut seen = Some(held);
        while let Some(value) = seen {
            match judge(&value, fp)? {
                Seen::Mismatch => return Ok(Some(Claim::Mismatch)),
                Seen::Done(stored) => return Ok(Some(Claim::Replay(stored))),
                Seen::Running => {}
            }
            if crate::clock::Instant::now() + poll > deadline {
                return Ok(Some(Claim::InFlight));
            }
            // Only between looks: a look is a GET, nothing to leave half done.
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                () = super::stopped(stop) => return Ok(Some(Claim::InFlight)),
            }
            poll = (poll * 2).min(POLL_MAX);
            // At most one byte past the bound is read; a missing key reads as empty.
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
            let value = metrics::timed("poll", self.call(get)).await?;
            seen = match value.is_empty() {
                true => None,
                false => Some(bounded(value)?),
            };
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
        let window = store.claims().window;
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
        let give_up = crate::clock::Instant::now() + SETTLE_RETRY_FOR;
        let mut pause = Duration::from_millis(100);
        loop {
            match store.settle_once(make(), op).await {
                Ok(_) => return,
                Err(e) if crate::clock::Instant::now() + pause > give_up => {
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
