//! The bulk `executeAction` (beta), decided per device: its `actionName` names a catalog
//! operation (`wipe` → `managedDevices.wipe`), its other members are that operation's
//! parameters, and the policy is asked about every listed device as if each were a single
//! request. Graph's 200 answer lists per-device outcomes, which the audit records.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};

use crate::operation::catalog::{self, ApiVersion, Operation};
use crate::operation::route::is_guid;
use crate::operation::schema::{self, Params};
use crate::policy::{Decision, Facts, Policy};

/// Intune's own bulk limit (the portal's bulk actions take at most 100 devices).
pub const DEFAULT_MAX_DEVICES: usize = 100;

/// Why a bulk body was refused before policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BulkError {
    /// `deviceIds` missing or empty.
    #[error("'deviceIds' must list at least one managed-device id")]
    NoDevices,
    /// More devices than the cap.
    #[error("'deviceIds' lists {count} devices; at most {max} are accepted in one request")]
    TooMany {
        /// How many were listed.
        count: usize,
        /// The cap.
        max: usize,
    },
    /// A device id that is not a GUID (its position, not its text).
    #[error("'deviceIds[{0}]' is not a managed-device id (a GUID)")]
    NotAGuid(usize),
    /// The same device twice.
    #[error("'deviceIds' lists device {0} more than once")]
    Duplicate(String),
    /// An `actionName` graphgate does not gate.
    #[error(
        "actionName '{0}' is not an operation graphgate offers in bulk (it offers: retire, delete, wipe, fullScan, quickScan, signatureUpdate, customTextNotification, rebootNow, setDeviceName, syncDevice, initiateOnDemandProactiveRemediation)"
    )]
    OutsideCatalog(String),
    /// A parameter the single operation does not take, or of the wrong type.
    #[error(transparent)]
    Params(#[from] schema::SchemaError),
}

/// A bulk request, understood: the operation it runs, with its parameters, on each device.
#[derive(Debug)]
pub struct BulkPlan {
    /// The catalog operation `actionName` names.
    pub op: &'static Operation,
    /// Its parameters, as a single request would carry them.
    pub params: Params,
    /// The devices, lower-cased, in request order.
    pub device_ids: Vec<String>,
}

/// Understands a bulk body already checked against `executeAction`'s schema.
pub fn plan(body: &Value, version: ApiVersion, max_devices: usize) -> Result<BulkPlan, BulkError> {
    let empty = Map::new();
    let members = body.as_object().unwrap_or(&empty);
    let device_ids = device_ids(members.get("deviceIds"), max_devices)?;
    let action = members
        .get("actionName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let outside = || BulkError::OutsideCatalog(action.to_owned());
    let bulk = catalog::bulk_action(action).ok_or_else(outside)?;
    let (op, implied) = (bulk.op().ok_or_else(outside)?, bulk.implied);
    // The single operation's body: every other member, plus what actionName implies.
    let mut single: Map<String, Value> = members
        .iter()
        .filter(|(k, _)| *k != "actionName" && *k != "deviceIds")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some((param, value)) = implied {
        single.insert(param.to_owned(), Value::Bool(value));
    }
    let params =
        schema::validate_request(&Value::Object(single), op.params_for(version), op.wrapper)?;
    Ok(BulkPlan {
        op,
        params,
        device_ids,
    })
}

fn device_ids(value: Option<&Value>, max: usize) -> Result<Vec<String>, BulkError> {
    let items = value
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or(BulkError::NoDevices)?;
    if items.len() > max {
        return Err(BulkError::TooMany {
            count: items.len(),
            max,
        });
    }
    let mut seen = HashSet::with_capacity(items.len());
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let id = item
            .as_str()
            .filter(|s| is_guid(s))
            .ok_or(BulkError::NotAGuid(i))?;
        let id = id.to_ascii_lowercase();
        if !seen.insert(id.clone()) {
            return Err(BulkError::Duplicate(id));
        }
        out.push(id);
    }
    Ok(out)
}

/// A bulk request's decision, taken device by device.
#[derive(Debug)]
pub struct BulkDecision<'p> {
    /// The first refused device's decision if any device is refused (the request is then
    /// refused whole), else the first device's.
    pub decision: Decision<'p>,
    /// The devices the policy refuses, in request order.
    pub refused: Vec<String>,
}

/// Asks the policy about every device as if each were a single request for the operation
/// `actionName` names, with the body's parameters and the person it is done for.
pub fn decide<'p>(
    policy: &'p Policy,
    caller: usize,
    version: ApiVersion,
    plan: &BulkPlan,
    initiator: Option<&crate::policy::Person>,
) -> BulkDecision<'p> {
    let mut refused = Vec::new();
    let (mut first_refused, mut first_allowed) = (None, None);
    for device in &plan.device_ids {
        let decision = policy.decide(&Facts {
            caller,
            op: plan.op,
            version,
            device,
            params: &plan.params,
            initiator,
        });
        if decision.allowed {
            first_allowed.get_or_insert(decision);
        } else {
            refused.push(device.clone());
            first_refused.get_or_insert(decision);
        }
    }
    // A plan lists at least one device; were it empty, nothing would be allowed.
    let decision = first_refused.or(first_allowed).unwrap_or(Decision {
        allowed: false,
        rule: None,
        shadow: None,
    });
    BulkDecision { decision, refused }
}

/// Graph's per-device outcomes from its 200 answer (`value.successfulDeviceIds`, ...).
pub fn outcomes(body: &[u8]) -> BTreeMap<String, String> {
    let parsed: Value = serde_json::from_slice(body).unwrap_or_default();
    let value = &parsed["value"];
    let mut out = BTreeMap::new();
    for (list, outcome) in [
        ("successfulDeviceIds", "successful"),
        ("failedDeviceIds", "failed"),
        ("notFoundDeviceIds", "notFound"),
        ("notSupportedDeviceIds", "notSupported"),
    ] {
        for id in value[list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if is_guid(id) {
                out.insert(id.to_ascii_lowercase(), outcome.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const A: &str = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";
    const B: &str = "1c7a3e2f-2b3c-4d4e-9fa0-112233445566";

    #[test]
    fn plans_name_the_single_operation_and_its_parameters() {
        let p = plan(&json!({"actionName": "wipe", "deviceIds": [A, B.to_uppercase()], "keepUserData": true}), ApiVersion::Beta, 100).unwrap();
        assert_eq!(p.op.name, "managedDevices.wipe");
        assert_eq!(p.device_ids, [A, B]);
        assert_eq!(
            p.params.get("keepUserData"),
            Some(&crate::operation::schema::ParamValue::Bool(true))
        );
        let p = plan(
            &json!({"actionName": "quickScan", "deviceIds": [A]}),
            ApiVersion::Beta,
            100,
        )
        .unwrap();
        assert_eq!(
            p.params.get("quickScan"),
            Some(&crate::operation::schema::ParamValue::Bool(true))
        );
    }

    #[test]
    fn bad_device_lists_and_actions_are_refused() {
        let err = |body: Value, max| plan(&body, ApiVersion::Beta, max).unwrap_err().to_string();
        assert!(err(json!({"actionName": "wipe"}), 100).contains("at least one"));
        assert!(err(json!({"actionName": "wipe", "deviceIds": [A, B]}), 1).contains("at most 1"));
        assert!(
            err(
                json!({"actionName": "wipe", "deviceIds": [A, "laptop-7"]}),
                100
            )
            .contains("deviceIds[1]")
        );
        assert!(
            err(
                json!({"actionName": "wipe", "deviceIds": [A, A.to_uppercase()]}),
                100
            )
            .contains("more than once")
        );
        assert!(
            err(json!({"actionName": "deprovision", "deviceIds": [A]}), 100)
                .contains("'deprovision'")
        );
        // A parameter the single operation does not take is named.
        assert!(
            err(
                json!({"actionName": "retire", "deviceIds": [A], "deviceName": "x"}),
                100
            )
            .contains("deviceName")
        );
    }

    /// `policy explain` decides a bulk request as the gateway does: device by device.
    #[test]
    fn policy_explain_decides_device_by_device() {
        let policy = Policy::from_yaml(
            &format!(
                "version: 1\ncallers:\n  - name: ops\n    api_key_sha256: \"{}\"\nrules:\n  - name: wipe-a\n    callers: [ops]\n    operations: [managedDevices.wipe]\n    devices: [\"{A}\"]\n    when:\n      - {{ param: keepUserData, equals: true }}\n",
                "0".repeat(64)
            ),
            "t",
        )
        .unwrap();
        let explain = |devices: Value| {
            let body = json!({"actionName": "wipe", "keepUserData": true, "deviceIds": devices});
            let (eval, _) = crate::gateway::explain::evaluate(
                &policy,
                "ops",
                "POST /beta/deviceManagement/managedDevices/executeAction",
                Some(body.to_string().as_bytes()),
                Default::default(),
            )
            .unwrap();
            let bulk = eval.bulk.as_ref().unwrap();
            assert_eq!(bulk.operation, "managedDevices.wipe");
            (eval.allowed(), bulk.devices, bulk.refused.clone())
        };
        assert_eq!(explain(json!([A])), (true, 1, vec![]));
        let refused = vec![B.to_owned()];
        assert_eq!(explain(json!([A, B.to_uppercase()])), (false, 2, refused));
    }

    #[test]
    fn outcomes_come_from_graphs_answer() {
        let body = json!({"value": {"successfulDeviceIds": [A], "notFoundDeviceIds": [B], "failedDeviceIds": [], "notSupportedDeviceIds": ["not-a-guid"]}});
        let out = outcomes(&serde_json::to_vec(&body).unwrap());
        assert_eq!(out.len(), 2);
        assert_eq!(out[A], "successful");
        assert_eq!(out[B], "notFound");
    }
}
