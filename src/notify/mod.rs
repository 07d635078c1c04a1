//! Approval notifications: every change of every approval ([`crate::approval::Event`]) is
//! sent to the webhooks of the policy in force (`approvals: {webhooks}`), signed
//! ([`sign`]), in the webhook's format ([`payload`]: JSON, a Teams Adaptive Card, Slack
//! Block Kit). Each webhook has a bounded queue ([`queue`], the oldest dropped when full)
//! and one sender that retries with backoff and jitter, each attempt under a timeout. The
//! state machine only broadcasts: nothing here is ever waited for by an approval or a
//! request. Notifications tell people; they never decide anything.

mod deliver;
pub mod payload;
pub mod queue;
pub mod sign;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::approval::Event;
use crate::policy::Webhook;
use crate::upstream::HttpClient;
use queue::{Delivery, Queue};

/// How notifications are sent.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The console's base URL as people reach it (`--console-url`): cards link to the
    /// approval's page under it. `None`: no link.
    pub console_url: Option<String>,
    /// Deliveries each webhook's queue holds; more drop the oldest.
    pub queue: usize,
    /// Longest one attempt may take (connect, send, the answer's head).
    pub timeout: Duration,
    /// Attempts per delivery, the first included.
    pub attempts: u32,
    /// The wait before the first retry, and the longest wait (doubling between them, each
    /// wait drawn between half and all of it).
    pub backoff: (Duration, Duration),
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            console_url: None,
            queue: 256,
            timeout: Duration::from_secs(10),
            attempts: 6,
            backoff: (Duration::from_secs(1), Duration::from_secs(60)),
        }
    }
}

/// The webhooks of the policy in force: its version and its `approvals.webhooks`.
pub type Webhooks = (String, Vec<Webhook>);

/// Sends every event `events` carries to the webhooks `in_force` names at the time, until
/// `stop`. Runs as a task of its own.
pub async fn run(
    mut events: broadcast::Receiver<Event>,
    in_force: impl Fn() -> Webhooks + Send + 'static,
    settings: Settings,
    client: HttpClient,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let mut notifier = Notifier {
        settings: Arc::new(settings),
        client,
        version: None,
        targets: HashMap::new(),
    };
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            () = &mut stop => break,
            event = events.recv() => event,
        };
        match event {
            Ok(event) => {
                let (version, webhooks) = in_force();
                notifier.follow(version, &webhooks);
                notifier.offer(&event);
            }
            Err(RecvError::Lagged(missed)) => {
                let lost = missed.saturating_mul(notifier.targets.len() as u64);
                crate::metrics::webhook_dropped(lost);
                tracing::warn!(
                    missed,
                    "approval notifications fell behind the approvals: events not sent"
                );
            }
            Err(RecvError::Closed) => break,
        }
    }
    notifier.close(notifier.targets.keys().cloned().collect());
}

struct Notifier {
    settings: Arc<Settings>,
    client: HttpClient,
    /// The policy version whose webhooks `targets` are.
    version: Option<String>,
    targets: HashMap<Webhook, Target>,
}

/// One webhook's queue and sender.
struct Target {
    queue: Arc<Queue>,
    sender: tokio::task::JoinHandle<()>,
}

impl Notifier {
    /// Makes `targets` the webhooks of policy `version`: new ones start, gone ones stop
    /// (what they still held is dropped, counted), unchanged ones keep their queue.
    fn follow(&mut self, version: String, webhooks: &[Webhook]) {
        if self.version.as_deref() == Some(version.as_str()) {
            return;
        }
        let gone: Vec<Webhook> = self
            .targets
            .keys()
            .filter(|w| !webhooks.contains(w))
            .cloned()
            .collect();
        self.close(gone);
        for webhook in webhooks {
            if !self.targets.contains_key(webhook) {
                let queue = Arc::new(Queue::new(self.settings.queue));
                let sender = tokio::spawn(deliver::send_all(
                    Arc::clone(&queue),
                    webhook.clone(),
                    self.client.clone(),
                    Arc::clone(&self.settings),
                ));
                self.targets
                    .insert(webhook.clone(), Target { queue, sender });
            }
        }
        self.version = Some(version);
    }

    fn close(&mut self, webhooks: Vec<Webhook>) {
        for webhook in webhooks {
            if let Some(target) = self.targets.remove(&webhook) {
                target.sender.abort();
                let dropped = target.queue.close();
                if dropped > 0 {
                    crate::metrics::webhook_queued(-(dropped as i64));
                    crate::metrics::webhook_dropped(dropped as u64);
                    tracing::warn!(
                        webhook = %deliver::shown(&webhook.url),
                        dropped,
                        "a webhook left the policy: its unsent notifications are dropped"
                    );
                }
            }
        }
    }

    /// Queues `event` for every webhook, in each one's format.
    fn offer(&self, event: &Event) {
        let id = uuid::Uuid::new_v4().to_string();
        for (webhook, target) in &self.targets {
            let body = payload::render(
                webhook.format,
                event,
                &id,
                self.settings.console_url.as_deref(),
            );
            let delivery = Delivery {
                id: id.clone(),
                approval_id: event.approval.id.clone(),
                event: event.what,
                body: Bytes::from(body.to_string()),
            };
            match target.queue.offer(delivery) {
                None => crate::metrics::webhook_queued(1),
                Some(dropped) => {
                    crate::metrics::webhook_dropped(1);
                    tracing::warn!(
                        webhook = %deliver::shown(&webhook.url),
                        approval.id = %dropped.approval_id,
                        approval.event = dropped.event,
                        delivery = %dropped.id,
                        "a webhook's queue is full: its oldest notification is dropped"
                    );
                }
            }
        }
    }
}
