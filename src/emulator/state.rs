//! The emulator's shared state: its configuration, signing key, device inventory, request
//! logs and the armed faults (see `faults`) that tests can flip while it runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use arc_swap::ArcSwap;

use super::EmulatorConfig;
use super::faults::{Armed, Fault, Faults, Target};
use super::keys::SigningKey;
use super::records::{Bounded, DeviceRecord, GraphRequestRecord, MAX_RECORDS, TokenRequestRecord};

/// Everything the request handlers share.
pub(crate) struct State {
    pub(crate) config: EmulatorConfig,
    pub(crate) key: &'static SigningKey,
    /// The workload issuers of graphgate's callers (Kubernetes, SPIFFE).
    pub(crate) workloads: super::workload::Workloads,
    devices: Mutex<BTreeMap<String, DeviceRecord>>,
    token_log: Mutex<Bounded<TokenRequestRecord>>,
    graph_log: Mutex<Bounded<GraphRequestRecord>>,
    token_count: AtomicU64,
    /// Graph requests received (fully read, before any fault acts), for tests to wait on.
    graph_received: tokio::sync::watch::Sender<u64>,
    faults: ArcSwap<Armed>,
}

/// Locks `m`, carrying on if another thread panicked while holding it (the data is
/// append-only records, still consistent).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    pub(crate) fn new(config: EmulatorConfig, key: &'static SigningKey) -> Self {
        let devices = config
            .devices
            .iter()
            .map(|id| (id.to_ascii_lowercase(), DeviceRecord::new(id)))
            .collect();
        State {
            config,
            key,
            workloads: super::workload::Workloads::default(),
            devices: Mutex::new(devices),
            token_log: Mutex::new(Bounded::new(MAX_RECORDS)),
            graph_log: Mutex::new(Bounded::new(MAX_RECORDS)),
            token_count: AtomicU64::new(0),
            graph_received: tokio::sync::watch::Sender::new(0),
            faults: ArcSwap::from_pointee(Armed::default()),
        }
    }

    /// The faults in force for one request.
    pub(crate) fn faults(&self) -> std::sync::Arc<Armed> {
        self.faults.load_full()
    }

    /// Claims the fault (if any) for one request to `target`, counting it down.
    pub(crate) fn take_fault(&self, target: Target) -> Option<Fault> {
        self.faults.load().take(target).cloned()
    }

    /// Replaces the faults; their counts start afresh.
    pub(crate) fn set_faults(&self, faults: Faults) {
        self.faults.store(std::sync::Arc::new(Armed::new(faults)));
    }

    pub(crate) fn record_token(&self, record: TokenRequestRecord) {
        self.token_count.fetch_add(1, Ordering::Relaxed);
        lock(&self.token_log).push(record);
    }

    /// A Graph request has been read in full and is now in the emulator's hands.
    pub(crate) fn note_graph_received(&self) {
        self.graph_received.send_modify(|n| *n += 1);
    }

    pub(crate) fn graph_received(&self) -> tokio::sync::watch::Receiver<u64> {
        self.graph_received.subscribe()
    }

    pub(crate) fn record_graph(&self, record: GraphRequestRecord) {
        lock(&self.graph_log).push(record);
    }

    pub(crate) fn token_count(&self) -> u64 {
        self.token_count.load(Ordering::Relaxed)
    }

    pub(crate) fn token_requests(&self) -> Vec<TokenRequestRecord> {
        lock(&self.token_log).to_vec()
    }

    pub(crate) fn graph_requests(&self) -> Vec<GraphRequestRecord> {
        lock(&self.graph_log).to_vec()
    }

    pub(crate) fn devices(&self) -> Vec<DeviceRecord> {
        lock(&self.devices).values().cloned().collect()
    }

    /// Applies a successful action to a device; false if the device is unknown.
    pub(crate) fn update_device(
        &self,
        id: &str,
        action: &str,
        params: &crate::schema::Params,
    ) -> bool {
        match lock(&self.devices).get_mut(&id.to_ascii_lowercase()) {
            Some(device) => {
                device.apply(action, params);
                true
            }
            None => false,
        }
    }
}
