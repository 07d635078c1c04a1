//! Request-body schemas and the strict validator for them: duplicate keys, deep nesting,
//! unknown members, wrong types and unknown `@odata.type`s are refused. Errors name the
//! offending member, never its value (values may be passwords). What the gateway refuses
//! on top of the CSDL (nulls, control characters, malformed addresses) is in [`screen`].

pub mod screen;

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::secret::Secret;

/// Deepest JSON nesting accepted in a request body.
pub const MAX_DEPTH: usize = 16;

/// A property's type, as in Graph's CSDL.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// `Edm.Boolean`
    Bool,
    /// `Edm.String`
    String,
    /// A CSDL enum type: a string, one of these member names (exactly).
    Enum(&'static [&'static str]),
    /// `Collection(Edm.String)`: an array of strings (not a policy parameter: a bulk
    /// action's device ids, decided device by device).
    StringList,
    /// A complex type, possibly with derived types chosen by `@odata.type`.
    Complex(&'static ComplexType),
}

/// A CSDL property or action parameter.
#[derive(Debug, Clone, Copy)]
pub struct Prop {
    /// Wire name, case-sensitive.
    pub name: &'static str,
    /// Its type.
    pub ty: Ty,
    /// Whether the value is a secret (kept only as a redaction in records and logs).
    pub secret: bool,
    /// CSDL `Nullable="false"`: must be present and not null.
    pub required: bool,
    /// An email address (`Edm.String` in the CSDL, an address in meaning): the gateway
    /// accepts exactly one address (see [`screen::is_address`]).
    pub address: bool,
}

impl Prop {
    /// An optional, nullable, non-secret property.
    pub const fn new(name: &'static str, ty: Ty) -> Self {
        Prop {
            name,
            ty,
            secret: false,
            required: false,
            address: false,
        }
    }

    /// An optional, nullable property whose value is a secret.
    pub const fn secret(name: &'static str, ty: Ty) -> Self {
        Prop {
            secret: true,
            ..Prop::new(name, ty)
        }
    }

    /// A property that must be present and non-null.
    pub const fn required(name: &'static str, ty: Ty) -> Self {
        Prop {
            required: true,
            ..Prop::new(name, ty)
        }
    }

    /// This string property, holding an email address.
    pub const fn address(self) -> Self {
        Prop {
            address: true,
            ..self
        }
    }
}

/// A CSDL complex type.
#[derive(Debug)]
pub struct ComplexType {
    /// Qualified name, e.g. `microsoft.graph.windowsDeviceAccount`.
    pub name: &'static str,
    /// All properties, inherited ones included.
    pub props: &'static [Prop],
    /// Types derived from this one, selectable with `@odata.type`.
    pub derived: &'static [&'static ComplexType],
}

impl ComplexType {
    /// This type or a type derived from it, by `@odata.type` value (with or without `#`,
    /// case-insensitive, as the Graph SDKs match it).
    pub fn resolve(&'static self, odata_type: &str) -> Option<&'static ComplexType> {
        let wanted = odata_type.strip_prefix('#').unwrap_or(odata_type);
        if self.name.eq_ignore_ascii_case(wanted) {
            return Some(self);
        }
        self.derived.iter().find_map(|d| d.resolve(wanted))
    }
}

/// A validated parameter value, secrets already wrapped.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// JSON `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A non-secret string.
    String(String),
    /// A secret string: printable only as a redaction.
    Secret(Secret),
    /// The (canonical) type name a complex value was sent as.
    Type(&'static str),
}

/// The parameters of one request, flattened to dotted paths (`deviceAccount.password`).
/// For wrapped actions the wrapper's name is left out of the paths.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(pub Vec<(String, ParamValue)>);

impl Params {
    /// The value at `path`, if sent.
    pub fn get(&self, path: &str) -> Option<&ParamValue> {
        self.0.iter().find(|(p, _)| p == path).map(|(_, v)| v)
    }

    /// The parameters as a flat JSON object, secrets shown only as a redaction marker.
    pub fn to_redacted_json(&self) -> Value {
        let members = self.0.iter().map(|(path, v)| {
            let value = match v {
                ParamValue::Null => Value::Null,
                ParamValue::Bool(b) => Value::Bool(*b),
                ParamValue::String(s) => Value::String(s.clone()),
                ParamValue::Secret(_) => Value::String(crate::secret::REDACTED.to_owned()),
                ParamValue::Type(t) => Value::String((*t).to_owned()),
            };
            (path.clone(), value)
        });
        Value::Object(members.collect())
    }
}

/// One parameter path a policy condition may name, with what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamPath {
    /// Dotted path, as in [`Params`].
    pub path: String,
    /// Whether values at this path are secrets.
    pub secret: bool,
    /// Whether values are booleans (otherwise strings or type names).
    pub boolean: bool,
    /// Whether values are email addresses.
    pub address: bool,
}

/// Every parameter path an action's body can carry (derived types' members included).
pub fn param_paths(params: &'static [Prop], wrapper: Option<&'static str>) -> Vec<ParamPath> {
    let mut out = Vec::new();
    for prop in params {
        let prefix = if wrapper == Some(prop.name) {
            ""
        } else {
            prop.name
        };
        match prop.ty {
            Ty::Complex(ty) if prefix.is_empty() => complex_paths(ty, "", &mut out),
            _ => leaf_paths(prop, prefix, &mut out),
        }
    }
    out
}

fn leaf_paths(prop: &Prop, path: &str, out: &mut Vec<ParamPath>) {
    match prop.ty {
        Ty::Complex(ty) => complex_paths(ty, path, out),
        Ty::StringList => {}
        Ty::Bool | Ty::String | Ty::Enum(_) => {
            if !out.iter().any(|p| p.path == path) {
                out.push(ParamPath {
                    path: path.to_owned(),
                    secret: prop.secret,
                    boolean: matches!(prop.ty, Ty::Bool),
                    address: prop.address,
                });
            }
        }
    }
}

fn complex_paths(ty: &'static ComplexType, prefix: &str, out: &mut Vec<ParamPath>) {
    if !prefix.is_empty() {
        let path = join(prefix, "@odata.type");
        if !out.iter().any(|p| p.path == path) {
            out.push(ParamPath {
                path,
                secret: false,
                boolean: false,
                address: false,
            });
        }
    }
    for prop in ty.props {
        leaf_paths(prop, &join(prefix, prop.name), out);
    }
    for derived in ty.derived {
        complex_paths(derived, prefix, out);
    }
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// Not JSON, duplicate keys or too deep.
    #[error("the request body is not valid JSON: {0}")]
    Syntax(String),
    /// A member the schema does not have.
    #[error("the property '{0}' does not exist on this action's parameters")]
    UnknownProperty(String),
    /// A member of the wrong JSON type.
    #[error("the property '{path}' must be {expected}")]
    WrongType {
        /// Dotted path of the member.
        path: String,
        /// What was expected.
        expected: &'static str,
    },
    /// An `@odata.type` that is not the declared type or one derived from it.
    #[error("'{path}' has an @odata.type that is not {declared} or a type derived from it")]
    UnknownType {
        /// Dotted path of the object.
        path: String,
        /// The declared type's name.
        declared: &'static str,
    },
    /// A non-nullable parameter was missing or null.
    #[error("the parameter '{0}' is required")]
    Missing(String),
    /// An enum parameter whose value is not one of its members.
    #[error("the parameter '{path}' must be one of: {allowed}")]
    NotAMember {
        /// Dotted path of the member.
        path: String,
        /// The members, comma-separated.
        allowed: String,
    },
    /// An action whose parameters are wrapped in one member, sent without it.
    #[error(
        "the parameters must be wrapped in '{wrapper}': send {{\"{wrapper}\": {{...}}}}{}",
        .found.as_ref().map(|m| format!(" ('{m}' belongs inside it)")).unwrap_or_default()
    )]
    MissingWrapper {
        /// The wrapper member's name.
        wrapper: &'static str,
        /// A member of the wrapper that was sent at the top level instead.
        found: Option<&'static str>,
    },
    /// An explicit `null` (gateway rule). Graph does not document what `null` does to an
    /// action parameter (leave the setting, clear it, or take the type's default, such as
    /// `false`), so no policy could say what such a request does. The Graph SDKs leave unset
    /// properties out rather than sending `null`, so nothing legitimate is lost.
    #[error(
        "the parameter '{0}' is null: leave it out instead (graphgate does not forward null parameters)"
    )]
    Null(String),
    /// A string with a control character (gateway rule).
    #[error(
        "the parameter '{0}' contains a control character (control, line-separator and bidirectional-formatting characters are refused)"
    )]
    ControlCharacter(String),
    /// An email parameter that is not exactly one address (gateway rule).
    #[error(
        "the parameter '{0}' must be one email address: local-part@domain, exactly one '@', no spaces, commas, quotes or brackets, ASCII, no trailing dot"
    )]
    NotAnAddress(String),
}

impl SchemaError {
    /// An unknown member, named in the answer only if its name looks like a property name
    /// (see [`screen::shown_name`]).
    fn unknown_property(path: &str) -> SchemaError {
        SchemaError::UnknownProperty(screen::shown_name(path))
    }
}

/// How strictly a body is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rules {
    /// What the CSDL allows: what Graph accepts (the emulator checks this).
    Csdl,
    /// The CSDL and the gateway's own rules (see [`screen`]): what graphgate forwards.
    Gateway,
}

/// Parses `bytes` as JSON, refusing duplicate keys and nesting deeper than [`MAX_DEPTH`].
pub fn parse_strict(bytes: &[u8]) -> Result<Value, SchemaError> {
    #[cfg(test)]
    PARSED.with(|n| n.set(n.get() + 1));
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict { depth: 0 }
        .deserialize(&mut de)
        .map_err(|e| SchemaError::Syntax(e.to_string()))?;
    de.end().map_err(|e| SchemaError::Syntax(e.to_string()))?;
    Ok(value)
}

#[cfg(test)]
thread_local! {
    /// Bodies parsed on this thread, for tests that count them (`admit`'s).
    pub(crate) static PARSED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Validates a body (already parsed) against an action's parameters, as Graph's CSDL
/// defines them (what the emulator, standing for Graph, accepts).
pub fn validate(
    body: &Value,
    params: &'static [Prop],
    wrapper: Option<&'static str>,
) -> Result<Params, SchemaError> {
    validate_with(Rules::Csdl, body, params, wrapper)
}

/// Validates a body the gateway is asked to forward: the CSDL, and graphgate's own rules on
/// values (no `null`s, no control characters, one address per email parameter) and a
/// wrapped action's wrapper present, so that the policy decides on plain values.
pub fn validate_request(
    body: &Value,
    params: &'static [Prop],
    wrapper: Option<&'static str>,
) -> Result<Params, SchemaError> {
    validate_with(Rules::Gateway, body, params, wrapper)
}

fn validate_with(
    rules: Rules,
    body: &Value,
    params: &'static [Prop],
    wrapper: Option<&'static str>,
) -> Result<Params, SchemaError> {
    let Value::Object(members) = body else {
        return Err(SchemaError::WrongType {
            path: "(body)".into(),
            expected: "a JSON object",
        });
    };
    let mut out = Params::default();
    for (key, value) in members {
        let prop = params
            .iter()
            .find(|p| p.name == key)
            .ok_or_else(|| unknown_top_level(key, params, wrapper))?;
        let path = if wrapper == Some(prop.name) {
            String::new()
        } else {
            key.clone()
        };
        check(rules, prop, value, &path, &mut out)?;
    }
    for p in params.iter().filter(|p| p.required) {
        if members.get(p.name).is_none_or(Value::is_null) {
            return Err(SchemaError::Missing(p.name.to_owned()));
        }
    }
    match wrapper {
        // Without its wrapper, a wrapped action carries no parameters at all: nothing a
        // caller means to send through a gateway for privileged actions.
        Some(w) if rules == Rules::Gateway && !members.contains_key(w) => {
            Err(SchemaError::MissingWrapper {
                wrapper: w,
                found: None,
            })
        }
        _ => Ok(out),
    }
}

/// A top-level member that is no parameter: if it is a member of the wrapper, the caller
/// left the wrapper out, so say that rather than naming the member as unknown.
fn unknown_top_level(
    key: &str,
    params: &'static [Prop],
    wrapper: Option<&'static str>,
) -> SchemaError {
    let wrapped = wrapper.and_then(|w| {
        let Ty::Complex(ty) = params.iter().find(|p| p.name == w)?.ty else {
            return None;
        };
        let inner = ty.props.iter().find(|p| p.name == key)?;
        Some((w, inner.name))
    });
    match wrapped {
        Some((wrapper, member)) => SchemaError::MissingWrapper {
            wrapper,
            found: Some(member),
        },
        None => SchemaError::unknown_property(key),
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn check(
    rules: Rules,
    prop: &Prop,
    value: &Value,
    path: &str,
    out: &mut Params,
) -> Result<(), SchemaError> {
    let wrong = |expected| SchemaError::WrongType {
        path: display_path(path, prop),
        expected,
    };
    let param = match (prop.ty, value) {
        (_, Value::Null) if rules == Rules::Gateway => {
            return Err(SchemaError::Null(display_path(path, prop)));
        }
        (_, Value::Null) if !prop.required => ParamValue::Null,
        (Ty::Bool, Value::Bool(b)) => ParamValue::Bool(*b),
        (Ty::String, Value::String(s)) => {
            if rules == Rules::Gateway {
                screen::string(prop, s, &display_path(path, prop))?;
            }
            if prop.secret {
                ParamValue::Secret(Secret::new(s.as_str()))
            } else {
                ParamValue::String(s.clone())
            }
        }
        (Ty::Enum(members), Value::String(s)) => {
            if !members.contains(&s.as_str()) {
                return Err(SchemaError::NotAMember {
                    path: display_path(path, prop),
                    allowed: members.join(", "),
                });
            }
            ParamValue::String(s.clone())
        }
        (Ty::StringList, Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(s) if rules == Rules::Gateway => {
                        screen::string(prop, s, &display_path(path, prop))?;
                    }
                    Value::String(_) => {}
                    _ => return Err(wrong("an array of strings")),
                }
            }
            return Ok(());
        }
        (Ty::Complex(ty), Value::Object(members)) => {
            return check_complex(rules, ty, members, path, out);
        }
        (Ty::Bool, _) => return Err(wrong("a boolean")),
        (Ty::String | Ty::Enum(_), _) => return Err(wrong("a string")),
        (Ty::StringList, _) => return Err(wrong("an array of strings")),
        (Ty::Complex(_), _) => return Err(wrong("an object")),
    };
    out.0.push((path.to_owned(), param));
    Ok(())
}

fn display_path(path: &str, prop: &Prop) -> String {
    if path.is_empty() {
        prop.name.to_owned()
    } else {
        path.to_owned()
    }
}

fn check_complex(
    rules: Rules,
    declared: &'static ComplexType,
    members: &Map<String, Value>,
    path: &str,
    out: &mut Params,
) -> Result<(), SchemaError> {
    let ty = match members.get("@odata.type") {
        None => declared,
        Some(Value::String(t)) => declared
            .resolve(t)
            .ok_or_else(|| SchemaError::UnknownType {
                path: path.to_owned(),
                declared: declared.name,
            })?,
        Some(_) => {
            return Err(SchemaError::WrongType {
                path: join(path, "@odata.type"),
                expected: "a string",
            });
        }
    };
    if members.contains_key("@odata.type") {
        out.0
            .push((join(path, "@odata.type"), ParamValue::Type(ty.name)));
    }
    for (key, value) in members {
        if key == "@odata.type" {
            continue;
        }
        let prop = ty
            .props
            .iter()
            .find(|p| p.name == key)
            .ok_or_else(|| SchemaError::unknown_property(&join(path, key)))?;
        check(rules, prop, value, &join(path, key), out)?;
    }
    for p in ty.props.iter().filter(|p| p.required) {
        if members.get(p.name).is_none_or(Value::is_null) {
            return Err(SchemaError::Missing(join(path, p.name)));
        }
    }
    Ok(())
}

/// A JSON value deserialiser that refuses duplicate keys and deep nesting.
struct Strict {
    depth: usize,
}

impl Strict {
    fn nested<E: de::Error>(&self) -> Result<Strict, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format_args!(
                "nesting deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(Strict {
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(self.nested()?)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.contains_key(&key) {
                // Named only if it looks like a property name, like an unknown member.
                let shown = screen::shown_name(&key);
                return Err(de::Error::custom(format_args!("duplicate key {shown:?}")));
            }
            let value = map.next_value_seed(self.nested()?)?;
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::catalog;

    fn op_validate(body: &str) -> Result<Params, SchemaError> {
        let op = catalog::by_name("managedDevices.updateWindowsDeviceAccount").unwrap();
        validate(&parse_strict(body.as_bytes())?, op.params, op.wrapper)
    }

    #[test]
    fn docs_example_is_accepted_and_password_is_a_secret() {
        let p = op_validate(
            r#"{"updateWindowsDeviceAccountActionParameter":{
                "@odata.type":"microsoft.graph.updateWindowsDeviceAccountActionParameter",
                "deviceAccount":{"@odata.type":"microsoft.graph.windowsDeviceAccount","password":"Password value"},
                "passwordRotationEnabled":true,"calendarSyncEnabled":true,
                "deviceAccountEmail":"a@b.c","exchangeServer":"x","sessionInitiationProtocalAddress":"sip:a@b.c"}}"#,
        )
        .unwrap();
        assert_eq!(
            p.get("deviceAccountEmail"),
            Some(&ParamValue::String("a@b.c".into()))
        );
        assert!(matches!(
            p.get("deviceAccount.password"),
            Some(ParamValue::Secret(_))
        ));
        assert!(!format!("{p:?}").contains("Password value"));
    }

    #[test]
    fn derived_types_with_hash_and_any_case() {
        let p = op_validate(
            r##"{"updateWindowsDeviceAccountActionParameter":{"deviceAccount":
                {"@odata.type":"#Microsoft.Graph.WindowsDeviceAzureADAccount","password":"p","userPrincipalName":"r@c"}}}"##,
        )
        .unwrap();
        assert_eq!(
            p.get("deviceAccount.@odata.type"),
            Some(&ParamValue::Type(
                "microsoft.graph.windowsDeviceAzureADAccount"
            ))
        );
        // A derived type's member is not allowed on the base type.
        let e = op_validate(
            r#"{"updateWindowsDeviceAccountActionParameter":{"deviceAccount":{"userPrincipalName":"r@c"}}}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            SchemaError::UnknownProperty("deviceAccount.userPrincipalName".into())
        );
    }

    #[test]
    fn an_unknown_key_that_is_not_a_name_is_not_echoed() {
        for body in [
            r#"{"updateWindowsDeviceAccountActionParameter":{"deviceAccount":{"password":"p","Sup3r Secret!":1}}}"#,
            r#"{"updateWindowsDeviceAccountActionParameter":{"hunter2 hunter2":true}}"#,
        ] {
            let e = op_validate(body).unwrap_err().to_string();
            assert!(!e.contains("Secret") && !e.contains("hunter2"), "{e}");
            assert!(e.contains("not shown"), "{e}");
        }
        let e = op_validate(r#"{"updateWindowsDeviceAccountActionParameter":{"bogusName":1}}"#)
            .unwrap_err();
        assert_eq!(e, SchemaError::UnknownProperty("bogusName".into()));
    }

    #[test]
    fn refusals_name_the_member_not_the_value() {
        let cases = [
            (
                r#"{"updateWindowsDeviceAccountActionParameter":{"bogus":1}}"#,
                "bogus",
            ),
            (r#"{"other":{}}"#, "other"),
            (
                r#"{"updateWindowsDeviceAccountActionParameter":{"calendarSyncEnabled":"yes-secret"}}"#,
                "calendarSyncEnabled",
            ),
            (
                r#"{"updateWindowsDeviceAccountActionParameter":{"deviceAccount":{"@odata.type":"microsoft.graph.user"}}}"#,
                "deviceAccount",
            ),
            (
                r#"{"updateWindowsDeviceAccountActionParameter":{"deviceAccount":"s3cret"}}"#,
                "deviceAccount",
            ),
            (r#"[]"#, "(body)"),
        ];
        for (body, name) in cases {
            let msg = op_validate(body).unwrap_err().to_string();
            assert!(msg.contains(name), "{body}: {msg}");
            assert!(!msg.contains("secret"), "{body}: {msg}");
        }
    }

    #[test]
    fn param_paths_cover_derived_types_and_mark_secrets() {
        let op = catalog::by_name("managedDevices.updateWindowsDeviceAccount").unwrap();
        let paths = param_paths(op.params, op.wrapper);
        let names: Vec<&str> = paths.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "deviceAccountEmail",
            "deviceAccount.@odata.type",
            "deviceAccount.password",
            "deviceAccount.userPrincipalName",
            "deviceAccount.domainName",
            "passwordRotationEnabled",
        ] {
            assert!(names.contains(&want), "{want} in {names:?}");
        }
        assert_eq!(
            names
                .iter()
                .filter(|n| **n == "deviceAccount.password")
                .count(),
            1
        );
        assert!(
            paths
                .iter()
                .find(|p| p.path == "deviceAccount.password")
                .unwrap()
                .secret
        );
        assert!(
            paths
                .iter()
                .find(|p| p.path == "calendarSyncEnabled")
                .unwrap()
                .boolean
        );
    }

    #[test]
    fn duplicate_keys_and_deep_nesting_are_syntax_errors() {
        let dup = r#"{"updateWindowsDeviceAccountActionParameter":{"exchangeServer":"a","exchangeServer":"b"}}"#;
        assert!(matches!(op_validate(dup), Err(SchemaError::Syntax(m)) if m.contains("duplicate")));
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 2), "]".repeat(MAX_DEPTH + 2));
        assert!(
            matches!(parse_strict(deep.as_bytes()), Err(SchemaError::Syntax(m)) if m.contains("nesting"))
        );
        assert!(parse_strict(b"{} trailing").is_err());
        assert!(parse_strict(b"\xff").is_err());
    }
}
