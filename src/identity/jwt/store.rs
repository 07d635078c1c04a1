//! One issuer's cached keys and when they are fetched again. Requests read the cache without
//! locking. A key id the cache lacks causes a fetch only when allowed: the first load (then,
//! after a failure, again at most every few seconds), and at most one refresh per
//! `unknown_kid_refresh_secs` for unknown key ids, so a flood of invented `kid`s cannot make
//! graphgate hammer the issuer. Fetches are single-flight. A stale cache is refreshed in the
//! background while it keeps serving; a fetch that fails keeps the cached keys.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::clock::Instant;
use arc_swap::ArcSwapOption;

use super::fetch::{FetchError, KeyLoader};
use super::jwks::{KeyMap, VerifyingKey};
use crate::policy::JwtIssuer;

/// Longest wait before a store with no keys at all tries again after a failed fetch.
const COLD_RETRY: Duration = Duration::from_secs(5);

/// Keys as fetched at one time.
#[derive(Debug)]
pub struct KeySet {
    keys: KeyMap,
    fetched: Instant,
}

impl KeySet {
    /// The keys with id `kid` (empty if none).
    pub fn get(&self, kid: &str) -> &[VerifyingKey] {
        self.keys.get(kid).map_or(&[], Vec::as_slice)
    }

    fn has(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }
}

/// Why no key could be had for a key id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMiss {
    /// Keys are cached, but none with this id (and no refresh was allowed, or it did not
    /// bring one).
    UnknownKey,
    /// No keys at all: the issuer's keys could not be fetched.
    Unavailable,
}

#[derive(Debug, Default)]
struct RefreshState {
    /// The last refresh caused by an unknown key id.
    last_forced: Option<Instant>,
    /// The last failed fetch (for a store without keys).
    last_failure: Option<Instant>,
}

#[derive(Debug, Default)]
struct Background {
    running: bool,
    not_before: Option<Instant>,
}

/// One issuer's keys.
pub struct KeyStore {
    issuer: JwtIssuer,
    loader: Arc<dyn KeyLoader>,
    current: ArcSwapOption<KeySet>,
    refresh: tokio::sync::Mutex<RefreshState>,
    background: Mutex<Background>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("issuer", &self.issuer.issuer)
            .field("cached", &self.current.load().is_some())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl KeyStore {
    /// An empty store for `issuer`, filled through `loader`.
    pub fn new(issuer: JwtIssuer, loader: Arc<dyn KeyLoader>) -> Arc<Self> {
        Arc::new(KeyStore {
            issuer,
            loader,
            current: ArcSwapOption::empty(),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
            background: Mutex::new(Background::default()),
        })
    }

    /// The issuer this store holds keys for.
    pub fn issuer(&self) -> &JwtIssuer {
        &self.issuer
    }

    /// The keys cached now, if any (no fetch).
    pub fn cached(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// Keys holding `kid`: from the cache, or fetched if a fetch is allowed now.
    pub async fn keys_for(self: &Arc<Self>, kid: &str) -> Result<Arc<KeySet>, KeyMiss> {
        if let Some(set) = self.current.load_full()
            && set.has(kid)
        {
            self.refresh_if_stale(&set);
            return Ok(set);
        }
        self.fetch_for(kid).await
    }

    /// Loads the keys if none are cached (and the last failure is not too recent): what a
    /// new policy does ahead of its first token.
    pub async fn warm(&self) {
        let mut state = self.refresh.lock().await;
        if self.current.load().is_none()
            && self.cold_fetch_allowed(&state)
            && self.fetch().await.is_err()
        {
            state.last_failure = Some(Instant::now());
        }
    }

    async fn fetch_for(&self, kid: &str) -> Result<Arc<KeySet>, KeyMiss> {
        let mut state = self.refresh.lock().await;
        // Another request may have fetched while this one waited for the lock.
        let current = self.current.load_full();
        let miss = match &current {
            Some(set) if set.has(kid) => return Ok(Arc::clone(set)),
            Some(_) => KeyMiss::UnknownKey,
            None => KeyMiss::Unavailable,
        };
        let now = Instant::now();
        let allowed = match current {
            None => self.cold_fetch_allowed(&state),
            Some(_) => state
                .last_forced
                .is_none_or(|t| now.duration_since(t) >= self.issuer.unknown_kid_refresh),
        };
        if !allowed {
            return Err(miss);
        }
        if miss == KeyMiss::UnknownKey {
            state.last_forced = Some(now);
        }
        match self.fetch().await {
            Ok(set) if set.has(kid) => Ok(set),
            Ok(_) => Err(KeyMiss::UnknownKey),
            Err(_) => {
                state.last_failure = Some(now);
                Err(miss)
            }
        }
    }

    fn cold_fetch_allowed(&self, state: &RefreshState) -> bool {
        let backoff = COLD_RETRY.min(self.issuer.unknown_kid_refresh);
        state.last_failure.is_none_or(|t| t.elapsed() >= backoff)
    }

    /// Fetches and, on success, caches the keys. A failure leaves the cache as it was.
    async fn fetch(&self) -> Result<Arc<KeySet>, FetchError> {
        match self.loader.load(&self.issuer).await {
            Ok(keys) => {
                crate::metrics::jwt_key_fetch(true);
                tracing::info!(issuer = %self.issuer.issuer, keys = keys.len(), "fetched the token issuer's keys");
                let set = Arc::new(KeySet {
                    keys,
                    fetched: Instant::now(),
                });
                self.current.store(Some(Arc::clone(&set)));
                Ok(set)
            }
            Err(error) => {
                crate::metrics::jwt_key_fetch(false);
                let cached = self.current.load().is_some();
                tracing::warn!(issuer = %self.issuer.issuer, %error, cached, "could not fetch the token issuer's keys; any cached keys stay in use");
                Err(error)
            }
        }
    }

    /// Starts a background refresh if `set` is older than the issuer's refresh interval and
    /// none is running (after a failed one, not again before the unknown-kid interval).
    pub(super) fn refresh_if_stale(self: &Arc<Self>, set: &KeySet) {
        if set.fetched.elapsed() < self.issuer.refresh {
            return;
        }
        {
            let mut bg = lock(&self.background);
            if bg.running || bg.not_before.is_some_and(|t| Instant::now() < t) {
                return;
            }
            bg.running = true;
        }
        let store = Arc::clone(self);
        tokio::spawn(async move {
            let ok = {
                let _single = store.refresh.lock().await;
                let stale = store
                    .current
                    .load()
                    .as_ref()
                    .is_none_or(|s| s.fetched.elapsed() >= store.issuer.refresh);
                !stale || store.fetch().await.is_ok()
            };
            let mut bg = lock(&store.background);
            bg.running = false;
            bg.not_before = (!ok).then(|| Instant::now() + store.issuer.unknown_kid_refresh);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::BoxFuture;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A loader serving a key set with the kids it is told, or failing, counting loads.
    struct Fake {
        kids: Mutex<Result<Vec<&'static str>, ()>>,
        loads: AtomicUsize,
        delay: Duration,
    }

    impl Fake {
        fn new(kids: &[&'static str]) -> Arc<Self> {
            Arc::new(Fake {
                kids: Mutex::new(Ok(kids.to_vec())),
                loads: AtomicUsize::new(0),
                delay: Duration::from_millis(100),
            })
        }
        fn set(&self, kids: Result<Vec<&'static str>, ()>) {
            *lock(&self.kids) = kids;
        }
        fn loads(&self) -> usize {
            self.loads.load(Ordering::SeqCst)
        }
    }

    impl KeyLoader for Fake {
        fn load<'a>(&'a self, _: &'a JwtIssuer) -> BoxFuture<'a, Result<KeyMap, FetchError>> {
            Box::pin(async move {
                self.loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                let kids = lock(&self.kids).clone().map_err(|()| FetchError::Status {
                    url: "fake".into(),
                    status: 503,
                })?;
                let keys: Vec<serde_json::Value> = kids
                    .iter()
                    .map(|k| serde_json::json!({"kty": "EC", "kid": k, "crv": "P-256", "x": "AA", "y": "AA"}))
                    .collect();
                let doc = serde_json::json!({ "keys": keys }).to_string();
                Ok(super::super::jwks::parse(doc.as_bytes()).unwrap())
            })
        }
    }

    fn issuer() -> JwtIssuer {
        JwtIssuer {
            issuer: "https://issuer.example".into(),
            audiences: vec!["graphgate".into()],
            keys: crate::policy::KeySource::JwksUrl("https://issuer.example/keys".into()),
            algorithms: vec![jsonwebtoken::Algorithm::ES256],
            leeway: Duration::from_secs(60),
            refresh: Duration::from_secs(3600),
            unknown_kid_refresh: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(5),
            pin_jwks_host: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cold_store_loads_once_for_concurrent_requests() {
        let fake = Fake::new(&["k1"]);
        let store = KeyStore::new(issuer(), fake.clone());
        let lookups: Vec<_> = (0..20)
            .map(|_| {
                let s = Arc::clone(&store);
                tokio::spawn(async move { s.keys_for("k1").await.map(|set| set.get("k1").len()) })
            })
            .collect();
        for l in lookups {
            assert_eq!(l.await.unwrap(), Ok(1));
        }
        assert_eq!(fake.loads(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kids_refresh_at_most_once_per_interval() {
        let fake = Fake::new(&["k1"]);
        let store = KeyStore::new(issuer(), fake.clone());
        store.keys_for("k1").await.unwrap();
        // Rotation: the first unknown kid refreshes and finds the new key...
        fake.set(Ok(vec!["k1", "k2"]));
        assert!(store.keys_for("k2").await.is_ok());
        assert_eq!(fake.loads(), 2);
        // ...and a flood of invented kids within the interval fetches nothing more.
        fake.set(Ok(vec!["k1", "k2", "k3"]));
        for i in 0..100 {
            assert_eq!(
                store.keys_for(&format!("bogus-{i}")).await.unwrap_err(),
                KeyMiss::UnknownKey
            );
        }
        assert_eq!(store.keys_for("k3").await.unwrap_err(), KeyMiss::UnknownKey);
        assert_eq!(fake.loads(), 2);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(
            store.keys_for("k3").await.is_ok(),
            "the next interval allows one refresh"
        );
        assert_eq!(fake.loads(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_issuer_keeps_the_cached_keys_and_a_cold_one_fails_closed() {
        let fake = Fake::new(&["k1"]);
        let store = KeyStore::new(issuer(), fake.clone());
        store.keys_for("k1").await.unwrap();
        fake.set(Err(()));
        assert_eq!(store.keys_for("k2").await.unwrap_err(), KeyMiss::UnknownKey);
        assert!(store.keys_for("k1").await.is_ok(), "cached keys stay");

        let cold = KeyStore::new(issuer(), fake.clone());
        let before = fake.loads();
        assert_eq!(cold.keys_for("k1").await.unwrap_err(), KeyMiss::Unavailable);
        assert_eq!(cold.keys_for("k1").await.unwrap_err(), KeyMiss::Unavailable);
        assert_eq!(
            fake.loads(),
            before + 1,
            "no second attempt within the back-off"
        );
        fake.set(Ok(vec!["k1"]));
        tokio::time::advance(COLD_RETRY).await;
        assert!(cold.keys_for("k1").await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn stale_keys_are_refreshed_in_the_background_and_kept_if_that_fails() {
        let fake = Fake::new(&["k1"]);
        let store = KeyStore::new(issuer(), fake.clone());
        store.keys_for("k1").await.unwrap();
        tokio::time::advance(Duration::from_secs(3600)).await;
        fake.set(Err(()));
        assert!(
            store.keys_for("k1").await.is_ok(),
            "served from the cache at once"
        );
        // The background refresh runs (and fails) while the cache keeps serving.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(fake.loads(), 2);
        assert!(store.keys_for("k1").await.is_ok());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(fake.loads(), 2, "no retry before the unknown-kid interval");
        fake.set(Ok(vec!["k2"]));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(store.keys_for("k1").await.is_ok());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(fake.loads(), 3);
        assert_eq!(
            store.keys_for("k1").await.unwrap_err(),
            KeyMiss::UnknownKey,
            "the refreshed set replaced the old one"
        );
    }
}
