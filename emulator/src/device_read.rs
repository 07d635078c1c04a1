//! `GET /{version}/deviceManagement/managedDevices/{id}` in the emulated Graph: a device's
//! `id`, `operatingSystem` and `deviceActionResults`, with `$select`, for an app holding
//! a managed-device read permission. This is how a caller (or the gateway) learns whether a
//! queued action was carried out.

use http::StatusCode;
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

use super::graph_reply::{GraphError, Success, intune_message};
use super::records::DeviceRecord;
use super::state::State;
use super::wire::Request;
use crate::microsoft::Cloud;
use crate::microsoft::{ApiVersion, PRIV_OPS};

/// Permissions that let an app read managed devices (any one will do).
pub(crate) const READ_ROLES: [&str; 3] = [
    "DeviceManagementManagedDevices.Read.All",
    "DeviceManagementManagedDevices.ReadWrite.All",
    PRIV_OPS,
];

/// The properties of `managedDevice` the emulator models, in the order it answers them.
const PROPERTIES: [&str; 3] = ["id", "operatingSystem", "deviceActionResults"];

/// The device, with the properties `$select` names (all modelled ones without it).
pub(crate) fn answer(
    state: &State,
    cloud: Cloud,
    req: &Request,
    version: ApiVersion,
    id: &str,
) -> Result<Success, GraphError> {
    let select = selected(req.uri.query().unwrap_or(""))?;
    let host = cloud.endpoints().graph_host;
    let Some(device) = state.device(id) else {
        let url = format!("https://{host}{}", req.uri.path());
        return Err(GraphError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            intune_message(&uuid::Uuid::new_v4().to_string(), &url),
        ));
    };
    let context = match &select {
        Some(list) => format!("({})", list.join(",")),
        None => String::new(),
    };
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(format!(
            "https://{host}/{}/$metadata#deviceManagement/managedDevices{context}/$entity",
            version.as_str()
        )),
    );
    let wanted = select.unwrap_or_else(|| PROPERTIES.iter().map(|p| (*p).to_owned()).collect());
    let arranged = state.results_answer();
    for name in &wanted {
        let value = match (&arranged, name.as_str()) {
            (Some(results), "deviceActionResults") => results.as_ref().clone(),
            _ => property(&device, name),
        };
        body.insert(name.clone(), value);
    }
    Ok(Success::Json(StatusCode::OK, Value::Object(body)))
}

fn property(device: &DeviceRecord, name: &str) -> Value {
    match name {
        "id" => Value::String(device.id.clone()),
        "operatingSystem" => Value::String(device.operating_system.as_str().to_owned()),
        _ => serde_json::to_value(&device.action_results).unwrap_or_default(),
    }
}

/// The `$select` list of `query`, each name one of [`PROPERTIES`] (in Graph's spelling);
/// `None` without `$select`. Other query options are refused, as the emulator models none.
fn selected(query: &str) -> Result<Option<Vec<String>>, GraphError> {
    let bad = |message: String| GraphError::new(StatusCode::BAD_REQUEST, "BadRequest", message);
    let mut select = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode_str(key).decode_utf8_lossy();
        if !key.eq_ignore_ascii_case("$select") {
            return Err(bad(format!(
                "Query option '{}' is not supported by the emulator.",
                clip(&key)
            )));
        }
        let value = percent_decode_str(value).decode_utf8_lossy();
        let mut names = Vec::new();
        for raw in value.split(',').map(str::trim) {
            let name = PROPERTIES
                .iter()
                .find(|p| p.eq_ignore_ascii_case(raw))
                .ok_or_else(|| {
                    bad(format!(
                        "Parsing OData Select and Expand failed: Could not find a property named '{}' on type 'microsoft.graph.managedDevice'.",
                        clip(raw)
                    ))
                })?;
            names.push((*name).to_owned());
        }
        select = Some(names);
    }
    Ok(select)
}

fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_names_modelled_properties_in_any_case() {
        assert_eq!(selected("").unwrap(), None);
        assert_eq!(
            selected("%24select=DeviceActionResults,id").unwrap(),
            Some(vec!["deviceActionResults".to_owned(), "id".to_owned()])
        );
        let e = selected("$select=serialNumber").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("'serialNumber'"), "{}", e.message);
        assert!(selected("$filter=x").is_err());
    }
}
