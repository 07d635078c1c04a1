//! The emulator's shared state: its configuration, signing key, device inventory (with each
//! device's action results, see `devices`), request logs and the armed faults (see `faults`)
//! and arranged action outcomes that tests can flip while it runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use arc_swap::ArcSwap;
use serde_json::Value;

use super::EmulatorConfig;
use super::devices::{
    self, ActionEntry, ActionOutcome, Clock, DeviceSecrets, MAX_ACTION_RESULTS, OperatingSystem,
};
use super::faults::{Armed, Fault, Faults, Target};
use super::records::{Bounded, DeviceRecord, GraphRequestRecord, MAX_RECORDS, TokenRequestRecord};
use super::signing_key::SigningKey;

/// Everything the request handlers share.
pub(crate) struct State {
    pub(crate) config: EmulatorConfig,
    pub(crate) key: &'static SigningKey,
    /// The workload issuers of graphgate's callers (Kubernetes, SPIFFE).
    pub(crate) workloads: super::workload::Workloads,
    devices: Mutex<BTreeMap<String, Device>>,
    /// Arranged ends of actions (see [`ActionOutcome`]).
    outcomes: ArcSwap<Vec<ActionOutcome>>,
    clock: Clock,
    token_log: Mutex<Bounded<TokenRequestRecord>>,
    graph_log: Mutex<Bounded<GraphRequestRecord>>,
    token_count: AtomicU64,
    /// Graph requests received (fully read, before any fault acts), for tests to wait on.
    graph_received: tokio::sync::watch::Sender<u64>,
    faults: ArcSwap<Armed>,
    /// A `deviceActionResults` answer replacing every device's (a hostile Graph, in tests).
    results_answer: arc_swap::ArcSwapOption<serde_json::Value>,
    /// Members replacing those of Entra's discovery documents (a forged one, in tests).
    discovery_override: arc_swap::ArcSwapOption<serde_json::Value>,
    /// Multi Admin Approval's requests (when `config.maa` is set).
    pub(crate) maa: super::maa::Book,
}

/// One device of the inventory: its record and the actions accepted for it.
struct Device {
    record: DeviceRecord,
    actions: std::collections::VecDeque<ActionEntry>,
    secrets: DeviceSecrets,
}

/// What a bulk action did, device by device (Graph's `bulkManagedDeviceActionResult`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct BulkOutcome {
    pub(crate) successful: Vec<String>,
    pub(crate) failed: Vec<String>,
    pub(crate) not_found: Vec<String>,
    pub(crate) not_supported: Vec<String>,
}

/// Why an action was not applied to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotApplied {
    /// No such device.
    UnknownDevice,
    /// The device's platform does not offer the action.
    NotSupported(OperatingSystem),
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
            .map(|d| {
                let device = Device {
                    record: DeviceRecord::new(&d.id, d.os),
                    actions: Default::default(),
                    secrets: DeviceSecrets::generate(),
                };
                (d.id.to_ascii_lowercase(), device)
            })
            .collect();
        State {
            outcomes: ArcSwap::from_pointee(config.action_outcomes.clone()),
            results_answer: arc_swap::ArcSwapOption::empty(),
            discovery_override: arc_swap::ArcSwapOption::empty(),
            maa: Default::default(),
            config,
            key,
            workloads: super::workload::Workloads::default(),
            devices: Mutex::new(devices),
            clock: Clock::start(),
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

    /// Every device as of now, action results included.
    pub(crate) fn devices(&self) -> Vec<DeviceRecord> {
        let now = tokio::time::Instant::now();
        lock(&self.devices)
            .values()
            .map(|d| self.snapshot(d, now))
            .collect()
    }

    /// One device as of now, if it exists.
    pub(crate) fn device(&self, id: &str) -> Option<DeviceRecord> {
        let now = tokio::time::Instant::now();
        lock(&self.devices)
            .get(&id.to_ascii_lowercase())
            .map(|d| self.snapshot(d, now))
    }

    fn snapshot(&self, device: &Device, now: tokio::time::Instant) -> DeviceRecord {
        let delay = self.config.action_completion;
        let mut record = device.record.clone();
        record.action_results = device
            .actions
            .iter()
            .map(|a| a.result(now, delay, &self.clock))
            .collect();
        record
    }

    /// Makes every device read answer `deviceActionResults` with `answer` (`None`: the
    /// devices' own results again).
    pub(crate) fn set_results_answer(&self, answer: Option<serde_json::Value>) {
        self.results_answer.store(answer.map(std::sync::Arc::new));
    }

    /// The `deviceActionResults` answer set by [`State::set_results_answer`], if any.
    pub(crate) fn results_answer(&self) -> Option<std::sync::Arc<serde_json::Value>> {
        self.results_answer.load_full()
    }

    /// Makes Entra's discovery documents carry `members` instead of their own (`None`: the
    /// true documents again).
    pub(crate) fn set_discovery_override(&self, members: Option<serde_json::Value>) {
        self.discovery_override
            .store(members.map(std::sync::Arc::new));
    }

    /// The members set by [`State::set_discovery_override`], if any.
    pub(crate) fn discovery_override(&self) -> Option<std::sync::Arc<serde_json::Value>> {
        self.discovery_override.load_full()
    }

    /// Replaces the arranged action outcomes (for actions accepted from now on).
    pub(crate) fn set_action_outcomes(&self, outcomes: Vec<ActionOutcome>) {
        self.outcomes.store(std::sync::Arc::new(outcomes));
    }

    /// The arranged action outcomes in force.
    pub(crate) fn action_outcomes(&self) -> Vec<ActionOutcome> {
        self.outcomes.load().as_ref().clone()
    }

    /// Applies an accepted action to a device: checks the device exists and its platform
    /// offers the action, then counts it, renews a secret it rotates and appends a
    /// `pending` action result.
    pub(crate) fn update_device(
        &self,
        id: &str,
        action: &str,
        body: &Value,
    ) -> Result<(), NotApplied> {
        let id = id.to_ascii_lowercase();
        let mut inventory = lock(&self.devices);
        let device = inventory.get_mut(&id).ok_or(NotApplied::UnknownDevice)?;
        self.accept(device, &id, action, body)
    }

    fn accept(
        &self,
        device: &mut Device,
        id: &str,
        action: &str,
        body: &Value,
    ) -> Result<(), NotApplied> {
        let os = device.record.operating_system;
        if !devices::supports(os, action) {
            return Err(NotApplied::NotSupported(os));
        }
        device.record.apply(action, body);
        device.secrets.rotate(action);
        if device.actions.len() >= MAX_ACTION_RESULTS {
            device.actions.pop_front();
        }
        device.actions.push_back(ActionEntry {
            action: action.to_owned(),
            started: tokio::time::Instant::now(),
            end: devices::planned_end(&self.outcomes.load(), id, action),
        });
        Ok(())
    }

    /// Removes a device from the inventory (Graph's `DELETE .../managedDevices/{id}`).
    pub(crate) fn delete_device(&self, id: &str) -> Result<(), NotApplied> {
        lock(&self.devices)
            .remove(&id.to_ascii_lowercase())
            .map(drop)
            .ok_or(NotApplied::UnknownDevice)
    }

    /// A device's secrets, for a secret-returning function its platform offers.
    pub(crate) fn read_secrets(
        &self,
        id: &str,
        function: &str,
    ) -> Result<DeviceSecrets, NotApplied> {
        let inventory = lock(&self.devices);
        let device = inventory
            .get(&id.to_ascii_lowercase())
            .ok_or(NotApplied::UnknownDevice)?;
        let os = device.record.operating_system;
        if !devices::supports(os, function) {
            return Err(NotApplied::NotSupported(os));
        }
        Ok(device.secrets.clone())
    }

    /// A device's secrets (tests only look).
    pub(crate) fn device_secrets(&self, id: &str) -> Option<DeviceSecrets> {
        lock(&self.devices)
            .get(&id.to_ascii_lowercase())
            .map(|d| d.secrets.clone())
    }

    /// Runs the bulk action `action` (a `managedDeviceRemoteAction`) on each device,
    /// sorting the ids by what came of it.
    pub(crate) fn bulk(&self, action: &str, ids: &[String], body: &Value) -> BulkOutcome {
        let mut out = BulkOutcome::default();
        let mut inventory = lock(&self.devices);
        for raw in ids {
            let id = raw.to_ascii_lowercase();
            let result = match (devices::bulk_action(action), inventory.get_mut(&id)) {
                (_, None) => Err(NotApplied::UnknownDevice),
                (Some("delete"), Some(_)) => {
                    inventory.remove(&id);
                    Ok(())
                }
                (Some(single), Some(device)) => self.accept(device, &id, single, body),
                (None, Some(device)) => {
                    Err(NotApplied::NotSupported(device.record.operating_system))
                }
            };
            let list = match result {
                Ok(()) => &mut out.successful,
                Err(NotApplied::UnknownDevice) => &mut out.not_found,
                Err(NotApplied::NotSupported(_)) => &mut out.not_supported,
            };
            list.push(raw.clone());
        }
        out
    }
}
