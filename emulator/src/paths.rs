//! The emulated Graph's own reading of a request path (not the gateway's `route`): the API
//! version, what the path addresses (a device, the devices collection, a user) by Graph's
//! navigation properties, and the operation segment after it, if any. Segments match
//! case-insensitively and the `microsoft.graph.` namespace is optional, as in Graph.

use percent_encoding::percent_decode_str;

use crate::microsoft::ApiVersion;

/// What the path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// One managed device: the last `managedDevices/{id}` (lower-cased).
    Device(String),
    /// `/deviceManagement/managedDevices` (or beta's `comanagedDevices`).
    Devices,
    /// `/users/{id}`.
    User(String),
}

/// A recognised Graph path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GraphPath {
    pub(crate) version: ApiVersion,
    pub(crate) target: Target,
    /// The operation segment, namespace and `()` removed.
    pub(crate) operation: Option<String>,
    /// The operation segment ended in `()` (function-call syntax).
    pub(crate) call_syntax: bool,
}

/// Why a path is not one Graph serves: its message for the 400 (or 404) it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathError {
    /// A segment Graph does not know.
    UnknownSegment(String),
    /// An id that is not of its key's form.
    BadKey(&'static str),
    /// Not a version Graph serves.
    BadVersion(String),
}

impl PathError {
    pub(crate) fn message(&self) -> String {
        match self {
            PathError::UnknownSegment(s) => format!("Resource not found for the segment '{s}'."),
            PathError::BadKey(key) => format!("Invalid key value for the segment '{key}'."),
            PathError::BadVersion(v) => format!("Invalid version: {v}"),
        }
    }
}

/// Reads `path` (without the query).
pub(crate) fn parse(path: &str) -> Result<GraphPath, PathError> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (version, rest) = segs
        .split_first()
        .ok_or_else(|| PathError::BadVersion(String::new()))?;
    let version = ApiVersion::parse(version).ok_or_else(|| PathError::BadVersion(clip(version)))?;
    let (target, used) = target(version, rest)?;
    let (operation, call_syntax) = match &rest[used..] {
        [] => (None, false),
        [op] => {
            let (name, call) = operation_name(op);
            (Some(name), call)
        }
        [_, extra, ..] => return Err(PathError::UnknownSegment(clip(extra))),
    };
    Ok(GraphPath {
        version,
        target,
        operation,
        call_syntax,
    })
}

/// The addressed resource and how many segments name it.
fn target(version: ApiVersion, segs: &[&str]) -> Result<(Target, usize), PathError> {
    let is = |i: usize, lit: &str| segs.get(i).is_some_and(|s| s.eq_ignore_ascii_case(lit));
    let unknown = |i: usize| PathError::UnknownSegment(clip(segs.get(i).copied().unwrap_or("")));
    if is(0, "users") {
        let user = key(segs.get(1), Key::User)?;
        if is(2, "managedDevices") {
            return Ok((Target::Device(key(segs.get(3), Key::Device)?), 4));
        }
        return Ok((Target::User(user), 2));
    }
    if !is(0, "deviceManagement") {
        return Err(unknown(0));
    }
    let devices =
        is(1, "managedDevices") || (version == ApiVersion::Beta && is(1, "comanagedDevices"));
    if devices {
        return match segs.get(2) {
            None => Ok((Target::Devices, 2)),
            // The last segment and not a key: an operation bound to the collection (bulk).
            Some(s) if segs.len() == 3 && !is_guid(s) => Ok((Target::Devices, 2)),
            Some(_) => Ok((Target::Device(key(segs.get(2), Key::Device)?), 3)),
        };
    }
    if !is(1, "detectedApps") {
        return Err(unknown(1));
    }
    key(segs.get(2), Key::DetectedApp)?;
    if !is(3, "managedDevices") {
        return Err(unknown(3));
    }
    let first = key(segs.get(4), Key::Device)?;
    if !is(5, "users") {
        return Ok((Target::Device(first), 5));
    }
    key(segs.get(6), Key::User)?;
    if !is(7, "managedDevices") {
        return Err(unknown(7));
    }
    Ok((Target::Device(key(segs.get(8), Key::Device)?), 9))
}

#[derive(Clone, Copy)]
enum Key {
    Device,
    User,
    DetectedApp,
}

/// A key segment, decoded and checked for its kind's form.
fn key(seg: Option<&&str>, kind: Key) -> Result<String, PathError> {
    let label = match kind {
        Key::Device => "managedDevices",
        Key::User => "users",
        Key::DetectedApp => "detectedApps",
    };
    let decoded = seg
        .and_then(|s| percent_decode_str(s).decode_utf8().ok())
        .ok_or(PathError::BadKey(label))?;
    let ok = match kind {
        Key::Device => is_guid(&decoded),
        Key::User => is_guid(&decoded) || is_principal_name(&decoded),
        Key::DetectedApp => {
            !decoded.is_empty()
                && decoded.len() <= 128
                && decoded
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        }
    };
    if !ok {
        return Err(PathError::BadKey(label));
    }
    Ok(decoded.to_ascii_lowercase())
}

/// The operation segment without `microsoft.graph.` and without a trailing `()`.
fn operation_name(seg: &str) -> (String, bool) {
    const NS: &str = "microsoft.graph.";
    let bare = match seg.get(..NS.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(NS) => &seg[NS.len()..],
        _ => seg,
    };
    match bare.strip_suffix("()") {
        Some(name) => (name.to_owned(), true),
        None => (bare.to_owned(), false),
    }
}

fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_principal_name(s: &str) -> bool {
    s.len() <= 256
        && s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.ends_with('.')
        })
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._-+'".contains(c))
}

fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "0B6F2F1E-1A2B-4C3D-8E9F-00112233AABB";
    const E: &str = "11111111-2222-3333-4444-555555555555";

    #[test]
    fn every_graph_shape() {
        let d = D.to_ascii_lowercase();
        let cases = [
            (
                format!("/v1.0/deviceManagement/managedDevices/{D}/wipe"),
                Target::Device(d.clone()),
                Some("wipe"),
                false,
            ),
            (
                format!(
                    "/beta/DEVICEMANAGEMENT/comanagedDevices/{D}/microsoft.graph.getFileVaultKey()"
                ),
                Target::Device(d.clone()),
                Some("getFileVaultKey"),
                true,
            ),
            (
                format!("/v1.0/deviceManagement/detectedApps/app-1/managedDevices/{D}/retire"),
                Target::Device(d.clone()),
                Some("retire"),
                false,
            ),
            (
                format!(
                    "/v1.0/deviceManagement/detectedApps/a/managedDevices/{E}/users/u@c.com/managedDevices/{D}/retire"
                ),
                Target::Device(d.clone()),
                Some("retire"),
                false,
            ),
            (
                format!("/v1.0/users/u@c.com/managedDevices/{D}/syncDevice"),
                Target::Device(d.clone()),
                Some("syncDevice"),
                false,
            ),
            (
                format!("/v1.0/users/{E}/removeAllDevicesFromManagement"),
                Target::User(E.to_owned()),
                Some("removeAllDevicesFromManagement"),
                false,
            ),
            (
                "/beta/deviceManagement/managedDevices/executeAction".to_owned(),
                Target::Devices,
                Some("executeAction"),
                false,
            ),
            (
                format!("/v1.0/deviceManagement/managedDevices/{D}"),
                Target::Device(d.clone()),
                None,
                false,
            ),
        ];
        for (path, target, op, call) in cases {
            let p = parse(&path).unwrap_or_else(|e| panic!("{path}: {e:?}"));
            assert_eq!(
                (p.target, p.operation.as_deref(), p.call_syntax),
                (target, op, call),
                "{path}"
            );
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(
            parse("/v2/x").unwrap_err(),
            PathError::BadVersion("v2".into())
        );
        assert_eq!(
            parse(&format!("/v1.0/deviceManagement/comanagedDevices/{D}/wipe")).unwrap_err(),
            PathError::UnknownSegment("comanagedDevices".into())
        );
        assert_eq!(
            parse("/v1.0/deviceManagement/managedDevices/nope/wipe").unwrap_err(),
            PathError::BadKey("managedDevices")
        );
        assert_eq!(
            parse(&format!(
                "/v1.0/deviceManagement/managedDevices/{D}/wipe/now"
            ))
            .unwrap_err(),
            PathError::UnknownSegment("now".into())
        );
    }
}
