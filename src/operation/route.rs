//! Operation recognition: turns a Graph-shaped request path into a catalog operation, its
//! target ids and one canonical path. Segments match case-insensitively, as Graph matches
//! them; anything odd (empty or encoded segments, malformed ids) is refused, never guessed.

use http::Method;
use percent_encoding::percent_decode_str;

use crate::operation::catalog::{self, ApiVersion, Operation};

/// Longest request path considered.
pub const MAX_PATH_BYTES: usize = 2048;
/// Most segments in any known path shape, version and action included.
const MAX_SEGMENTS: usize = 12;

/// The kinds of id a path shape carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// An Intune managed-device id: a GUID.
    ManagedDevice,
    /// A detected-app id: an opaque token of letters, digits, `-`, `_`, `.`.
    DetectedApp,
    /// A user id: a GUID or a user principal name.
    User,
}

impl IdKind {
    fn label(self) -> &'static str {
        match self {
            IdKind::ManagedDevice => "managedDeviceId",
            IdKind::DetectedApp => "detectedAppId",
            IdKind::User => "userId",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Seg {
    Lit(&'static str),
    Id(IdKind),
}

/// A path shape binding an action to a managed device.
#[derive(Debug)]
pub struct Shape {
    /// The shape as a route template, for traces and docs.
    pub template: &'static str,
    segs: &'static [Seg],
}

use IdKind::*;
use Seg::*;

/// Every shape that binds a `managedDevice` action (graph-facts §7).
pub static SHAPES: &[Shape] = &[
    Shape {
        template: "/deviceManagement/managedDevices/{managedDeviceId}",
        segs: &[
            Lit("deviceManagement"),
            Lit("managedDevices"),
            Id(ManagedDevice),
        ],
    },
    Shape {
        template: "/deviceManagement/detectedApps/{detectedAppId}/managedDevices/{managedDeviceId}",
        segs: &[
            Lit("deviceManagement"),
            Lit("detectedApps"),
            Id(DetectedApp),
            Lit("managedDevices"),
            Id(ManagedDevice),
        ],
    },
    Shape {
        template: "/deviceManagement/detectedApps/{detectedAppId}/managedDevices/{managedDeviceId}/users/{userId}/managedDevices/{managedDeviceId}",
        segs: &[
            Lit("deviceManagement"),
            Lit("detectedApps"),
            Id(DetectedApp),
            Lit("managedDevices"),
            Id(ManagedDevice),
            Lit("users"),
            Id(User),
            Lit("managedDevices"),
            Id(ManagedDevice),
        ],
    },
    Shape {
        template: "/users/{userId}/managedDevices/{managedDeviceId}",
        segs: &[
            Lit("users"),
            Id(User),
            Lit("managedDevices"),
            Id(ManagedDevice),
        ],
    },
];

/// The API surface a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Graph-compatible: `/v1.0/...`, `/beta/...`.
    Graph,
    /// The simplified internal API: `/api/v1/...` with a flat body.
    Simple,
}

/// Where the simplified internal API lives.
pub const SIMPLE_PREFIX: &str = "/api/v1/";

/// A recognised request: which operation, on what, and where to send it.
#[derive(Debug, Clone)]
pub struct Recognised {
    /// The surface it arrived on.
    pub surface: Surface,
    /// The catalog operation.
    pub op: &'static Operation,
    /// The API version asked for.
    pub version: ApiVersion,
    /// The path shape used.
    pub shape: &'static Shape,
    /// The device the action applies to: the last `managedDevices/{id}` (lower-case GUID).
    pub device_id: String,
    /// Another device the path names, when a shape with two `managedDevices/{id}` segments
    /// carries two different ids (see [`Recognised::one_device`]).
    pub other_device_id: Option<String>,
    /// The user id, where the shape has one.
    pub user_id: Option<String>,
    /// The detected-app id, where the shape has one.
    pub detected_app_id: Option<String>,
    /// The path to forward: `/{version}/{shape with ids}/{action}` in Graph's casing.
    pub canonical_path: String,
}

impl Recognised {
    /// This request, if its path names one device only.
    ///
    /// Graph's own path template
    /// `/detectedApps/{detectedAppId}/managedDevices/{managedDeviceId}/users/{userId}/managedDevices/{managedDeviceId}`
    /// uses the same placeholder twice, yet nothing stops a caller from filling in two
    /// different ids. The policy decides on the last one and the audit records it, but which
    /// device Graph then acts on would be left to Graph's parsing of a path naming both. A
    /// gateway for privileged actions refuses that instead of guessing (it does not rewrite
    /// the path to the single-device shape either: that would silently drop the app and
    /// user the caller scoped the request to). So the policy, the audit record and the
    /// forwarded path always name one and the same device.
    pub fn one_device(self) -> Result<Recognised, RouteError> {
        match self.other_device_id {
            Some(first) => Err(RouteError::TwoDevices {
                first,
                last: self.device_id,
            }),
            None => Ok(self),
        }
    }
}

/// Why a path was not recognised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No catalog operation has this path.
    #[error("no operation graphgate offers matches this path")]
    NotFound,
    /// The operation exists but takes another method.
    #[error("this operation takes POST")]
    MethodNotAllowed,
    /// Empty, encoded or over-long segments.
    #[error("malformed request path: {0}")]
    Malformed(&'static str),
    /// The path is longer than [`MAX_PATH_BYTES`].
    #[error("request path longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    /// An id in the path is not of its kind's form.
    #[error("'{0}' in the path is malformed")]
    BadId(&'static str),
    /// The path names two different managed devices.
    #[error(
        "the path names two different managed devices ({first} and {last}); graphgate forwards a request for one device only: use the same id in both places, or /deviceManagement/managedDevices/{{id}}"
    )]
    TwoDevices {
        /// The first `managedDevices/{id}` of the path.
        first: String,
        /// The last one, which the policy would have been asked about.
        last: String,
    },
}

/// Recognises `path` (without the query) under `/v1.0` or `/beta`.
pub fn recognise(method: &Method, path: &str) -> Result<Recognised, RouteError> {
    if path.len() > MAX_PATH_BYTES {
        return Err(RouteError::TooLong);
    }
    let rest = path
        .strip_prefix('/')
        .ok_or(RouteError::Malformed("must start with '/'"))?;
    let segs: Vec<&str> = rest.split('/').take(MAX_SEGMENTS + 1).collect();
    if segs.len() > MAX_SEGMENTS {
        return Err(RouteError::NotFound);
    }
    if segs.iter().any(|s| s.is_empty()) {
        return Err(RouteError::Malformed(
            "empty path segment ('//' or a trailing '/')",
        ));
    }
    let [version, middle @ .., action] = segs.as_slice() else {
        return Err(RouteError::NotFound);
    };
    let version = ApiVersion::parse(version).ok_or(RouteError::NotFound)?;
    let shape = SHAPES
        .iter()
        .find(|s| literal_match(s.segs, middle))
        .ok_or(RouteError::NotFound)?;
    let op = action_name(action)
        .and_then(catalog::by_action)
        .filter(|op| op.versions.contains(&version))
        .ok_or(RouteError::NotFound)?;
    if method != Method::POST {
        return Err(RouteError::MethodNotAllowed);
    }
    build(op, version, shape, middle)
}

/// Recognises a simplified-API path: `/api/v1/managedDevices/{managedDeviceId}/{action}`.
/// It stands for the Graph v1.0 request on the first path shape.
pub fn recognise_simple(method: &Method, path: &str) -> Result<Recognised, RouteError> {
    if path.len() > MAX_PATH_BYTES {
        return Err(RouteError::TooLong);
    }
    let rest = path
        .strip_prefix(SIMPLE_PREFIX)
        .ok_or(RouteError::NotFound)?;
    let segs: Vec<&str> = rest.split('/').take(4).collect();
    let [collection, id, action] = segs.as_slice() else {
        return Err(RouteError::NotFound);
    };
    if !collection.eq_ignore_ascii_case("managedDevices") {
        return Err(RouteError::NotFound);
    }
    let op = catalog::by_action(action)
        .filter(|op| op.simple.is_some())
        .ok_or(RouteError::NotFound)?;
    if method != Method::POST {
        return Err(RouteError::MethodNotAllowed);
    }
    let shape = &SHAPES[0];
    let mut recognised = build(
        op,
        ApiVersion::V1,
        shape,
        &["deviceManagement", "managedDevices", id],
    )?;
    recognised.surface = Surface::Simple;
    Ok(recognised)
}

fn literal_match(shape: &[Seg], segs: &[&str]) -> bool {
    shape.len() == segs.len()
        && shape.iter().zip(segs).all(|(want, got)| match want {
            Lit(lit) => lit.eq_ignore_ascii_case(got),
            Id(_) => true,
        })
}

/// The action segment without its optional `microsoft.graph.` namespace.
fn action_name(segment: &str) -> Option<&str> {
    const NS: &str = "microsoft.graph.";
    match segment.get(..NS.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(NS) => segment.get(NS.len()..),
        _ => Some(segment),
    }
}

fn build(
    op: &'static Operation,
    version: ApiVersion,
    shape: &'static Shape,
    segs: &[&str],
) -> Result<Recognised, RouteError> {
    let mut canonical = String::with_capacity(160);
    canonical.push('/');
    canonical.push_str(version.as_str());
    let (mut device_id, mut user_id, mut detected_app_id) = (None, None, None);
    let mut first_device_id = None;
    for (want, got) in shape.segs.iter().zip(segs) {
        canonical.push('/');
        match want {
            Lit(lit) => canonical.push_str(lit),
            Id(kind) => {
                let id = parse_id(*kind, got)?;
                canonical.push_str(&id);
                match kind {
                    ManagedDevice => {
                        first_device_id.get_or_insert_with(|| id.clone());
                        device_id = Some(id);
                    }
                    User => user_id = Some(id),
                    DetectedApp => detected_app_id = Some(id),
                }
            }
        }
    }
    canonical.push('/');
    canonical.push_str(op.action);
    let device_id = device_id.ok_or(RouteError::NotFound)?;
    let other_device_id = first_device_id.filter(|first| *first != device_id);
    Ok(Recognised {
        surface: Surface::Graph,
        op,
        version,
        shape,
        device_id,
        other_device_id,
        user_id,
        detected_app_id,
        canonical_path: canonical,
    })
}

/// Decodes and checks one id; the result needs no re-encoding in a path.
fn parse_id(kind: IdKind, raw: &str) -> Result<String, RouteError> {
    let bad = RouteError::BadId(kind.label());
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| bad.clone())?;
    let ok = match kind {
        ManagedDevice => is_guid(&decoded),
        User => is_guid(&decoded) || is_upn(&decoded),
        DetectedApp => {
            (1..=128).contains(&decoded.len())
                && decoded
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && decoded.chars().any(|c| c.is_ascii_alphanumeric())
        }
    };
    if !ok {
        return Err(bad);
    }
    Ok(if is_guid(&decoded) {
        decoded.to_ascii_lowercase()
    } else {
        decoded.into_owned()
    })
}

/// A hyphenated GUID, `8-4-4-4-12` hex digits.
pub fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_upn(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= 256
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+'".contains(c))
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = "0B6F2F1E-1A2B-4C3D-8E9F-00112233AABB";
    const DEV2: &str = "11111111-2222-3333-4444-555555555555";

    fn post(path: &str) -> Result<Recognised, RouteError> {
        recognise(&Method::POST, path)
    }

    #[test]
    fn every_shape_and_the_namespaced_action() {
        let cases = [
            format!("/v1.0/deviceManagement/managedDevices/{DEV}/updateWindowsDeviceAccount"),
            format!(
                "/beta/deviceManagement/detectedApps/app-1/managedDevices/{DEV}/updateWindowsDeviceAccount"
            ),
            format!(
                "/v1.0/deviceManagement/detectedApps/app-1/managedDevices/{DEV2}/users/room@contoso.com/managedDevices/{DEV}/updateWindowsDeviceAccount"
            ),
            format!(
                "/v1.0/users/{DEV2}/managedDevices/{DEV}/microsoft.graph.updateWindowsDeviceAccount"
            ),
            format!(
                "/V1.0/DEVICEMANAGEMENT/manageddevices/{DEV}/Microsoft.Graph.UPDATEWINDOWSDEVICEACCOUNT"
            ),
        ];
        for path in &cases {
            let r = post(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(r.op.name, "managedDevices.updateWindowsDeviceAccount");
            assert_eq!(r.device_id, DEV.to_ascii_lowercase(), "{path}");
            assert!(r.canonical_path.ends_with("/updateWindowsDeviceAccount"));
        }
        assert_eq!(
            post(&cases[4]).unwrap().canonical_path,
            format!(
                "/v1.0/deviceManagement/managedDevices/{}/updateWindowsDeviceAccount",
                DEV.to_ascii_lowercase()
            )
        );
        let r = post(&cases[2]).unwrap();
        assert_eq!(r.user_id.as_deref(), Some("room@contoso.com"));
        assert_eq!(r.detected_app_id.as_deref(), Some("app-1"));
    }

    #[test]
    fn a_path_naming_two_devices_is_refused_and_one_device_twice_is_not() {
        let shape3 = |first: &str, last: &str| {
            format!(
                "/v1.0/deviceManagement/detectedApps/app-1/managedDevices/{first}/users/room@contoso.com/managedDevices/{last}/updateWindowsDeviceAccount"
            )
        };
        let two = post(&shape3(DEV2, DEV)).unwrap();
        assert_eq!(two.device_id, DEV.to_ascii_lowercase());
        assert_eq!(two.other_device_id.as_deref(), Some(DEV2));
        let err = two.one_device().unwrap_err();
        assert_eq!(
            err,
            RouteError::TwoDevices {
                first: DEV2.to_owned(),
                last: DEV.to_ascii_lowercase()
            }
        );
        let text = err.to_string();
        assert!(
            text.contains(DEV2) && text.contains(&DEV.to_ascii_lowercase()),
            "{text}"
        );

        // The same device in both places (in any case) is one device: nothing is refused
        // and the forwarded path names that device only.
        let same = post(&shape3(&DEV.to_ascii_lowercase(), DEV))
            .unwrap()
            .one_device()
            .unwrap();
        assert_eq!(same.other_device_id, None);
        let dev = DEV.to_ascii_lowercase();
        assert_eq!(
            same.canonical_path,
            format!(
                "/v1.0/deviceManagement/detectedApps/app-1/managedDevices/{dev}/users/room@contoso.com/managedDevices/{dev}/updateWindowsDeviceAccount"
            )
        );
        for single in [
            format!("/v1.0/deviceManagement/managedDevices/{DEV}/updateWindowsDeviceAccount"),
            format!("/v1.0/users/{DEV2}/managedDevices/{DEV}/updateWindowsDeviceAccount"),
        ] {
            assert!(post(&single).unwrap().one_device().is_ok(), "{single}");
        }
    }

    #[test]
    fn simplified_paths_stand_for_the_graph_v1_request() {
        let r = post(&format!(
            "/api/v1/managedDevices/{DEV}/updateWindowsDeviceAccount"
        ))
        .unwrap_err();
        assert_eq!(
            r,
            RouteError::NotFound,
            "the Graph recogniser does not take /api paths"
        );
        let r = recognise_simple(
            &Method::POST,
            &format!("/api/v1/managedDevices/{DEV}/updateWindowsDeviceAccount"),
        )
        .unwrap();
        assert_eq!(r.surface, Surface::Simple);
        assert_eq!(
            r.canonical_path,
            format!(
                "/v1.0/deviceManagement/managedDevices/{}/updateWindowsDeviceAccount",
                DEV.to_ascii_lowercase()
            )
        );
        assert_eq!(
            recognise_simple(
                &Method::POST,
                "/api/v1/managedDevices/nope/updateWindowsDeviceAccount"
            )
            .unwrap_err(),
            RouteError::BadId("managedDeviceId")
        );
        assert_eq!(
            recognise_simple(&Method::POST, &format!("/api/v1/managedDevices/{DEV}/wipe"))
                .unwrap_err(),
            RouteError::NotFound
        );
        assert_eq!(
            recognise_simple(
                &Method::POST,
                &format!("/api/v1/managedDevices/{DEV}/updateWindowsDeviceAccount/x")
            )
            .unwrap_err(),
            RouteError::NotFound
        );
        assert_eq!(
            recognise_simple(
                &Method::GET,
                &format!("/api/v1/managedDevices/{DEV}/updateWindowsDeviceAccount")
            )
            .unwrap_err(),
            RouteError::MethodNotAllowed
        );
    }

    #[test]
    fn refusals() {
        let a = "updateWindowsDeviceAccount";
        assert_eq!(
            post(&format!("/v2.0/deviceManagement/managedDevices/{DEV}/{a}")).unwrap_err(),
            RouteError::NotFound
        );
        assert_eq!(
            post(&format!(
                "/v1.0/deviceManagement/managedDevices/{DEV}/wipeAll"
            ))
            .unwrap_err(),
            RouteError::NotFound
        );
        assert_eq!(
            post(&format!(
                "/v1.0/deviceManagement/managedDevices/not-a-guid/{a}"
            ))
            .unwrap_err(),
            RouteError::BadId("managedDeviceId")
        );
        assert_eq!(
            post(&format!("/v1.0/deviceManagement/managedDevices/{DEV}/{a}/")).unwrap_err(),
            RouteError::Malformed("empty path segment ('//' or a trailing '/')")
        );
        assert!(matches!(
            post(&format!("/v1.0//deviceManagement/managedDevices/{DEV}/{a}")),
            Err(RouteError::Malformed(_))
        ));
        assert_eq!(
            post(&format!(
                "/v1.0/deviceManagement/managedDevices/..%2f{DEV}/{a}"
            ))
            .unwrap_err(),
            RouteError::BadId("managedDeviceId")
        );
        assert_eq!(
            post(&format!(
                "/v1.0/deviceManagement%2fmanagedDevices/{DEV}/{a}"
            ))
            .unwrap_err(),
            RouteError::NotFound
        );
        assert_eq!(
            post(&format!(
                "/v1.0/deviceManagement/managedDevices;x=1/{DEV}/{a}"
            ))
            .unwrap_err(),
            RouteError::NotFound
        );
        assert_eq!(
            post(&format!("/v1.0/users/..%5c/managedDevices/{DEV}/{a}")).unwrap_err(),
            RouteError::BadId("userId")
        );
        assert_eq!(
            recognise(
                &Method::GET,
                &format!("/v1.0/deviceManagement/managedDevices/{DEV}/{a}")
            )
            .unwrap_err(),
            RouteError::MethodNotAllowed
        );
        assert_eq!(
            post(&"/a".repeat(MAX_PATH_BYTES)).unwrap_err(),
            RouteError::TooLong
        );
        assert_eq!(post("/v1.0").unwrap_err(), RouteError::NotFound);
        assert_eq!(
            post("").unwrap_err(),
            RouteError::Malformed("must start with '/'")
        );
    }
}
