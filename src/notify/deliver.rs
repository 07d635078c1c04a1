//! One webhook's sender: takes its queue's deliveries in order and POSTs each, signed
//! afresh on every attempt, retrying timeouts, failed connections, 5xx, 408 and 429 with
//! backoff and jitter up to the attempts allowed; another 4xx is not retried (the receiver
//! refused it). The signing secret is read from its file for every attempt, so a rotated
//! secret takes effect without a reload. Logs name the webhook by scheme and host only
//! (chat webhook URLs carry their credential in the path or query).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::Full;

use super::Settings;
use super::queue::{Delivery, Queue};
use crate::policy::Webhook;
use crate::upstream::HttpClient;

/// Sends what `queue` holds to `webhook` until the queue closes.
pub(super) async fn send_all(
    queue: Arc<Queue>,
    webhook: Webhook,
    client: HttpClient,
    settings: Arc<Settings>,
) {
    while let Some(delivery) = queue.next().await {
        crate::metrics::webhook_queued(-1);
        send(&client, &webhook, &settings, &delivery).await;
    }
}

/// How one attempt ended.
enum Attempt {
    Delivered,
    /// Worth another attempt; the metric's result.
    Retry(&'static str, String),
    /// Not worth another.
    Refused(String),
}

async fn send(client: &HttpClient, webhook: &Webhook, settings: &Settings, d: &Delivery) {
    let attempts = settings.attempts.max(1);
    for attempt in 1..=attempts {
        let why = match once(client, webhook, settings, d).await {
            Attempt::Delivered => {
                crate::metrics::webhook_delivery("ok");
                tracing::debug!(webhook = %shown(&webhook.url), delivery = %d.id, attempt, "approval notification delivered");
                return;
            }
            Attempt::Refused(why) => {
                crate::metrics::webhook_delivery("refused");
                tracing::warn!(webhook = %shown(&webhook.url), approval.id = %d.approval_id, approval.event = d.event, delivery = %d.id, attempt, error = %why, "a webhook refused an approval notification; not retried");
                return;
            }
            Attempt::Retry(result, why) => {
                crate::metrics::webhook_delivery(result);
                why
            }
        };
        if attempt == attempts {
            crate::metrics::webhook_delivery("gave_up");
            tracing::warn!(webhook = %shown(&webhook.url), approval.id = %d.approval_id, approval.event = d.event, delivery = %d.id, attempts, error = %why, "an approval notification could not be delivered; given up");
            return;
        }
        let wait = backoff(settings.backoff, attempt);
        tracing::info!(webhook = %shown(&webhook.url), delivery = %d.id, attempt, error = %why, retry_in_ms = wait.as_millis() as u64, "an approval notification was not delivered; retrying");
        tokio::time::sleep(wait).await;
    }
}

async fn once(
    client: &HttpClient,
    webhook: &Webhook,
    settings: &Settings,
    d: &Delivery,
) -> Attempt {
    let path = webhook.secret_file.clone();
    let secret = match tokio::task::spawn_blocking(move || crate::secret::read_file(&path)).await {
        Ok(Ok(secret)) => secret,
        Ok(Err(e)) => {
            return Attempt::Retry(
                "no_secret",
                format!("secret_file {}: {e}", webhook.secret_file.display()),
            );
        }
        Err(e) => return Attempt::Retry("no_secret", e.to_string()),
    };
    let unix = crate::state::wall_clock_ms() / 1_000;
    let Some(signature) = super::sign::signature(&secret, unix, &d.body) else {
        return Attempt::Refused("the secret cannot key HMAC-SHA256".into());
    };
    let Ok(uri) = webhook.url.parse::<Uri>() else {
        return Attempt::Refused("the URL does not parse".into());
    };
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("graphgate/", env!("CARGO_PKG_VERSION")),
        )
        .header(super::sign::HEADER, signature)
        .header("graphgate-delivery", d.id.as_str())
        .header("graphgate-event", HeaderValue::from_static(d.event))
        .body(Full::new(Bytes::clone(&d.body)));
    let request = match request {
        Ok(r) => r,
        Err(e) => return Attempt::Refused(e.to_string()),
    };
    match tokio::time::timeout(settings.timeout, client.request(request)).await {
        Err(_) => Attempt::Retry(
            "timeout",
            format!("no answer within {} ms", settings.timeout.as_millis()),
        ),
        Ok(Err(e)) => Attempt::Retry("connect", e.to_string()),
        Ok(Ok(answer)) => {
            let status = answer.status();
            if status.is_success() {
                Attempt::Delivered
            } else if status.is_server_error()
                || status == http::StatusCode::REQUEST_TIMEOUT
                || status == http::StatusCode::TOO_MANY_REQUESTS
            {
                Attempt::Retry("status", format!("answered {status}"))
            } else {
                Attempt::Refused(format!("answered {status}"))
            }
        }
    }
}

/// The wait after failed attempt `attempt` (1-based): `first` doubled per attempt up to
/// `max`, drawn between half and all of it (so senders that failed together spread out).
fn backoff((first, max): (Duration, Duration), attempt: u32) -> Duration {
    let full = first
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    let half = full / 2;
    let spread = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
    let extra = match spread {
        0 => 0,
        n => getrandom::u64().unwrap_or(0) % (n + 1),
    };
    half + Duration::from_millis(extra)
}

/// A webhook URL as logs show it: scheme and host only.
pub(super) fn shown(url: &str) -> String {
    match url.parse::<Uri>() {
        Ok(uri) => format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("?"),
            uri.authority().map_or("?", |a| a.as_str())
        ),
        Err(_) => "(unparsable url)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_in_the_upper_half() {
        let b = (Duration::from_millis(100), Duration::from_millis(1_000));
        for _ in 0..50 {
            let w1 = backoff(b, 1);
            assert!(
                w1 >= Duration::from_millis(50) && w1 <= Duration::from_millis(100),
                "{w1:?}"
            );
            let w3 = backoff(b, 3);
            assert!(
                w3 >= Duration::from_millis(200) && w3 <= Duration::from_millis(400),
                "{w3:?}"
            );
            let w9 = backoff(b, 9);
            assert!(
                w9 >= Duration::from_millis(500) && w9 <= Duration::from_millis(1_000),
                "{w9:?}"
            );
        }
    }

    #[test]
    fn logs_show_scheme_and_host_only() {
        assert_eq!(
            shown("https://hooks.slack.com/services/T0/B0/secretpart?x=1"),
            "https://hooks.slack.com"
        );
    }
}
