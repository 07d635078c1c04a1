//! A request body checked against an operation's CSDL parameters, as Graph's OData layer
//! checks it: every member a parameter (or, inside a complex value, a property of its type or
//! of the derived type named by `@odata.type`), of its declared type (`Edm.*`, enums,
//! collections, complex types), `null` only where nullable, non-nullable ones present.

use serde_json::{Map, Value};

use super::{Csdl, Member, Operation};

/// Why a body does not fit the CSDL: Graph's message, naming the member, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CsdlViolation(pub String);

/// Deepest nesting followed (the excerpt's types nest three levels).
const MAX_DEPTH: usize = 8;

impl Csdl {
    /// Checks `body` (a JSON object) against `op`'s parameters.
    pub fn check_body(&self, op: &Operation, body: &Value) -> Result<(), CsdlViolation> {
        let Value::Object(members) = body else {
            return Err(violation("The request payload must be a JSON object."));
        };
        for (key, value) in members {
            let param = op.params.iter().find(|p| p.name == *key).ok_or_else(|| {
                violation(format!(
                    "The parameter '{}' in the request payload is not a valid parameter for the operation '{}'.",
                    clip(key),
                    op.name
                ))
            })?;
            self.check_value(param, value, key, 0)?;
        }
        for p in op.params.iter().filter(|p| !p.nullable) {
            if !members.contains_key(&p.name) {
                return Err(violation(format!(
                    "The parameter '{}' is missing from the request payload; it is not nullable.",
                    p.name
                )));
            }
        }
        Ok(())
    }

    fn check_value(
        &self,
        member: &Member,
        value: &Value,
        path: &str,
        depth: usize,
    ) -> Result<(), CsdlViolation> {
        if value.is_null() {
            return match member.nullable {
                true => Ok(()),
                false => Err(violation(format!("'{path}' cannot be null."))),
            };
        }
        self.check_typed(&member.ty, value, path, depth)
    }

    fn check_typed(
        &self,
        ty: &str,
        value: &Value,
        path: &str,
        depth: usize,
    ) -> Result<(), CsdlViolation> {
        let wrong = || {
            violation(format!(
                "Cannot convert the value of '{path}' to the expected type '{ty}'."
            ))
        };
        if depth > MAX_DEPTH {
            return Err(violation(format!("'{path}' is nested too deeply.")));
        }
        if let Some(inner) = ty
            .strip_prefix("Collection(")
            .and_then(|t| t.strip_suffix(')'))
        {
            let Value::Array(items) = value else {
                return Err(wrong());
            };
            return items.iter().enumerate().try_for_each(|(i, item)| {
                let at = format!("{path}[{i}]");
                match item {
                    Value::Null => Err(violation(format!("'{at}' cannot be null."))),
                    _ => self.check_typed(inner, item, &at, depth + 1),
                }
            });
        }
        let ok = match ty {
            "Edm.Boolean" => value.is_boolean(),
            "Edm.String" => value.is_string(),
            "Edm.Int32" => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            _ => {
                let name = ty.strip_prefix("graph.").unwrap_or(ty);
                if let Some(members) = self.enum_types.get(name) {
                    value
                        .as_str()
                        .is_some_and(|s| members.iter().any(|m| m == s))
                } else if self.complex_types.contains_key(name) {
                    let Value::Object(object) = value else {
                        return Err(wrong());
                    };
                    return self.check_complex(name, object, path, depth);
                } else {
                    return Err(violation(format!(
                        "The type '{ty}' of '{path}' is not in the emulator's CSDL."
                    )));
                }
            }
        };
        if ok { Ok(()) } else { Err(wrong()) }
    }

    fn check_complex(
        &self,
        declared: &str,
        object: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<(), CsdlViolation> {
        let actual = match object.get("@odata.type") {
            None => declared.to_owned(),
            Some(Value::String(t)) => self.derived_type(declared, t).ok_or_else(|| {
                violation(format!(
                    "A type named '{}' could not be resolved by the model as a type derived from 'microsoft.graph.{declared}' at '{path}'.",
                    clip(t)
                ))
            })?,
            Some(_) => return Err(violation(format!("'{path}.@odata.type' must be a string."))),
        };
        let props = self.properties(&actual);
        for (key, value) in object.iter().filter(|(k, _)| *k != "@odata.type") {
            let prop = props.iter().find(|p| p.name == *key).ok_or_else(|| {
                violation(format!(
                    "The property '{}' does not exist on type 'microsoft.graph.{actual}'. Make sure to only use property names that are defined by the type.",
                    clip(key)
                ))
            })?;
            self.check_value(prop, value, &format!("{path}.{key}"), depth + 1)?;
        }
        for p in props.iter().filter(|p| !p.nullable) {
            if !object.contains_key(&p.name) {
                return Err(violation(format!(
                    "The property '{path}.{}' is missing; it is not nullable.",
                    p.name
                )));
            }
        }
        Ok(())
    }

    /// The complex type an `@odata.type` names, if it is `declared` or derives from it.
    /// Graph's SDKs send `#microsoft.graph.x` or `microsoft.graph.x`, matched ignoring case.
    fn derived_type(&self, declared: &str, odata_type: &str) -> Option<String> {
        let wanted = odata_type.strip_prefix('#').unwrap_or(odata_type);
        let name = wanted
            .get(..16)
            .filter(|ns| ns.eq_ignore_ascii_case("microsoft.graph."))
            .and_then(|_| wanted.get(16..))?;
        let found = self
            .complex_types
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))?;
        self.derives_from(found, declared).then(|| found.clone())
    }
}

fn violation(message: impl Into<String>) -> CsdlViolation {
    CsdlViolation(message.into())
}

fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(100).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::microsoft::ApiVersion;

    fn check(version: ApiVersion, op: &str, body: Value) -> Result<(), CsdlViolation> {
        let csdl = Csdl::of(version).unwrap();
        csdl.check_body(&csdl.operations[op], &body)
    }

    #[test]
    fn bodies_that_fit_pass() {
        let v1 = ApiVersion::V1;
        check(v1, "retire", json!({})).unwrap();
        check(
            v1,
            "wipe",
            json!({"keepUserData": true, "macOsUnlockCode": null}),
        )
        .unwrap();
        check(v1, "cleanWindowsDevice", json!({"keepUserData": false})).unwrap();
        check(
            v1,
            "updateWindowsDeviceAccount",
            json!({"updateWindowsDeviceAccountActionParameter": {
                "@odata.type": "microsoft.graph.updateWindowsDeviceAccountActionParameter",
                "deviceAccount": {"@odata.type": "#Microsoft.Graph.windowsDeviceAzureADAccount",
                                  "password": "p", "userPrincipalName": "a@b.c"}}}),
        )
        .unwrap();
        let beta = ApiVersion::Beta;
        check(beta, "wipe", json!({"obliterationBehavior": "always"})).unwrap();
        check(
            beta,
            "executeAction",
            json!({"actionName": "wipe", "deviceIds": ["a", "b"], "keepUserData": true}),
        )
        .unwrap();
        check(
            beta,
            "createDeviceLogCollectionRequest",
            json!({"templateType": {"templateType": "predefined"}}),
        )
        .unwrap();
    }

    #[test]
    fn misfits_are_named() {
        let v1 = ApiVersion::V1;
        let cases = [
            (
                v1,
                "retire",
                json!({"keepUserData": true}),
                "'keepUserData'",
            ),
            (v1, "wipe", json!({"keepUserData": "yes"}), "'keepUserData'"),
            (
                v1,
                "cleanWindowsDevice",
                json!({}),
                "'keepUserData' is missing",
            ),
            (
                v1,
                "cleanWindowsDevice",
                json!({"keepUserData": null}),
                "cannot be null",
            ),
            (
                v1,
                "wipe",
                json!({"obliterationBehavior": "always"}),
                "'obliterationBehavior'",
            ),
            (
                v1,
                "updateWindowsDeviceAccount",
                json!({"updateWindowsDeviceAccountActionParameter": {"deviceAccount": {"userPrincipalName": "a@b.c"}}}),
                "'userPrincipalName' does not exist on type 'microsoft.graph.windowsDeviceAccount'",
            ),
            (
                v1,
                "updateWindowsDeviceAccount",
                json!({"updateWindowsDeviceAccountActionParameter": {"deviceAccount": {"@odata.type": "microsoft.graph.user"}}}),
                "'microsoft.graph.user'",
            ),
            (v1, "wipe", json!([]), "JSON object"),
            (
                ApiVersion::Beta,
                "wipe",
                json!({"obliterationBehavior": "sometimes"}),
                "'obliterationBehavior'",
            ),
            (
                ApiVersion::Beta,
                "executeAction",
                json!({"deviceIds": ["a"]}),
                "'actionName' is missing",
            ),
            (
                ApiVersion::Beta,
                "executeAction",
                json!({"actionName": "wipe", "deviceIds": [1]}),
                "'deviceIds[0]'",
            ),
        ];
        for (version, op, body, part) in cases {
            let e = check(version, op, body.clone()).unwrap_err().0;
            assert!(e.contains(part), "{op} {body}: {e}");
        }
    }
}
