//! Why the policy refused a request (403 `accessDenied`), typed: the gateway's answer and
//! `policy explain` word it from this, naming only the caller's own rules.

use super::Decision;
use crate::operation::catalog::{ApiVersion, Operation};
use crate::operation::route::Recognised;

/// A policy refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    /// A deny rule matched.
    #[error("denied by policy rule '{rule}'")]
    DeniedBy {
        /// The rule.
        rule: String,
    },
    /// No rule allows it.
    #[error(
        "no policy rule allows caller '{caller}' to run {operation} ({version}) on device {device} with these parameters"
    )]
    NoRule {
        /// The caller.
        caller: String,
        /// The operation.
        operation: &'static str,
        /// Its API version.
        version: &'static str,
        /// The device.
        device: String,
    },
    /// A bulk request with devices the policy refuses (the request is refused whole).
    #[error(
        "no policy rule allows caller '{caller}' to run {operation} ({version}) on {} {} with these parameters; nothing was sent",
        crate::words::noun(.devices.len(), "device"),
        .devices.join(", ")
    )]
    Devices {
        /// The caller.
        caller: String,
        /// The operation its `actionName` runs.
        operation: &'static str,
        /// Its API version.
        version: &'static str,
        /// The devices refused, in request order.
        devices: Vec<String>,
    },
    /// An approved request the policy in force no longer allows as it was approved (its
    /// caller gone, its rule revoked, or other approvals needed now); nothing was sent.
    #[error("the policy in force no longer allows this approved request: {0}; nothing was sent")]
    Approval(String),
}

impl Forbidden {
    /// The refusal `decision` (a deny) is, for `caller`'s request for `target`.
    pub fn of(decision: &Decision<'_>, caller: &str, target: &Recognised) -> Self {
        match decision.rule_name() {
            Some(rule) => Forbidden::DeniedBy {
                rule: rule.to_owned(),
            },
            None => Forbidden::NoRule {
                caller: caller.to_owned(),
                operation: target.op.name,
                version: target.version.as_str(),
                device: target.device_id.clone(),
            },
        }
    }

    /// A bulk request running `op` whose `devices` the policy refuses.
    pub fn devices(
        caller: &str,
        op: &Operation,
        version: ApiVersion,
        devices: Vec<String>,
    ) -> Self {
        Forbidden::Devices {
            caller: caller.to_owned(),
            operation: op.name,
            version: version.as_str(),
            devices,
        }
    }
}
