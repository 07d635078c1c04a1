//! The approval API, on the caller listener, for callers authenticated like any other:
//! - `GET /api/v1/approvals[?state=...]`: what the caller requested or may review;
//! - `GET /api/v1/approvals/{id}`: to its requester and its approvers only (others get 404,
//!   so ids do not leak);
//! - `POST .../{id}/approve` and `.../reject` with `{"reason", "request_sha256"}`: a review
//!   counts only for the request it names; the last approval needed runs it;
//! - `POST .../{id}/cancel` (`{"reason"}` optional): by its requester, while pending or
//!   approved;
//! - `POST .../{id}/review` with `{"reason", "request_sha256"}`: an approver's review of what
//!   break glass ran.

use http::Method;
use serde::Deserialize;

use super::error::ApprovalError;
use super::model::{Finish, Review, RunBy, State, Step, Stored, Verdict};
use super::people::Identity;
use super::review::{may_review, readable_reason, tally};
use super::run::Runner;
use super::store::Change;
use super::{Approvals, rfc3339};
use crate::state::StateStore;

/// Where the API lives.
pub const PREFIX: &str = "/api/v1/approvals";
/// The longest review (or cancel) body.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

/// What a POST does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `approve`.
    Approve,
    /// `reject`.
    Reject,
    /// `cancel`.
    Cancel,
    /// `review` (break glass).
    Review,
}

impl Action {
    /// Its path segment, and the audit's `approval_event` for the request.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Cancel => "cancel",
            Action::Review => "review",
        }
    }
}

/// One route of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /api/v1/approvals`.
    List,
    /// `GET /api/v1/approvals/{id}`.
    Show(String),
    /// `POST /api/v1/approvals/{id}/{action}`.
    Act(String, Action),
}

/// A path under [`PREFIX`] that is no route, or the wrong method for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// No such resource.
    NotFound,
    /// The methods it takes.
    Method(&'static str),
}

/// The route `method` and `path` name; `None` when the path is not the approval API's.
pub fn route(method: &Method, path: &str) -> Option<Result<Route, RouteError>> {
    let rest = path.strip_prefix(PREFIX)?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    let parts: Vec<&str> = rest.split('/').skip(1).collect();
    let id_of = |id: &str| {
        crate::operation::route::is_guid(id)
            .then(|| id.to_ascii_lowercase())
            .ok_or(RouteError::NotFound)
    };
    let want = |m: Method, allow| (method == m).then_some(()).ok_or(RouteError::Method(allow));
    Some(match parts.as_slice() {
        [] | [""] => want(Method::GET, "GET").map(|()| Route::List),
        [id] => id_of(id).and_then(|id| want(Method::GET, "GET").map(|()| Route::Show(id))),
        [id, action] => {
            let action = match *action {
                "approve" => Action::Approve,
                "reject" => Action::Reject,
                "cancel" => Action::Cancel,
                "review" => Action::Review,
                _ => return Some(Err(RouteError::NotFound)),
            };
            id_of(id).and_then(|id| want(Method::POST, "POST").map(|()| Route::Act(id, action)))
        }
        _ => Err(RouteError::NotFound),
    })
}

/// A review's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    reason: String,
    request_sha256: String,
}

/// A cancel's body (all optional).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    #[serde(default)]
    reason: Option<String>,
}

fn bad(message: &str) -> ApprovalError {
    ApprovalError::BadInput(message.to_owned())
}

fn checked_reason(reason: &str) -> Result<(), ApprovalError> {
    match readable_reason(reason) {
        true => Ok(()),
        false => Err(bad(
            "'reason' must be visible text of 1 to 1024 characters without control or invisible characters",
        )),
    }
}

/// Reads a review body: both members, a readable reason, a SHA-256 in hex.
fn review_body(body: &[u8]) -> Result<ReviewBody, ApprovalError> {
    let parsed: ReviewBody = serde_json::from_slice(body).map_err(|_| {
        bad("the body must be {\"reason\": \"...\", \"request_sha256\": \"...\"} (JSON, nothing else)")
    })?;
    checked_reason(&parsed.reason)?;
    let hex = parsed.request_sha256.as_bytes();
    if hex.len() != 64 || !hex.iter().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("'request_sha256' must be 64 hex digits"));
    }
    Ok(parsed)
}

impl Approvals {
    /// What `caller` requested or may review, newest first (`state` narrows it), as the
    /// list's JSON.
    pub async fn list_for(
        &self,
        state: &StateStore,
        caller: &str,
        query: Option<&str>,
    ) -> Result<serde_json::Value, ApprovalError> {
        let mut wanted: Option<State> = None;
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match (name.as_ref(), State::parse(&value)) {
                ("state", Some(s)) if wanted.is_none() => wanted = Some(s),
                ("state", _) => {
                    let names: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
                    return Err(bad(&format!("'state' is one of {}", names.join(", "))));
                }
                _ => return Err(bad("the only query parameter is 'state'")),
            }
        }
        let which = match wanted {
            Some(s) if !s.is_final() => "open",
            _ => "all",
        };
        let value: Vec<serde_json::Value> = self
            .list(state, which)
            .await?
            .into_iter()
            .filter(|s| s.visible_to(caller))
            .filter(|s| wanted.is_none_or(|w| s.resource.state == w))
            .filter_map(|s| serde_json::to_value(&s.resource).ok())
            .collect();
        Ok(serde_json::json!({ "value": value }))
    }

    /// Every approval the store lists (the newest, at most its listing bound), for the
    /// admin console: the operators' view, not a caller's.
    pub async fn all(&self, state: &StateStore) -> Result<Vec<super::Resource>, ApprovalError> {
        let listed = self.list(state, "all").await?;
        Ok(listed.into_iter().map(|s| s.resource).collect())
    }

    /// Approval `id` as the store holds it, for the admin console.
    pub async fn resource(
        &self,
        state: &StateStore,
        id: &str,
    ) -> Result<Option<super::Resource>, ApprovalError> {
        Ok(self.load(state, id).await?.map(|(_, s)| s.resource))
    }

    /// Approval `id`, if `caller` may see it (its deadlines applied first).
    pub async fn visible(
        &self,
        state: &StateStore,
        caller: &str,
        id: &str,
    ) -> Result<Stored, ApprovalError> {
        match self.expire_if_due(state, id).await {
            Ok(()) | Err(ApprovalError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        match self.load(state, id).await? {
            Some((_, s)) if s.visible_to(caller) => Ok(s),
            _ => Err(ApprovalError::NotFound(id.to_owned())),
        }
    }

    /// Takes `action` on approval `id` for `who`, with the request's `body`; the last
    /// approval needed runs it (through `runner`). The approval as it is afterwards.
    pub async fn act(
        &self,
        state: &StateStore,
        runner: &dyn Runner,
        who: &Identity,
        (id, action): (&str, Action),
        body: &[u8],
    ) -> Result<Stored, ApprovalError> {
        match action {
            Action::Cancel => {
                let parsed: CancelBody = match body.is_empty() {
                    true => CancelBody::default(),
                    false => serde_json::from_slice(body)
                        .map_err(|_| bad("the body must be {\"reason\": \"...\"} or empty"))?,
                };
                if let Some(reason) = &parsed.reason {
                    checked_reason(reason)?;
                }
                self.cancel(state, who, id, parsed.reason).await
            }
            Action::Approve | Action::Reject | Action::Review => {
                let parsed = review_body(body)?;
                self.expire_if_due(state, id).await?;
                let reviewed = self.review(state, who, id, action, &parsed).await?;
                if reviewed.resource.state == State::Approved
                    && reviewed.resource.run_by == RunBy::Gateway
                {
                    return self.run_approved(state, runner, id).await;
                }
                Ok(reviewed)
            }
        }
    }

    async fn review(
        &self,
        state: &StateStore,
        who: &Identity,
        id: &str,
        action: Action,
        body: &ReviewBody,
    ) -> Result<Stored, ApprovalError> {
        let (verdict, doing, open_state) = match action {
            Action::Approve => (Verdict::Approve, "approved", State::Pending),
            Action::Reject => (Verdict::Reject, "rejected", State::Pending),
            _ => (Verdict::Review, "reviewed", State::NeedsReview),
        };
        self.change(state, id, |s, now| {
            if !s.visible_to(&who.caller) {
                return Err(ApprovalError::NotAnApprover(id.to_owned()));
            }
            may_review(s, who).map_err(|why| ApprovalError::not_counted(id, why))?;
            if s.resource.state != open_state {
                return Err(ApprovalError::NotNow {
                    id: id.to_owned(),
                    state: s.resource.state,
                    doing,
                });
            }
            if s.resource.request_sha256 != body.request_sha256.to_ascii_lowercase() {
                return Err(ApprovalError::HashMismatch(id.to_owned()));
            }
            s.resource.reviews.push(Review {
                decision: verdict,
                reviewer: who.caller.clone(),
                person: who.person.clone(),
                reason: body.reason.clone(),
                request_sha256: s.resource.request_sha256.clone(),
                time: rfc3339(now),
            });
            s.held.reviewers.push(who.clone());
            let step = match verdict {
                Verdict::Review => Step::CloseReview(finish_of(s)),
                _ => {
                    let t = tally(s);
                    s.resource.groups = t.groups;
                    if t.rejections >= s.resource.deny {
                        Step::Reject
                    } else if t.met {
                        let by = now + s.held.execute_within_ms;
                        s.held.execute_by_ms = Some(by);
                        s.resource.execute_by = Some(rfc3339(by));
                        Step::Approve
                    } else {
                        Step::Count
                    }
                }
            };
            Ok(Some(Change {
                step,
                by: Some(who.caller.clone()),
                note: Some(format!("{}: {}", action.as_str(), body.reason)),
                what: None,
                quiet: false,
            }))
        })
        .await
    }

    async fn cancel(
        &self,
        state: &StateStore,
        who: &Identity,
        id: &str,
        reason: Option<String>,
    ) -> Result<Stored, ApprovalError> {
        self.change(state, id, |s, _| {
            if s.resource.caller != who.caller {
                return Err(match s.visible_to(&who.caller) {
                    true => ApprovalError::NotTheRequester(id.to_owned()),
                    false => ApprovalError::NotFound(id.to_owned()),
                });
            }
            if !s.resource.state.is_open() {
                return Err(ApprovalError::NotNow {
                    id: id.to_owned(),
                    state: s.resource.state,
                    doing: "canceled",
                });
            }
            Ok(Some(Change {
                by: Some(who.caller.clone()),
                note: reason.as_ref().map(|r| format!("cancel: {r}")),
                ..Change::of(Step::Cancel)
            }))
        })
        .await
    }
}

/// How what break glass ran ended, for its review to close it: a run that recorded no
/// outcome (its replica died) may have run.
fn finish_of(s: &Stored) -> Finish {
    match &s.resource.outcome {
        Some(o) if (200..300).contains(&o.status) => Finish::Succeeded,
        Some(o) if o.error_code.as_deref() == Some("upstreamOutcomeUnknown") => Finish::Unknown,
        Some(_) => Finish::Failed,
        None => Finish::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_their_methods() {
        let id = "0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb";
        let get = |p: &str| route(&Method::GET, p);
        let post = |p: &str| route(&Method::POST, p);
        assert_eq!(get("/api/v1/approvals"), Some(Ok(Route::List)));
        assert_eq!(get("/api/v1/approvalsX"), None);
        assert_eq!(get("/api/v1/managedDevices/x/wipe"), None);
        assert_eq!(
            get(&format!("/api/v1/approvals/{}", id.to_uppercase())),
            Some(Ok(Route::Show(id.into())))
        );
        assert_eq!(
            post(&format!("/api/v1/approvals/{id}/approve")),
            Some(Ok(Route::Act(id.into(), Action::Approve)))
        );
        assert_eq!(
            get(&format!("/api/v1/approvals/{id}/approve")),
            Some(Err(RouteError::Method("POST")))
        );
        assert_eq!(
            post("/api/v1/approvals"),
            Some(Err(RouteError::Method("GET")))
        );
        assert_eq!(
            post(&format!("/api/v1/approvals/{id}/delete")),
            Some(Err(RouteError::NotFound))
        );
        assert_eq!(
            get("/api/v1/approvals/not-an-id"),
            Some(Err(RouteError::NotFound))
        );
    }

    #[test]
    fn reasons_are_visible_bounded_text() {
        assert!(readable_reason("INC-1234: stolen laptop"));
        assert!(readable_reason(&"é".repeat(1024)));
        for bad in [
            "",
            "   ",
            "a\nb",
            "tab\there",
            "\u{200b}\u{200b}",
            "rtl\u{202e}txet",
            "tag\u{e0041}",
        ] {
            assert!(!readable_reason(bad), "{bad:?}");
        }
        assert!(!readable_reason(&"x".repeat(1025)));
    }
}
