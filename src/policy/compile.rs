//! Validation: the parsed file becomes typed callers and rules, or a list of every problem
//! found, each with its line and column.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use serde_saphyr::Spanned;

use super::file::{
    CallerEntry, ConditionEntry, DevicesEntry, EffectEntry, ModeEntry, PacingEntry, PolicyFile,
    RuleEntry, ScalarEntry,
};
use super::issues::Issues;
use super::{
    Caller, Condition, Effect, Mode, MtlsIdentity, MtlsIndex, POLICY_VERSION, Pacing, Policy,
    PolicyIssue, Rate, Rule, Test,
};
use crate::operation::catalog::{self, ApiVersion, Operation};
use crate::operation::route::is_guid;
use crate::operation::schema::{self, ParamPath};
use crate::words::did_you_mean;

/// Caller names to their index (the first caller of each name).
type CallerNames<'f> = HashMap<&'f str, usize>;

/// Each operation's parameter paths, computed once per compile.
type ParamPathCache = HashMap<&'static str, Vec<ParamPath>>;

pub(super) fn compile(file: PolicyFile, hash: String) -> Result<Policy, Vec<PolicyIssue>> {
    let mut issues = Issues::default();
    if file.version.value != POLICY_VERSION {
        issues.at(
            &file.version,
            format!(
                "unsupported version {}: this build reads version {POLICY_VERSION}",
                file.version.value
            ),
        );
    }
    let jwt_issuers = super::jwt::issuers(&file.jwt_issuers, &mut issues);
    let mut names = CallerNames::with_capacity(file.callers.len());
    let callers: Vec<Caller> = file
        .callers
        .iter()
        .enumerate()
        .map(|(i, c)| caller(c, i, &mut names, &jwt_issuers, &mut issues))
        .collect();
    let (api_keys, mtls) = credentials(&file.callers, &callers, &mut issues);
    let jwt_callers = jwt_index(&file.callers, &callers, jwt_issuers.len(), &mut issues);
    let approver_groups =
        super::approval::approver_groups(&file.approver_groups, &names, &mut issues);
    let approvals = super::approval::Context {
        callers: &names,
        groups: &approver_groups,
    };
    let mut rule_names = HashSet::with_capacity(file.rules.len());
    let mut paths = ParamPathCache::new();
    let rules: Vec<Rule> = file
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if !rule_names.insert(r.name.value.as_str()) {
                issues.at(&r.name, format!("duplicate rule name {:?}", r.name.value));
            }
            rule(r, i, &approvals, &mut paths, &mut issues)
        })
        .collect();
    let pacing = pacing(file.pacing.as_ref(), &mut issues);
    let webhooks = super::webhooks::webhooks(file.approvals.as_ref(), &mut issues);
    let tenant_budgets =
        super::budget::tenant_budgets(&file.tenant_budgets, &mut |at, m| issues.at(at, m));
    if !issues.0.is_empty() {
        issues.0.sort_by_key(|i| (i.line, i.column));
        return Err(issues.0);
    }
    Ok(Policy {
        warnings: [
            super::tiers::warnings(&rules),
            super::requirements::warnings(&rules),
        ]
        .concat(),
        approver_groups,
        webhooks,
        any_approval: rules.iter().any(|r| r.approval.is_some()),
        by_caller: by_caller(callers.len(), &rules),
        api_keys,
        mtls,
        jwt_issuers,
        jwt_callers,
        callers,
        rules,
        pacing,
        tenant_budgets,
        hash,
    })
}

/// For each caller, the rules naming it, in file order (once each).
fn by_caller(callers: usize, rules: &[Rule]) -> Vec<Vec<usize>> {
    let mut by_caller = vec![Vec::new(); callers];
    for (i, rule) in rules.iter().enumerate() {
        for &c in &rule.callers {
            if let Some(list) = by_caller.get_mut(c)
                && list.last() != Some(&i)
            {
                list.push(i);
            }
        }
    }
    by_caller
}

/// The credential lookup tables: callers by API-key hash and by certificate identity.
/// One credential, one caller: a key hash or certificate identity given to two callers
/// would make the caller (and every rule and audit record naming it) ambiguous, so the
/// second is reported rather than resolved.
fn credentials(
    entries: &[CallerEntry],
    callers: &[Caller],
    issues: &mut Issues,
) -> (HashMap<[u8; 32], usize>, MtlsIndex) {
    let mut keys = HashMap::with_capacity(callers.len());
    let mut certs = MtlsIndex::default();
    for (i, (entry, caller)) in entries.iter().zip(callers).enumerate() {
        if let (Some(hash), Some(at)) = (caller.key_sha256, entry.api_key_sha256.as_ref())
            && let Some(first) = keys.insert(hash, i)
        {
            let first = &entries[first].name.value;
            issues.at(
                at,
                format!("api_key_sha256 is also caller {first:?}'s: each caller needs its own key"),
            );
        }
        let (map, key) = match &caller.mtls {
            Some(MtlsIdentity::UriSan(uri)) => (&mut certs.uri_san, uri),
            Some(MtlsIdentity::SubjectCn(cn)) => (&mut certs.subject_cn, cn),
            None => continue,
        };
        if let (Some(first), Some(at)) = (map.insert(key.clone(), i), entry.mtls.as_ref()) {
            let first = &entries[first].name.value;
            issues.at(
                at,
                format!("this mtls identity is also caller {first:?}'s: each caller needs its own"),
            );
        }
    }
    (keys, certs)
}

/// Callers by the claims of their tokens; callers one token could both be are refused.
fn jwt_index(
    entries: &[CallerEntry],
    callers: &[Caller],
    issuer_count: usize,
    issues: &mut Issues,
) -> super::jwt::JwtCallers {
    let identities: Vec<_> = entries
        .iter()
        .zip(callers)
        .enumerate()
        .filter_map(|(i, (entry, caller))| Some((i, caller.jwt.as_ref()?, entry.jwt.as_ref()?)))
        .collect();
    let names: Vec<&str> = callers.iter().map(|c| c.name.as_str()).collect();
    super::jwt::index(&identities, &names, issuer_count, issues)
}

fn rate(text: &Option<Spanned<String>>, issues: &mut Issues) -> Option<Rate> {
    let text = text.as_ref()?;
    Rate::parse(&text.value)
        .map_err(|e| issues.at(text, e))
        .ok()
}

fn caller<'f>(
    entry: &'f CallerEntry,
    index: usize,
    names: &mut CallerNames<'f>,
    jwt_issuers: &[super::JwtIssuer],
    issues: &mut Issues,
) -> Caller {
    let name = &entry.name;
    match names.entry(name.value.as_str()) {
        Entry::Occupied(_) => issues.at(name, format!("duplicate caller name {:?}", name.value)),
        Entry::Vacant(slot) => {
            slot.insert(index);
        }
    }
    let key_sha256 = entry.api_key_sha256.as_ref().and_then(|h| {
        let parsed = parse_sha256(&h.value);
        if parsed.is_none() {
            issues.at(h, "api_key_sha256 must be 64 hex characters (the SHA-256 of the key; see 'graphgate policy hash-key')");
        }
        parsed
    });
    let mtls = entry
        .mtls
        .as_ref()
        .and_then(|m| match (&m.value.uri_san, &m.value.subject_cn) {
            (Some(uri), None) if !uri.is_empty() => Some(MtlsIdentity::UriSan(uri.clone())),
            (None, Some(cn)) if !cn.is_empty() => Some(MtlsIdentity::SubjectCn(cn.clone())),
            _ => {
                issues.at(
                    m,
                    "mtls needs exactly one non-empty 'uri_san' or 'subject_cn'",
                );
                None
            }
        });
    let jwt = entry
        .jwt
        .as_ref()
        .and_then(|j| super::jwt::identity(j, jwt_issuers, issues));
    if entry.api_key_sha256.is_none() && entry.mtls.is_none() && entry.jwt.is_none() {
        issues.at(
            name,
            format!(
                "caller {:?} has no credential: give it api_key_sha256, mtls or jwt",
                name.value
            ),
        );
    }
    Caller {
        name: name.value.clone(),
        key_sha256,
        mtls,
        jwt,
        rate_limit: rate(&entry.rate_limit, issues),
        budget: super::budget::budget_of(&entry.budget, &mut |at, m| issues.at(at, m)),
    }
}

fn rule(
    entry: &RuleEntry,
    index: usize,
    approvals: &super::approval::Context<'_>,
    paths: &mut ParamPathCache,
    issues: &mut Issues,
) -> Rule {
    let callers = approvals.callers;
    let name = &entry.name;
    let mut caller_ids = Vec::new();
    for c in &entry.callers.value {
        match callers.get(c.value.as_str()) {
            Some(&i) => caller_ids.push(i),
            None => issues.at(c, unknown_caller(&c.value, callers)),
        }
    }
    let mut operations: Vec<&'static Operation> = Vec::new();
    for o in &entry.operations.value {
        match catalog::by_name(&o.value) {
            Some(op) if op.binding == catalog::Binding::Devices => issues.at(
                o,
                format!(
                    "{:?} is decided device by device as the operation its actionName names (executeAction with actionName wipe needs managedDevices.wipe): name those operations instead",
                    o.value
                ),
            ),
            Some(op) => operations.push(op),
            None => issues.at(
                o,
                format!(
                    "unknown operation {:?}{}; known operations: {}",
                    o.value,
                    did_you_mean(&o.value, catalog::CATALOG.iter().map(|op| op.name)),
                    known_operations()
                ),
            ),
        }
    }
    let tier = super::tiers::pinned(entry.tier.as_ref(), &operations).unwrap_or_else(|problem| {
        match &entry.tier {
            Some(at) => issues.at(at, problem),
            None => issues.at(name, problem),
        }
        None
    });
    let versions = versions(entry, issues);
    let devices = devices(entry, issues);
    let conditions = entry
        .when
        .iter()
        .filter_map(|c| condition(c, &operations, paths, issues))
        .collect();
    let effect = match entry.effect.as_ref().map(|e| e.value) {
        Some(EffectEntry::Deny) => Effect::Deny,
        _ => Effect::Allow,
    };
    let mode = match entry.mode.as_ref().map(|m| m.value) {
        Some(ModeEntry::Shadow) => Mode::Shadow,
        _ => Mode::Enforce,
    };
    let requesters: Vec<&str> = entry
        .callers
        .value
        .iter()
        .map(|c| c.value.as_str())
        .collect();
    let (approval, break_glass) = super::approval::rule_approval(
        entry.approval.as_ref(),
        entry.break_glass.as_ref(),
        (effect == Effect::Deny, mode == Mode::Shadow),
        &requesters,
        approvals,
        issues,
    );
    let rule = Rule {
        index,
        name: name.value.clone(),
        effect,
        mode,
        callers: caller_ids,
        operations,
        devices,
        versions,
        conditions,
        initiators: super::requirements::initiators(entry.initiators.as_ref(), issues),
        require: super::requirements::require(
            entry.require.as_ref(),
            effect == Effect::Deny,
            issues,
        ),
        rate_limit: rate(&entry.rate_limit, issues),
        tier,
        budget: super::budget::budget_of(&entry.budget, &mut |at, m| issues.at(at, m)),
        approval,
        break_glass,
    };
    never_matches(entry, &rule, issues);
    rule
}

fn versions(entry: &RuleEntry, issues: &mut Issues) -> Vec<ApiVersion> {
    let Some(list) = &entry.api_versions else {
        return vec![ApiVersion::V1, ApiVersion::Beta];
    };
    list.value
        .iter()
        .filter_map(|v| {
            let parsed = ApiVersion::parse(&v.value).filter(|p| p.as_str() == v.value);
            if parsed.is_none() {
                issues.at(
                    v,
                    format!("unknown API version {:?}: use v1.0 or beta", v.value),
                );
            }
            parsed
        })
        .collect()
}

fn devices(entry: &RuleEntry, issues: &mut Issues) -> Option<Vec<String>> {
    let d = entry.devices.as_ref()?;
    match &d.value {
        DevicesEntry::Keyword(k) if k == "any" => None,
        DevicesEntry::Keyword(k) => {
            issues.at(
                d,
                format!("devices must be 'any' or a list of managed-device ids, not {k:?}"),
            );
            None
        }
        DevicesEntry::List(ids) => {
            for id in ids.iter().filter(|id| !is_guid(id)) {
                issues.at(
                    d,
                    format!("device id {id:?} is not a managed-device id (a GUID)"),
                );
            }
            let mut ids: Vec<String> = ids.iter().map(|i| i.to_ascii_lowercase()).collect();
            ids.sort();
            ids.dedup();
            Some(ids)
        }
    }
}

fn condition(
    entry: &Spanned<ConditionEntry>,
    ops: &[&'static Operation],
    paths: &mut ParamPathCache,
    issues: &mut Issues,
) -> Option<Condition> {
    let c = &entry.value;
    let tests = [
        c.equals.is_some(),
        c.one_of.is_some(),
        c.prefix.is_some(),
        c.suffix.is_some(),
        c.present.is_some(),
        c.absent.is_some(),
    ];
    if tests.iter().filter(|t| **t).count() != 1 {
        issues.at(entry, format!("the condition on {:?} needs exactly one of equals, one_of, prefix, suffix, present, absent", c.param));
        return None;
    }
    // The parameter must exist on every operation the rule covers.
    let mut known: Option<&ParamPath> = None;
    for op in ops {
        let op_paths = paths
            .entry(op.name)
            .or_insert_with(|| schema::param_paths(op.all_params(), op.wrapper));
        match op_paths.iter().find(|p| p.path == c.param) {
            Some(p) => known = Some(p),
            None => {
                issues.at(entry, no_such_parameter(op, &c.param, op_paths));
                return None;
            }
        }
    }
    let test = match (
        &c.equals, &c.one_of, &c.prefix, &c.suffix, c.present, c.absent,
    ) {
        (Some(ScalarEntry::Bool(b)), ..) => Test::EqualsBool(*b),
        (Some(ScalarEntry::Str(s)), ..) => Test::EqualsStr(s.clone()),
        (_, Some(list), ..) => Test::OneOf(list.clone()),
        (_, _, Some(p), ..) => Test::Prefix(p.clone()),
        (_, _, _, Some(s), ..) => Test::Suffix(s.clone()),
        (.., Some(p), _) => Test::Present(p),
        (.., Some(a)) => Test::Present(!a),
        _ => return None,
    };
    if let Some(p) = known {
        test_fits(entry, p, &test, issues);
    }
    Some(Condition {
        param: c.param.clone(),
        test,
    })
}

/// Whether `test` suits what the parameter holds.
fn test_fits(entry: &Spanned<ConditionEntry>, p: &ParamPath, test: &Test, issues: &mut Issues) {
    let param = &entry.value.param;
    let value_test = !matches!(test, Test::Present(_));
    if p.secret && value_test {
        issues.at(
            entry,
            format!("{param:?} is a secret: a policy may only test that it is present or absent"),
        );
    } else if value_test && p.boolean != matches!(test, Test::EqualsBool(_)) {
        let want = if p.boolean {
            "a boolean (equals: true|false)"
        } else {
            "a string test"
        };
        issues.at(entry, format!("{param:?} needs {want}"));
    }
    // `suffix: contoso.com` would also match `ceo@evilcontoso.com`: on an address, a
    // suffix must start at a domain boundary.
    if let Test::Suffix(suffix) = test
        && p.address
        && !suffix.starts_with(['@', '.'])
    {
        issues.at(
            entry,
            format!(
                "the suffix {suffix:?} on the address {param:?} must start with '@' (exactly that domain) or '.' (its subdomains); as written it also matches other domains that end in it"
            ),
        );
    }
}

/// Rules that cannot match any request are mistakes; say so.
fn never_matches(entry: &RuleEntry, rule: &Rule, issues: &mut Issues) {
    if entry.callers.value.is_empty() {
        issues.at(
            &entry.callers,
            format!("rule {:?} can never match: it names no caller", rule.name),
        );
    }
    if entry.operations.value.is_empty() {
        issues.at(
            &entry.operations,
            format!(
                "rule {:?} can never match: it names no operation",
                rule.name
            ),
        );
    }
    if let (Some(list), true) = (&entry.api_versions, rule.versions.is_empty()) {
        issues.at(
            list,
            format!(
                "rule {:?} can never match: it names no API version",
                rule.name
            ),
        );
    }
    if let Some(op) = rule.operations.iter().find(|op| {
        !rule.versions.is_empty() && !rule.versions.iter().any(|v| op.versions.contains(v))
    }) {
        issues.at(
            &entry.name,
            format!(
                "rule {:?} can never match: {} is not offered in the listed API versions",
                rule.name, op.name
            ),
        );
    }
    // A user-bound operation names no device: a device list could never match it, and would
    // read as a limit it is not. Its devices are whatever the user has enrolled.
    if let (Some(d), Some(_), Some(op)) = (
        &entry.devices,
        &rule.devices,
        rule.operations
            .iter()
            .find(|op| op.binding == catalog::Binding::User),
    ) {
        issues.at(
            d,
            format!(
                "rule {:?}: a device list cannot apply to {} (it acts on all of a user's devices, named by the user, not by device id; budgets count it as one device): leave 'devices' out, or move the operation to a rule without one",
                rule.name, op.name
            ),
        );
    }
    if let (Some(d), Some([])) = (&entry.devices, rule.devices.as_deref()) {
        issues.at(
            d,
            format!(
                "rule {:?} can never match: its device list is empty",
                rule.name
            ),
        );
    }
    for (i, a) in rule.conditions.iter().enumerate() {
        if let Some(b) = rule.conditions[..i]
            .iter()
            .find(|b| b.param == a.param && contradict(&a.test, &b.test))
            && let Some(at) = entry.when.get(i)
        {
            issues.at(at, format!("rule {:?} can never match: conditions on {:?} contradict each other ({:?} and {:?})", rule.name, a.param, b.test, a.test));
        }
    }
}

fn contradict(a: &Test, b: &Test) -> bool {
    match (a, b) {
        (Test::Present(false), Test::Present(true))
        | (Test::Present(true), Test::Present(false)) => true,
        (Test::Present(false), t) | (t, Test::Present(false)) => !matches!(t, Test::Present(_)),
        (Test::EqualsBool(x), Test::EqualsBool(y)) => x != y,
        (Test::EqualsStr(x), Test::EqualsStr(y)) => !x.eq_ignore_ascii_case(y),
        _ => false,
    }
}

/// The longest `max_wait_ms`: a request held longer for a pacing slot would outlive its
/// caller's patience (and a deadline of centuries would overflow the clock).
const MAX_PACING_WAIT_MS: u64 = 60_000;

/// The most writes `tenant_writes` may allow per window: pacing remembers each write of the
/// window (an exact sliding window), so the count bounds that memory.
const MAX_PACING_WRITES: u32 = 100_000;

fn pacing(entry: Option<&PacingEntry>, issues: &mut Issues) -> Pacing {
    let mut pacing = Pacing::default();
    let Some(entry) = entry else { return pacing };
    if let Some(r) = rate(&entry.tenant_writes, issues) {
        pacing.tenant_writes = r;
    }
    if let Some(ms) = &entry.max_wait_ms {
        if ms.value > MAX_PACING_WAIT_MS {
            issues.at(
                ms,
                format!(
                    "max_wait_ms {} is over the {MAX_PACING_WAIT_MS} ms limit",
                    ms.value
                ),
            );
        }
        pacing.max_wait = std::time::Duration::from_millis(ms.value.min(MAX_PACING_WAIT_MS));
    }
    if pacing.tenant_writes.count > MAX_PACING_WRITES
        && let Some(at) = &entry.tenant_writes
    {
        issues.at(
            at,
            format!("tenant_writes allows at most {MAX_PACING_WRITES} writes per window (Intune's limit is 200 per 20s)"),
        );
    }
    // The static split is gone: one shared budget replaces it (`--state redis://...`).
    // Refused rather than ignored, so nobody upgrades into N times the tenant's limit.
    if let Some(replicas) = &entry.replicas {
        issues.at(
            replicas,
            "'replicas' is no longer supported: replicas sharing a state store (--state redis://...) pace against one shared tenant_writes budget; a gateway with --state memory paces alone, so give it its share directly (e.g. tenant_writes: 50 per 20s for each of 4 replicas)",
        );
    }
    pacing
}

/// A rule naming a caller the file does not define: the closest name, and every one.
fn unknown_caller(name: &str, callers: &CallerNames<'_>) -> String {
    let mut known: Vec<&str> = callers.keys().copied().collect();
    known.sort_unstable();
    let listed = match known.is_empty() {
        true => "the file defines no caller".to_owned(),
        false => format!("callers: {}", known.join(", ")),
    };
    format!(
        "unknown caller {name:?}{}; {listed}",
        did_you_mean(name, known.iter().copied())
    )
}

/// A condition on a parameter `op` does not have: the closest one, and every one it has.
fn no_such_parameter(op: &Operation, param: &str, paths: &[ParamPath]) -> String {
    let names = paths.iter().map(|p| p.path.as_str());
    let listed = match paths.is_empty() {
        true => "it takes no parameters".to_owned(),
        false => format!(
            "its parameters: {}",
            names.clone().collect::<Vec<_>>().join(", ")
        ),
    };
    format!(
        "{} has no parameter {param:?}{}; {listed} (graphgate operations show {})",
        op.name,
        did_you_mean(param, names),
        op.name
    )
}

fn known_operations() -> String {
    catalog::CATALOG
        .iter()
        .map(|o| o.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_sha256(hex_text: &str) -> Option<[u8; 32]> {
    let bytes = hex_text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}
