//! JWT callers in `policy.yaml`: the trusted issuers (`jwt_issuers`: pinned audiences, where
//! their keys come from, the algorithms allowed, clock leeway and key refresh) and the callers
//! they vouch for (`jwt: {issuer, subject}` or `jwt: {issuer, claims: {...}}`). Parsed here,
//! validated with every problem reported, and indexed so that a token names at most one caller.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::issues::Issues;

/// One `jwt_issuers` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JwtIssuerEntry {
    pub issuer: Spanned<String>,
    pub audiences: Spanned<Vec<Spanned<String>>>,
    pub keys: Spanned<JwtKeysEntry>,
    #[serde(default)]
    pub algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub leeway_secs: Option<Spanned<u64>>,
    #[serde(default)]
    pub refresh_secs: Option<Spanned<u64>>,
    #[serde(default)]
    pub unknown_kid_refresh_secs: Option<Spanned<u64>>,
    #[serde(default)]
    pub fetch_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub pin_jwks_host: Option<bool>,
}

/// Where an issuer's keys come from, as written: exactly one of the three.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JwtKeysEntry {
    #[serde(default)]
    pub discovery: Option<String>,
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
}

/// A caller's `jwt` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JwtCallerEntry {
    pub issuer: String,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub claims: Option<BTreeMap<String, String>>,
}

/// Where an issuer's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// An OpenID Connect discovery document (its `issuer` must be the configured one); its
    /// `jwks_uri` is then fetched.
    Discovery(String),
    /// A JSON Web Key Set at this HTTPS URL.
    JwksUrl(String),
    /// A JSON Web Key Set (or SPIFFE trust bundle) in this file, re-read on refresh: for
    /// air-gapped clusters and SPIFFE bundles.
    File(PathBuf),
}

/// A trusted token issuer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JwtIssuer {
    /// The `iss` value, matched exactly; for a SPIFFE trust domain, `spiffe://<domain>`.
    pub issuer: String,
    /// Accepted `aud` values (a token must carry at least one, exactly).
    pub audiences: Vec<String>,
    /// Where the keys come from.
    pub keys: KeySource,
    /// Algorithms accepted (RS256, PS256, ES256 only).
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Cached keys are refreshed (in the background) once this old.
    pub refresh: Duration,
    /// At most one refresh per this interval is caused by tokens with unknown key ids.
    pub unknown_kid_refresh: Duration,
    /// Longest a key fetch (each HTTP exchange) may take.
    pub fetch_timeout: Duration,
    /// Whether the `jwks_uri` a discovery document names must be on the issuer's host or
    /// the discovery document's (for Entra, any authority host of the same cloud): on by
    /// default for Entra issuers (`pin_jwks_host`).
    pub pin_jwks_host: bool,
}

impl JwtIssuer {
    /// Whether a `jwks_uri` on `host`, named by the discovery document at `discovery`, may
    /// be fetched: always when unpinned; pinned, only on the issuer's host, the discovery
    /// document's, or (for Entra) an authority host of the same cloud.
    pub fn jwks_host_allowed(&self, discovery: &str, host: &str) -> bool {
        if !self.pin_jwks_host {
            return true;
        }
        let mut allowed: Vec<&str> = [url_host(&self.issuer), url_host(discovery)]
            .into_iter()
            .flatten()
            .collect();
        for known in allowed.clone() {
            for cloud in crate::cloud::Cloud::by_login_host(known) {
                let e = cloud.endpoints();
                allowed.push(e.login_host);
                allowed.extend(e.login_aliases);
            }
        }
        allowed.iter().any(|a| a.eq_ignore_ascii_case(host))
    }

    /// The SPIFFE trust domain, if this issuer is one (`spiffe://<domain>`): its tokens are
    /// JWT-SVIDs, identified by their `sub` (the SPIFFE id) rather than by `iss`.
    pub fn spiffe_trust_domain(&self) -> Option<&str> {
        self.issuer.strip_prefix(SPIFFE_SCHEME)
    }
}

const SPIFFE_SCHEME: &str = "spiffe://";

/// Hosts of Entra's v1 token issuers (`https://sts.windows.net/{tenant}/`); v2 issuers are on
/// the clouds' authority hosts (see [`crate::cloud`]).
const ENTRA_V1_ISSUER_HOSTS: [&str; 2] = ["sts.windows.net", "sts.chinacloudapi.cn"];

/// The host of an `https://` URL (without port or user info).
pub fn url_host(url: &str) -> Option<&str> {
    let authority = url
        .strip_prefix("https://")?
        .split(['/', '?', '#'])
        .next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

/// Whether `issuer` is Microsoft Entra's (v1 or v2, any cloud).
pub fn is_entra_issuer(issuer: &str) -> bool {
    url_host(issuer).is_some_and(|host| {
        ENTRA_V1_ISSUER_HOSTS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
            || crate::cloud::Cloud::by_login_host(host).next().is_some()
    })
}

/// The algorithms an issuer may allow: asymmetric signatures whose key type the key set
/// pins (never `none`, never HMAC, whose "key" would be public).
pub const ALLOWED_ALGORITHMS: [Algorithm; 3] =
    [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256];

/// Claims a caller entry may not name: each is checked by the issuer's rules instead (or,
/// like `jti`, is different in every token).
const RESERVED_CLAIMS: [&str; 6] = ["iss", "aud", "exp", "nbf", "iat", "jti"];

/// Entra writes the client's app id as `appid` in v1 tokens and `azp` in v2 ones: a policy
/// may use either name, and the two are one claim.
pub const CLIENT_APP_CLAIMS: [&str; 2] = ["azp", "appid"];

/// A caller's JWT identity: the issuer and the claims a token must carry (names sorted,
/// `appid` written as `azp`, GUID values in lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIdentity {
    /// Index into [`super::Policy::jwt_issuers`].
    pub issuer: usize,
    /// Claim names and values, sorted by name.
    pub claims: Vec<(String, String)>,
}

/// Callers by the claims their tokens carry, per issuer.
#[derive(Debug, Default)]
pub(crate) struct JwtCallers {
    by_issuer: Vec<Vec<ClaimGroup>>,
}

/// The callers of one issuer that name the same set of claims, by their values.
#[derive(Debug)]
struct ClaimGroup {
    names: Vec<String>,
    callers: HashMap<Vec<String>, usize>,
}

/// A claim value as compared: GUIDs in lower case (Entra's ids are GUIDs, written in
/// either case), everything else exactly.
pub fn normalise_claim(value: &str) -> std::borrow::Cow<'_, str> {
    if crate::operation::route::is_guid(value) {
        value.to_ascii_lowercase().into()
    } else {
        value.into()
    }
}

impl JwtCallers {
    /// The one caller of `issuer` whose claims the token carries (`claim` looks a claim up
    /// by name, already normalised).
    pub(crate) fn find<'c>(
        &self,
        issuer: usize,
        claim: impl Fn(&str) -> Option<std::borrow::Cow<'c, str>>,
    ) -> Option<usize> {
        let groups = self.by_issuer.get(issuer)?;
        let mut key = Vec::new();
        groups.iter().find_map(|group| {
            key.clear();
            for name in &group.names {
                key.push(claim(name)?.into_owned());
            }
            group.callers.get(&key).copied()
        })
    }
}

/// Compiles the `jwt_issuers` section.
pub(super) fn issuers(entries: &[JwtIssuerEntry], issues: &mut Issues) -> Vec<JwtIssuer> {
    let mut seen = HashSet::new();
    entries
        .iter()
        .map(|e| {
            if !seen.insert(e.issuer.value.as_str()) {
                issues.at(
                    &e.issuer,
                    format!("duplicate jwt issuer {:?}", e.issuer.value),
                );
            }
            issuer(e, issues)
        })
        .collect()
}

/// Bounds of the numeric settings: (default, minimum, maximum).
const LEEWAY_SECS: (u64, u64, u64) = (60, 0, 300);
const REFRESH_SECS: (u64, u64, u64) = (3600, 60, 86_400);
const UNKNOWN_KID_REFRESH_SECS: (u64, u64, u64) = (60, 1, 3600);
const FETCH_TIMEOUT_MS: (u64, u64, u64) = (5000, 100, 60_000);

fn issuer(e: &JwtIssuerEntry, issues: &mut Issues) -> JwtIssuer {
    check_issuer_name(&e.issuer, issues);
    let audiences: Vec<String> = e.audiences.value.iter().map(|a| a.value.clone()).collect();
    if audiences.is_empty() || audiences.iter().any(String::is_empty) {
        issues.at(
            &e.audiences,
            "audiences must list at least one non-empty value: the audience graphgate's tokens are issued for (its app id URI or a configured value)",
        );
    }
    let keys = key_source(&e.keys, e.issuer.value.starts_with(SPIFFE_SCHEME), issues);
    let secs = |v: &Option<Spanned<u64>>,
                what: &str,
                bounds: (u64, u64, u64),
                issues: &mut Issues| { bounded(v, what, bounds, issues) };
    JwtIssuer {
        issuer: e.issuer.value.clone(),
        audiences,
        keys,
        algorithms: algorithms(e.algorithms.as_ref(), issues),
        leeway: Duration::from_secs(secs(&e.leeway_secs, "leeway_secs", LEEWAY_SECS, issues)),
        refresh: Duration::from_secs(secs(&e.refresh_secs, "refresh_secs", REFRESH_SECS, issues)),
        unknown_kid_refresh: Duration::from_secs(secs(
            &e.unknown_kid_refresh_secs,
            "unknown_kid_refresh_secs",
            UNKNOWN_KID_REFRESH_SECS,
            issues,
        )),
        fetch_timeout: Duration::from_millis(bounded(
            &e.fetch_timeout_ms,
            "fetch_timeout_ms",
            FETCH_TIMEOUT_MS,
            issues,
        )),
        // Entra publishes its keys on its own authority: a discovery document sending key
        // fetches elsewhere is not Entra's, so pinning is on for it unless turned off.
        pin_jwks_host: e
            .pin_jwks_host
            .unwrap_or_else(|| is_entra_issuer(&e.issuer.value)),
    }
}

fn bounded(
    value: &Option<Spanned<u64>>,
    what: &str,
    (default, min, max): (u64, u64, u64),
    issues: &mut Issues,
) -> u64 {
    let Some(v) = value else { return default };
    if !(min..=max).contains(&v.value) {
        issues.at(v, format!("{what} must be from {min} to {max}"));
    }
    v.value.clamp(min, max)
}

/// An issuer is an `https://` URL (matched exactly against `iss`) or a SPIFFE trust domain.
fn check_issuer_name(name: &Spanned<String>, issues: &mut Issues) {
    let value = &name.value;
    if let Some(domain) = value.strip_prefix(SPIFFE_SCHEME) {
        if !is_trust_domain(domain) {
            issues.at(
                name,
                format!("{value:?} is not a SPIFFE trust domain: spiffe://<domain>, lower-case letters, digits, '.', '-' and '_', no path"),
            );
        }
    } else if !is_https_url(value) {
        issues.at(
            name,
            format!("jwt issuer {value:?} must be an https:// URL (the tokens' exact 'iss') or spiffe://<trust domain>"),
        );
    }
}

fn is_trust_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 255
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

fn is_https_url(url: &str) -> bool {
    url.strip_prefix("https://")
        .and_then(|rest| rest.split('/').next())
        .is_some_and(|host| !host.is_empty() && !host.contains(['@', ' ', '?', '#']))
}

fn key_source(entry: &Spanned<JwtKeysEntry>, spiffe: bool, issues: &mut Issues) -> KeySource {
    let k = &entry.value;
    let source = match (&k.discovery, &k.jwks_url, &k.file) {
        (Some(url), None, None) => KeySource::Discovery(url.clone()),
        (None, Some(url), None) => KeySource::JwksUrl(url.clone()),
        (None, None, Some(path)) if !path.is_empty() => KeySource::File(PathBuf::from(path)),
        _ => {
            issues.at(
                entry,
                "keys needs exactly one of 'discovery' (an OpenID configuration URL), 'jwks_url' or 'file'",
            );
            return KeySource::File(PathBuf::new());
        }
    };
    match &source {
        KeySource::Discovery(url) | KeySource::JwksUrl(url) if !is_https_url(url) => {
            issues.at(entry, format!("{url:?} must be an https:// URL"));
        }
        KeySource::Discovery(_) if spiffe => issues.at(
            entry,
            "a SPIFFE trust domain's keys come from its trust bundle: use 'file' (or 'jwks_url'), not 'discovery'",
        ),
        _ => {}
    }
    source
}

fn algorithms(list: Option<&Spanned<Vec<Spanned<String>>>>, issues: &mut Issues) -> Vec<Algorithm> {
    let Some(list) = list else {
        return ALLOWED_ALGORITHMS.to_vec();
    };
    if list.value.is_empty() {
        issues.at(
            list,
            "algorithms must list at least one of RS256, PS256, ES256",
        );
    }
    list.value
        .iter()
        .filter_map(|a| {
            let found = a
                .value
                .parse::<Algorithm>()
                .ok()
                .filter(|alg| ALLOWED_ALGORITHMS.contains(alg));
            if found.is_none() {
                issues.at(
                    a,
                    format!("algorithm {:?} is not accepted: use RS256, PS256 or ES256 (never 'none', never an HMAC algorithm, whose key would be public)", a.value),
                );
            }
            found
        })
        .collect()
}

/// Compiles one caller's `jwt` entry against the compiled issuers.
pub(super) fn identity(
    entry: &Spanned<JwtCallerEntry>,
    issuers: &[JwtIssuer],
    issues: &mut Issues,
) -> Option<JwtIdentity> {
    let e = &entry.value;
    let Some(index) = issuers.iter().position(|i| i.issuer == e.issuer) else {
        issues.at(
            entry,
            format!(
                "jwt issuer {:?} is not listed in jwt_issuers{}",
                e.issuer,
                crate::words::did_you_mean(&e.issuer, issuers.iter().map(|i| i.issuer.as_str()))
            ),
        );
        return None;
    };
    let mut claims: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in e.claims.iter().flatten() {
        let canonical = if name == "appid" {
            "azp"
        } else {
            name.as_str()
        };
        if RESERVED_CLAIMS.contains(&canonical) || value.is_empty() || name.is_empty() {
            issues.at(entry, format!("claims cannot test {name:?} (with value {value:?}): iss is the issuer, aud is pinned per issuer, time claims are checked for every token, and values must not be empty"));
        } else if claims
            .insert(canonical.to_owned(), normalise_claim(value).into_owned())
            .is_some()
        {
            issues.at(
                entry,
                "claims names the client app twice: 'azp' and 'appid' are one claim",
            );
        }
    }
    if let Some(subject) = &e.subject
        && claims
            .insert("sub".to_owned(), normalise_claim(subject).into_owned())
            .is_some()
    {
        issues.at(
            entry,
            "give the subject once: as 'subject' or as claims.sub",
        );
    }
    if claims.is_empty() {
        issues.at(entry, "jwt needs 'subject' or 'claims' (e.g. {azp: <app id>, oid: <object id>}) to say which tokens are this caller's");
    }
    if let Some(domain) = issuers[index].spiffe_trust_domain() {
        let prefix = format!("{SPIFFE_SCHEME}{domain}/");
        if !claims
            .get("sub")
            .is_some_and(|s| s.starts_with(&prefix) && s.len() > prefix.len())
        {
            issues.at(
                entry,
                format!("a SPIFFE caller needs 'subject': its SPIFFE id, {prefix}..."),
            );
        }
    }
    Some(JwtIdentity {
        issuer: index,
        claims: claims.into_iter().collect(),
    })
}

/// Indexes the callers' JWT identities. A token must name at most one caller, so two
/// callers of one issuer that one token could both satisfy are refused: those naming the
/// same claims with the same values, and those naming different claims that agree on every
/// claim they share (a token carrying both sets would be both).
pub(super) fn index(
    identities: &[(usize, &JwtIdentity, &Spanned<JwtCallerEntry>)],
    names: &[&str],
    issuer_count: usize,
    issues: &mut Issues,
) -> JwtCallers {
    let mut by_issuer: Vec<Vec<ClaimGroup>> = (0..issuer_count).map(|_| Vec::new()).collect();
    let mut spans = HashMap::new();
    for &(caller, identity, at) in identities {
        let Some(groups) = by_issuer.get_mut(identity.issuer) else {
            continue;
        };
        spans.insert(caller, at);
        let (keys, values): (Vec<String>, Vec<String>) = identity.claims.iter().cloned().unzip();
        let position = match groups.iter().position(|g| g.names == keys) {
            Some(p) => p,
            None => {
                groups.push(ClaimGroup {
                    names: keys,
                    callers: HashMap::new(),
                });
                groups.len() - 1
            }
        };
        if let Some(&first) = groups[position].callers.get(&values) {
            issues.at(
                at,
                format!(
                    "these jwt claims are also caller {:?}'s: each caller needs its own",
                    names[first]
                ),
            );
        } else {
            groups[position].callers.insert(values, caller);
        }
    }
    for groups in &by_issuer {
        for (later, group) in groups.iter().enumerate() {
            for earlier in &groups[..later] {
                for (caller, first) in overlaps(earlier, group) {
                    if let Some(at) = spans.get(&caller) {
                        issues.at(*at, format!("a token could be both this caller and caller {:?}: they agree on every claim they share; give them a claim with different values (e.g. both name 'sub')", names[first]));
                    }
                }
            }
        }
    }
    JwtCallers { by_issuer }
}

/// Pairs (a caller of `later`, a caller of `earlier`) that one token could both satisfy:
/// they agree on every claim the two groups share. One hash join on the shared claims.
fn overlaps(earlier: &ClaimGroup, later: &ClaimGroup) -> Vec<(usize, usize)> {
    let shared: Vec<(usize, usize)> = earlier
        .names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| Some((i, later.names.iter().position(|m| m == n)?)))
        .collect();
    let mut projected: HashMap<Vec<&str>, usize> = HashMap::new();
    for (values, &caller) in &earlier.callers {
        let key = shared.iter().map(|&(i, _)| values[i].as_str()).collect();
        projected.entry(key).or_insert(caller);
    }
    let mut found: Vec<(usize, usize)> = later
        .callers
        .iter()
        .filter_map(|(values, &caller)| {
            let key: Vec<&str> = shared.iter().map(|&(_, j)| values[j].as_str()).collect();
            projected.get(&key).map(|&first| (caller, first))
        })
        .collect();
    found.sort_unstable();
    found
}
