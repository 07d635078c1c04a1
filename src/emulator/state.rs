//! The emulator's shared state: its configuration, signing key, device inventory, request
//! logs and the fault switches that later tests can flip while it runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use arc_swap::ArcSwap;

use super::EmulatorConfig;
use super::keys::SigningKey;
use super::records::{Bounded, DeviceRecord, GraphRequestRecord, MAX_RECORDS, TokenRequestRecord};

/// Injected misbehaviour. Empty today: each fault will be a field here, read once per
/// request through [`State::faults`] at the top of the Entra and Graph handlers, so
/// adding one changes no signatures.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Faults {
    /// Refuse PS256 client assertions with AADSTS700027, like an Entra that only knows the
    /// older RS256 + `x5t` format.
    pub reject_ps256_assertions: bool,
}

impl Faults {
    /// Only RS256 + `x5t` certificate assertions are accepted.
    pub fn rs256_only() -> Self {
        Faults {
            reject_ps256_assertions: true,
        }
    }
}

/// Everything the request handlers share.
pub(crate) struct State {
    pub(crate) config: EmulatorConfig,
    pub(crate) key: &'static SigningKey,
    devices: Mutex<BTreeMap<String, DeviceRecord>>,
    token_log: Mutex<Bounded<TokenRequestRecord>>,
    graph_log: Mutex<Bounded<GraphRequestRecord>>,
    token_count: AtomicU64,
    faults: ArcSwap<Faults>,
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
            devices: Mutex::new(devices),
            token_log: Mutex::new(Bounded::new(MAX_RECORDS)),
            graph_log: Mutex::new(Bounded::new(MAX_RECORDS)),
            token_count: AtomicU64::new(0),
            faults: ArcSwap::from_pointee(Faults::default()),
        }
    }

    /// The faults in force for one request.
    pub(crate) fn faults(&self) -> std::sync::Arc<Faults> {
        self.faults.load_full()
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        self.faults.store(std::sync::Arc::new(faults));
    }

    pub(crate) fn record_token(&self, record: TokenRequestRecord) {
        self.token_count.fetch_add(1, Ordering::Relaxed);
        lock(&self.token_log).push(record);
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
