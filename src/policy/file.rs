//! The policy file as written: serde structures with source positions, parsed strictly
//! (unknown keys are errors). Turning them into typed rules is `compile`'s job.

use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyFile {
    pub version: Spanned<u32>,
    #[serde(default)]
    pub callers: Vec<CallerEntry>,
    #[serde(default)]
    pub rules: Vec<RuleEntry>,
    #[serde(default)]
    pub pacing: Option<PacingEntry>,
    #[serde(default)]
    pub jwt_issuers: Vec<super::jwt::JwtIssuerEntry>,
    /// Operation name to `N per day|hour` (see `budget`).
    #[serde(default)]
    pub tenant_budgets: std::collections::BTreeMap<String, Spanned<String>>,
    /// Named lists of callers that rules' approval groups may name (see `approval`).
    #[serde(default)]
    pub approver_groups: std::collections::BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    /// Where approvals' notifications go (see `webhooks`).
    #[serde(default)]
    pub approvals: Option<super::webhooks::ApprovalsEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CallerEntry {
    pub name: Spanned<String>,
    #[serde(default)]
    pub api_key_sha256: Option<Spanned<String>>,
    #[serde(default)]
    pub mtls: Option<Spanned<MtlsEntry>>,
    #[serde(default)]
    pub jwt: Option<Spanned<super::jwt::JwtCallerEntry>>,
    #[serde(default)]
    pub rate_limit: Option<Spanned<String>>,
    #[serde(default)]
    pub budget: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MtlsEntry {
    #[serde(default)]
    pub uri_san: Option<String>,
    #[serde(default)]
    pub subject_cn: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum EffectEntry {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum ModeEntry {
    Enforce,
    Shadow,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum DevicesEntry {
    Keyword(String),
    List(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleEntry {
    pub name: Spanned<String>,
    #[serde(default)]
    pub effect: Option<Spanned<EffectEntry>>,
    #[serde(default)]
    pub mode: Option<Spanned<ModeEntry>>,
    pub callers: Spanned<Vec<Spanned<String>>>,
    pub operations: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub tier: Option<Spanned<String>>,
    #[serde(default)]
    pub devices: Option<Spanned<DevicesEntry>>,
    #[serde(default)]
    pub api_versions: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub when: Vec<Spanned<ConditionEntry>>,
    #[serde(default)]
    pub require: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub initiators: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub rate_limit: Option<Spanned<String>>,
    #[serde(default)]
    pub budget: Option<Spanned<String>>,
    /// Others must approve its requests first (see `approval`).
    #[serde(default)]
    pub approval: Option<Spanned<super::approval::ApprovalEntry>>,
    /// A request may run at once with `X-Graphgate-Break-Glass`, reviewed afterwards.
    #[serde(default)]
    pub break_glass: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ScalarEntry {
    Bool(bool),
    Str(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConditionEntry {
    pub param: String,
    #[serde(default)]
    pub equals: Option<ScalarEntry>,
    #[serde(default)]
    pub one_of: Option<Vec<String>>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub present: Option<bool>,
    #[serde(default)]
    pub absent: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PacingEntry {
    #[serde(default)]
    pub tenant_writes: Option<Spanned<String>>,
    #[serde(default)]
    pub max_wait_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub replicas: Option<Spanned<u32>>,
}
