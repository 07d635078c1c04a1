//! One webhook's bounded queue of deliveries. Offering never waits: when the queue is full
//! the oldest waiting delivery is dropped (counted and logged), since a newer state of an
//! approval says more than an older one and a receiver can always read the resource.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::Notify;

/// One message for one webhook, sent as is on every attempt (only its signature changes).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Its id (`Graphgate-Delivery`): the same on every attempt, for receivers to
    /// deduplicate.
    pub id: String,
    /// The approval it is about.
    pub approval_id: String,
    /// What happened (`Graphgate-Event`).
    pub event: &'static str,
    /// The rendered body.
    pub body: Bytes,
}

/// A bounded queue, oldest dropped when full.
pub struct Queue {
    items: Mutex<Inner>,
    ready: Notify,
    capacity: usize,
}

struct Inner {
    items: VecDeque<Delivery>,
    closed: bool,
}

impl Queue {
    /// An empty queue holding at most `capacity` deliveries (at least 1).
    pub fn new(capacity: usize) -> Self {
        Queue {
            items: Mutex::new(Inner {
                items: VecDeque::new(),
                closed: false,
            }),
            ready: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    /// Adds `delivery`; returns the delivery dropped to make room, if any.
    pub fn offer(&self, delivery: Delivery) -> Option<Delivery> {
        let mut inner = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.closed {
            return Some(delivery);
        }
        let dropped = (inner.items.len() >= self.capacity)
            .then(|| inner.items.pop_front())
            .flatten();
        inner.items.push_back(delivery);
        drop(inner);
        self.ready.notify_one();
        dropped
    }

    /// The next delivery, waiting for one; `None` once closed (what is still queued is
    /// dropped with it).
    pub async fn next(&self) -> Option<Delivery> {
        loop {
            let notified = self.ready.notified();
            {
                let mut inner = self.items.lock().unwrap_or_else(PoisonError::into_inner);
                if inner.closed {
                    return None;
                }
                if let Some(d) = inner.items.pop_front() {
                    return Some(d);
                }
            }
            notified.await;
        }
    }

    /// Deliveries waiting.
    pub fn len(&self) -> usize {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .items
            .len()
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops the queue: its sender ends, and returns how many waiting deliveries it drops.
    pub fn close(&self) -> usize {
        let mut inner = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        inner.closed = true;
        let n = inner.items.len();
        inner.items.clear();
        drop(inner);
        self.ready.notify_waiters();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: &str) -> Delivery {
        Delivery {
            id: id.into(),
            approval_id: "a".into(),
            event: "requested",
            body: Bytes::new(),
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_oldest_and_keeps_order() {
        let q = Queue::new(2);
        assert!(q.offer(d("1")).is_none());
        assert!(q.offer(d("2")).is_none());
        assert_eq!(q.offer(d("3")).map(|x| x.id), Some("1".to_owned()));
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await.map(|x| x.id), Some("2".to_owned()));
        assert_eq!(q.next().await.map(|x| x.id), Some("3".to_owned()));
        assert!(q.is_empty());
        q.offer(d("4"));
        assert_eq!(q.close(), 1);
        assert!(q.next().await.is_none());
        assert!(q.offer(d("5")).is_some(), "a closed queue takes nothing");
    }
}
