//! The token broker: one cached app-only token per (authority, tenant, client, scope), held
//! in moka. Cold starts are single-flight; tokens are refreshed ahead of expiry in the
//! background while the cached one is served; a token inside the expiry margin is never used.
//! Its circuit breaker (`breaker`) is its own: nothing else calls the token endpoint.

mod breaker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::clock::Instant;
use base64::Engine;
use moka::Expiry;

use crate::credential::privilege::PrivilegeWatch;
use crate::credential::{IssuedToken, LeastPrivilegeReport, TokenError, TokenSource};
use crate::secret::Secret;
use breaker::Breaker;

/// What a cached token is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    /// Entra authority host.
    pub authority: String,
    /// Tenant id.
    pub tenant: String,
    /// Client (app) id.
    pub client: String,
    /// The `.default` scope.
    pub scope: String,
}

/// The claims the gateway reads from its own token (it never validates Graph tokens).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct OwnClaims {
    /// The app id the token was issued to.
    #[serde(default)]
    pub appid: Option<String>,
    /// Application permissions granted.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A cached token and its schedule.
#[derive(Debug)]
pub struct CachedToken {
    /// The bearer token.
    pub token: Secret,
    /// What the gateway read from it.
    pub claims: OwnClaims,
    /// After this instant the token is inside the expiry margin and is never handed out.
    pub usable_until: Instant,
    refresh_at: Instant,
    refreshing: AtomicBool,
}

impl CachedToken {
    fn new(issued: IssuedToken, now: Instant, margin: Duration) -> Result<Self, TokenError> {
        let lifetime = issued.expires_in;
        if lifetime <= margin {
            return Err(TokenError::TooShortLived {
                lifetime_secs: lifetime.as_secs(),
                margin_secs: margin.as_secs(),
            });
        }
        let usable = lifetime - margin;
        // Refresh at Entra's hint if any, else halfway, and always before the margin.
        let refresh_after = issued.refresh_in.unwrap_or(lifetime / 2).min(usable);
        Ok(CachedToken {
            claims: read_claims(&issued.access_token),
            token: issued.access_token,
            usable_until: now + usable,
            refresh_at: now + refresh_after,
            refreshing: AtomicBool::new(false),
        })
    }

    fn usable(&self, now: Instant) -> bool {
        now < self.usable_until
    }
}

/// Decodes the payload of a JWT without verifying it. Anything unreadable gives no claims.
fn read_claims(token: &Secret) -> OwnClaims {
    token
        .expose()
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|json| serde_json::from_slice(&json).ok())
        .unwrap_or_default()
}

struct UntilUnusable;

impl Expiry<TokenKey, Arc<CachedToken>> for UntilUnusable {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        value: &Arc<CachedToken>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.usable_until.saturating_duration_since(Instant::now()))
    }
}

/// Hands out tokens; cheap to clone.
#[derive(Clone)]
pub struct TokenBroker {
    cache: moka::future::Cache<TokenKey, Arc<CachedToken>>,
    source: Arc<dyn TokenSource>,
    key: TokenKey,
    margin: Duration,
    privilege: Arc<PrivilegeWatch>,
    breaker: Arc<Breaker>,
}

impl TokenBroker {
    /// A broker for `key`, fetching from `source`, never using a token within `margin` of expiry.
    pub fn new(key: TokenKey, source: Arc<dyn TokenSource>, margin: Duration) -> Self {
        let cache = moka::future::Cache::builder()
            .max_capacity(64)
            .expire_after(UntilUnusable)
            .build();
        TokenBroker {
            cache,
            source,
            key,
            margin,
            privilege: Arc::new(PrivilegeWatch::default()),
            breaker: Arc::new(Breaker::default()),
        }
    }

    /// The latest least-privilege report: the roles of the newest token against the
    /// permissions the policy needs. `None` until the first token. Readiness fails while
    /// `missing` is non-empty; `excess` is a warning and a metric.
    pub fn least_privilege(&self) -> Option<Arc<LeastPrivilegeReport>> {
        self.privilege.report()
    }

    /// The permissions the current policy needs (set at start-up and on every reload).
    pub fn set_required_permissions(&self, required: std::collections::BTreeSet<&'static str>) {
        self.privilege.set_required(required);
    }

    /// `permission` is needed whatever the policy (see [`crate::audit::reconcile`]).
    pub fn require_also(&self, permission: &'static str) {
        self.privilege.require_also(permission);
    }

    /// The cache key this broker serves.
    pub fn key(&self) -> &TokenKey {
        &self.key
    }

    /// A usable token: cached, or fetched once for all concurrent callers. While the
    /// token endpoint's breaker is open, fails at once with the last error.
    pub async fn token(&self) -> Result<Arc<CachedToken>, Arc<TokenError>> {
        if let Some(cached) = self.cache.get(&self.key).await {
            let now = Instant::now();
            if cached.usable(now) {
                crate::metrics::token_cache_hit();
                self.refresh_ahead(&cached, now);
                return Ok(cached);
            }
            self.forget(&cached).await;
        }
        if let Some(err) = self.breaker.check(Instant::now()) {
            return Err(Arc::new(err));
        }
        let broker = self.clone();
        let fetched = self
            .cache
            .try_get_with(self.key.clone(), async move {
                broker.fetch().await.map(Arc::new)
            })
            .await?;
        if fetched.usable(Instant::now()) {
            Ok(fetched)
        } else {
            // Only possible if the fetch itself outlived the token's usable life.
            self.forget(&fetched).await;
            Err(Arc::new(TokenError::Unavailable(
                "the new token expired before use".into(),
            )))
        }
    }

    /// One token request, recorded by the breaker and the least-privilege watch.
    async fn fetch(&self) -> Result<CachedToken, TokenError> {
        let started = Instant::now();
        let issued = self.source.fetch().await;
        crate::metrics::token_fetch(issued.is_ok());
        match issued.and_then(|t| CachedToken::new(t, started, self.margin)) {
            Ok(token) => {
                self.breaker.success();
                self.privilege.observe_roles(&token.claims.roles);
                Ok(token)
            }
            Err(err) => {
                let open_for = self.breaker.failure(Instant::now(), &err);
                tracing::warn!(error = %err, failures = self.breaker.failures(), retry_in_ms = open_for.as_millis() as u64, "token request failed");
                Err(err)
            }
        }
    }

    /// Drops `token` if it is still the cached one (e.g. Graph called it invalid).
    pub async fn forget(&self, token: &Arc<CachedToken>) {
        let token = Arc::clone(token);
        self.cache
            .entry(self.key.clone())
            .and_compute_with(|entry| async move {
                match entry {
                    Some(e) if Arc::ptr_eq(e.value(), &token) => moka::ops::compute::Op::Remove,
                    _ => moka::ops::compute::Op::Nop,
                }
            })
            .await;
    }

    /// Starts one background refresh when the token is due, none is running and the
    /// breaker is closed; the cached token is served meanwhile.
    fn refresh_ahead(&self, cached: &Arc<CachedToken>, now: Instant) {
        if now < cached.refresh_at
            || self.breaker.check(now).is_some()
            || cached.refreshing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let broker = self.clone();
        let cached = Arc::clone(cached);
        tokio::spawn(async move {
            if let Ok(fresh) = broker.fetch().await {
                broker
                    .cache
                    .insert(broker.key.clone(), Arc::new(fresh))
                    .await;
                tracing::debug!("token refreshed ahead of expiry");
            }
            cached.refreshing.store(false, Ordering::Release);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::BoxFuture;
    use std::sync::atomic::AtomicUsize;

    struct Fake {
        calls: AtomicUsize,
        lifetime: Duration,
        fail: AtomicBool,
    }

    impl TokenSource for Fake {
        fn fetch(&self) -> BoxFuture<'_, Result<IssuedToken, TokenError>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await; // a slow network, in paused time
                if self.fail.load(Ordering::SeqCst) {
                    return Err(TokenError::Unavailable("down".into()));
                }
                Ok(IssuedToken {
                    access_token: Secret::new(format!("token-{n}")),
                    expires_in: self.lifetime,
                    refresh_in: None,
                })
            })
        }
    }

    fn broker(lifetime_secs: u64) -> (TokenBroker, Arc<Fake>) {
        let fake = Arc::new(Fake {
            calls: AtomicUsize::new(0),
            lifetime: Duration::from_secs(lifetime_secs),
            fail: AtomicBool::new(false),
        });
        let key = TokenKey {
            authority: "a".into(),
            tenant: "t".into(),
            client: "c".into(),
            scope: "s".into(),
        };
        (
            TokenBroker::new(key, fake.clone(), Duration::from_secs(300)),
            fake,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn cold_start_is_single_flight() {
        let (b, fake) = broker(3600);
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let b = b.clone();
                tokio::spawn(async move { b.token().await.map(|t| t.token.expose().to_owned()) })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), "token-0");
        }
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_ahead_and_never_serves_inside_the_margin() {
        let (b, fake) = broker(3600);
        assert_eq!(b.token().await.unwrap().token.expose(), "token-0");
        // Past half-life: the cached token is served while one refresh runs.
        tokio::time::advance(Duration::from_secs(1801)).await;
        assert_eq!(b.token().await.unwrap().token.expose(), "token-0");
        assert_eq!(b.token().await.unwrap().token.expose(), "token-0");
        // Step the paused clock until the background refresh (10 ms of fake network) lands.
        let mut seen = String::new();
        for _ in 0..50 {
            seen = b.token().await.unwrap().token.expose().to_owned();
            if seen != "token-0" {
                break;
            }
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert_eq!(seen, "token-1");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 2);

        // The identity provider goes down: the cached token is served until its margin...
        fake.fail.store(true, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(3300 - 1)).await;
        assert_eq!(b.token().await.unwrap().token.expose(), "token-1");
        // ...and never inside it.
        tokio::time::advance(Duration::from_secs(2)).await;
        let err = b.token().await.unwrap_err();
        assert!(matches!(*err, TokenError::Unavailable(_)), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_identity_provider_outage_opens_the_breaker() {
        let (b, fake) = broker(3600);
        let calls = || fake.calls.load(Ordering::SeqCst);
        fake.fail.store(true, Ordering::SeqCst);
        assert!(b.token().await.is_err());
        assert!(
            b.token().await.is_err(),
            "a single blip is retried by the next caller"
        );
        assert_eq!(calls(), 2);
        // Open: callers fail at once and Entra is not asked.
        for _ in 0..50 {
            assert!(matches!(
                *b.token().await.unwrap_err(),
                TokenError::Unavailable(_)
            ));
        }
        assert_eq!(calls(), 2);
        // Half-open after the interval: one probe, which fails and reopens for longer.
        tokio::time::advance(Duration::from_millis(700)).await;
        assert!(b.token().await.is_err());
        assert_eq!(calls(), 3);
        assert!(b.token().await.is_err());
        assert_eq!(calls(), 3);
        // Recovery closes it.
        fake.fail.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(b.token().await.is_ok());
        assert_eq!(calls(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_shorter_than_the_margin_are_refused() {
        let (b, _) = broker(200);
        assert!(matches!(
            *b.token().await.unwrap_err(),
            TokenError::TooShortLived { .. }
        ));
    }

    #[test]
    fn claims_are_read_without_exposing_the_token() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"appid":"app-1","roles":["R1"]}"#);
        let c = read_claims(&Secret::new(format!("h.{payload}.s")));
        assert_eq!(c.appid.as_deref(), Some("app-1"));
        assert_eq!(c.roles, vec!["R1"]);
        assert!(read_claims(&Secret::new("opaque")).appid.is_none());
    }
}
