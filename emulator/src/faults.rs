//! Injected misbehaviour: what can go wrong at the token endpoint and at Graph, for how many
//! requests, how it is written (Rust builders, the JSON of `PUT /_emulator/faults`, the
//! `--fault` flags of `graphgate emulate`) and how each request claims one.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::Response;
use serde::{Deserialize, Serialize};

use super::wire::{Body, set_header};

/// Longest delay a fault may add (a typo of a few zeros should not hang a test run).
pub const MAX_FAULT_DELAY_MS: u64 = 600_000;

/// The faults in force. `Default` is none. Each target holds a list: a request gets the
/// first fault of its target that still has requests left, so
/// `[429 ×2, 503 ×1]` answers 429, 429, 503, then normally.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Faults {
    /// Refuse PS256 client assertions with AADSTS700027, like an Entra that only knows the
    /// older RS256 + `x5t` format.
    pub reject_ps256_assertions: bool,
    /// Faults of the token endpoint (`/{tenant}/oauth2/v2.0/token` on a login host).
    pub token: Vec<Fault>,
    /// Faults of Graph (any request to a Graph host).
    pub graph: Vec<Fault>,
}

/// One fault: what goes wrong, and for how many requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// What goes wrong.
    pub kind: FaultKind,
    /// The HTTP status of a `status` fault (Graph: 400-599; token endpoint: 500-599).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `Retry-After` (seconds) sent with a `status` or `temporarily_unavailable` answer;
    /// absent: no `Retry-After` header (as Intune sometimes does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u32>,
    /// Wait this long before acting (for `slow`, the whole fault; at most
    /// [`MAX_FAULT_DELAY_MS`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delay_ms: u64,
    /// A `status` answer as an HTML page (a front door's) instead of the service's JSON.
    #[serde(default, skip_serializing_if = "is_false")]
    pub html: bool,
    /// Requests left for this fault; absent: every request until the faults are cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if signature
fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if signature
fn is_false(v: &bool) -> bool {
    !*v
}

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The request is read (and recorded, status 0), then the connection is closed without
    /// an HTTP answer: a token endpoint that is "down", a Graph connection reset.
    #[serde(alias = "down")]
    Reset,
    /// The normal answer, after `delay_ms`.
    Slow,
    /// `status` with the service's error body (Entra's or Graph's JSON) or an HTML page.
    Status,
    /// Token endpoint only: HTTP 503, OAuth `temporarily_unavailable`, AADSTS90033.
    TemporarilyUnavailable,
    /// Token endpoint only: a token whose `exp` has passed, while `expires_in` still claims
    /// the configured lifetime.
    ExpiredToken,
    /// Token endpoint only: a token signed by another key under the same `kid`, which
    /// Graph refuses with 401 `InvalidAuthenticationToken`.
    BadSignatureToken,
}

impl FaultKind {
    fn name(self) -> &'static str {
        match self {
            FaultKind::Reset => "reset",
            FaultKind::Slow => "slow",
            FaultKind::Status => "status",
            FaultKind::TemporarilyUnavailable => "temporarily_unavailable",
            FaultKind::ExpiredToken => "expired_token",
            FaultKind::BadSignatureToken => "bad_signature_token",
        }
    }

    fn token_only(self) -> bool {
        matches!(
            self,
            FaultKind::TemporarilyUnavailable
                | FaultKind::ExpiredToken
                | FaultKind::BadSignatureToken
        )
    }
}

/// Which service a fault is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The Entra token endpoint.
    Token,
    /// Microsoft Graph.
    Graph,
}

impl Fault {
    fn new(kind: FaultKind) -> Self {
        Fault {
            kind,
            status: None,
            retry_after_secs: None,
            delay_ms: 0,
            html: false,
            times: None,
        }
    }

    /// Close the connection without an answer (token endpoint down, Graph reset).
    pub fn reset() -> Self {
        Self::new(FaultKind::Reset)
    }

    /// Answer normally, `delay` late.
    pub fn slow(delay: Duration) -> Self {
        Self::new(FaultKind::Slow).delay(delay)
    }

    /// Answer `status` with the service's JSON error.
    pub fn status(status: u16) -> Self {
        Fault {
            status: Some(status),
            ..Self::new(FaultKind::Status)
        }
    }

    /// Entra's `temporarily_unavailable` (503, AADSTS90033).
    pub fn temporarily_unavailable() -> Self {
        Self::new(FaultKind::TemporarilyUnavailable)
    }

    /// Issue an already expired token that claims to be long-lived.
    pub fn expired_token() -> Self {
        Self::new(FaultKind::ExpiredToken)
    }

    /// Issue a token signed with a key Graph does not trust.
    pub fn bad_signature_token() -> Self {
        Self::new(FaultKind::BadSignatureToken)
    }

    /// Send `Retry-After: secs`.
    #[must_use]
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// Wait `delay` before acting (whole milliseconds).
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Answer with an HTML page instead of JSON.
    #[must_use]
    pub fn html(mut self) -> Self {
        self.html = true;
        self
    }

    /// Apply to the next `n` requests only.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// The delay before acting.
    pub fn delay_duration(&self) -> Duration {
        Duration::from_millis(self.delay_ms.min(MAX_FAULT_DELAY_MS))
    }

    /// What is wrong with this fault for `target`.
    fn problems(&self, target: Target) -> Vec<String> {
        let mut out = Vec::new();
        let kind = self.kind.name();
        if target == Target::Graph && self.kind.token_only() {
            out.push(format!("'{kind}' is a token-endpoint fault"));
        }
        match (self.kind, self.status) {
            (FaultKind::Status, None) => out.push("'status' needs a status code".into()),
            (FaultKind::Status, Some(s)) => {
                let lowest = if target == Target::Token { 500 } else { 400 };
                if !(lowest..=599).contains(&s) {
                    out.push(format!("status {s} is outside {lowest}-599"));
                }
            }
            (_, Some(_)) => out.push(format!("'{kind}' takes no status")),
            (_, None) => {}
        }
        let answers_with_error = matches!(
            self.kind,
            FaultKind::Status | FaultKind::TemporarilyUnavailable
        );
        if self.retry_after_secs.is_some() && !answers_with_error {
            out.push(format!("'{kind}' sends no Retry-After"));
        }
        if self.html && self.kind != FaultKind::Status {
            out.push(format!("'{kind}' has no body to send as HTML"));
        }
        if self.kind == FaultKind::Slow && self.delay_ms == 0 {
            out.push("'slow' needs a delay".into());
        }
        if self.delay_ms > MAX_FAULT_DELAY_MS {
            out.push(format!(
                "delay {} ms is over the {MAX_FAULT_DELAY_MS} ms limit",
                self.delay_ms
            ));
        }
        out
    }
}

/// Faults that make no sense, every problem listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid faults: {}", .0.join("; "))]
pub struct FaultsError(pub Vec<String>);

impl Faults {
    /// Only RS256 + `x5t` certificate assertions are accepted.
    pub fn rs256_only() -> Self {
        Faults {
            reject_ps256_assertions: true,
            ..Faults::default()
        }
    }

    /// Adds a token-endpoint fault after those already there.
    #[must_use]
    pub fn with_token(mut self, fault: Fault) -> Self {
        self.token.push(fault);
        self
    }

    /// Adds a Graph fault after those already there.
    #[must_use]
    pub fn with_graph(mut self, fault: Fault) -> Self {
        self.graph.push(fault);
        self
    }

    /// The faults of `target`.
    pub fn of(&self, target: Target) -> &[Fault] {
        match target {
            Target::Token => &self.token,
            Target::Graph => &self.graph,
        }
    }

    /// Checks every fault; all problems are reported at once.
    pub fn validate(&self) -> Result<(), FaultsError> {
        let mut problems = Vec::new();
        for (target, name) in [(Target::Token, "token"), (Target::Graph, "graph")] {
            for (i, fault) in self.of(target).iter().enumerate() {
                problems.extend(
                    fault
                        .problems(target)
                        .into_iter()
                        .map(|p| format!("{name}[{i}]: {p}")),
                );
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(FaultsError(problems))
        }
    }

    /// Faults from `--fault` specs, in order; every bad spec and problem reported.
    pub fn from_specs<S: AsRef<str>>(specs: &[S]) -> Result<Faults, FaultsError> {
        let mut faults = Faults::default();
        let mut problems = Vec::new();
        for spec in specs {
            match spec.as_ref().parse::<FaultSpec>() {
                Ok(FaultSpec(Target::Token, f)) => faults.token.push(f),
                Ok(FaultSpec(Target::Graph, f)) => faults.graph.push(f),
                Err(e) => problems.push(e),
            }
        }
        if let Err(FaultsError(more)) = faults.validate() {
            problems.extend(more);
        }
        if problems.is_empty() {
            Ok(faults)
        } else {
            Err(FaultsError(problems))
        }
    }
}

/// The `--fault` syntax of `graphgate emulate`, for its `--help`.
pub const FAULT_SPEC_HELP: &str = "\
Inject a fault: TARGET-KIND[:OPTION,...], repeatable; each request gets the first fault of its \
target with requests left.
  TARGET   token (the Entra token endpoint) | graph
  KIND     down | reset      read the request, close the connection without an answer
           slow              answer normally after delay-ms
           NNN               answer status NNN with the service's error (token: 5xx; graph: 4xx/5xx)
           unavailable       token: 503 temporarily_unavailable, AADSTS90033
           expired           token: issue a token whose exp has passed (expires_in still claims the full lifetime)
           bad-signature     token: issue a token signed by another key (Graph answers 401)
  OPTION   times=N           only the next N requests (default: all until cleared)
           retry-after=S     send Retry-After: S (NNN and unavailable)
           delay-ms=M        wait M ms first (any kind)
           html              NNN with an HTML body
Examples: --fault token-down:times=2  --fault graph-429:retry-after=5,times=1  --fault graph-429
Change faults at run time with PUT/GET/DELETE https://<any emulated host>/_emulator/faults.";

/// One parsed `--fault` spec: the target and the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec(pub Target, pub Fault);

impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("fault '{}': {why}", spec.escape_debug());
        let (head, options) = spec.split_once(':').unwrap_or((spec, ""));
        let (target, kind) = head
            .split_once('-')
            .ok_or_else(|| bad("expected TARGET-KIND, e.g. graph-429"))?;
        let target = match target {
            "token" => Target::Token,
            "graph" => Target::Graph,
            _ => return Err(bad("the target is 'token' or 'graph'")),
        };
        let mut fault = match kind {
            "down" | "reset" => Fault::reset(),
            "slow" => Fault::new(FaultKind::Slow),
            "unavailable" => Fault::temporarily_unavailable(),
            "expired" => Fault::expired_token(),
            "bad-signature" => Fault::bad_signature_token(),
            n if n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()) => {
                Fault::status(n.parse().map_err(|_| bad("bad status"))?)
            }
            _ => return Err(bad("unknown kind (see --help)")),
        };
        for option in options.split(',').filter(|o| !o.is_empty()) {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| bad(&format!("'{key}' needs a whole number")))
            };
            match key {
                "times" => {
                    fault.times =
                        Some(u32::try_from(number()?).map_err(|_| bad("times too large"))?)
                }
                "retry-after" => {
                    fault.retry_after_secs =
                        Some(u32::try_from(number()?).map_err(|_| bad("retry-after too large"))?);
                }
                "delay-ms" => fault.delay_ms = number()?,
                "html" if value.is_empty() => fault.html = true,
                _ => return Err(bad(&format!("unknown option '{}'", key.escape_debug()))),
            }
        }
        let problems = fault.problems(target);
        if problems.is_empty() {
            Ok(FaultSpec(target, fault))
        } else {
            Err(bad(&problems.join("; ")))
        }
    }
}

/// Faults armed on the emulator: the faults as set, and the requests each has left.
#[derive(Debug, Default)]
pub(crate) struct Armed {
    faults: Faults,
    token_left: Vec<Option<AtomicU32>>,
    graph_left: Vec<Option<AtomicU32>>,
}

impl Armed {
    pub(crate) fn new(faults: Faults) -> Self {
        let counters = |list: &[Fault]| list.iter().map(|f| f.times.map(AtomicU32::new)).collect();
        Armed {
            token_left: counters(&faults.token),
            graph_left: counters(&faults.graph),
            faults,
        }
    }

    /// The faults as set (counts as given, not as left).
    pub(crate) fn config(&self) -> &Faults {
        &self.faults
    }

    fn left(&self, target: Target) -> &[Option<AtomicU32>] {
        match target {
            Target::Token => &self.token_left,
            Target::Graph => &self.graph_left,
        }
    }

    /// Claims the fault for one request to `target`: the first with requests left (its
    /// count taken down by one, atomically), or `None` for a normal answer.
    pub(crate) fn take(&self, target: Target) -> Option<&Fault> {
        for (fault, left) in self.faults.of(target).iter().zip(self.left(target)) {
            let Some(left) = left else {
                return Some(fault);
            };
            if left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
            {
                return Some(fault);
            }
        }
        None
    }

    /// The faults with `times` showing the requests left (0 once used up).
    pub(crate) fn snapshot(&self) -> Faults {
        let mut out = self.faults.clone();
        for target in [Target::Token, Target::Graph] {
            let list = match target {
                Target::Token => &mut out.token,
                Target::Graph => &mut out.graph,
            };
            for (fault, left) in list.iter_mut().zip(self.left(target)) {
                fault.times = left.as_ref().map(|n| n.load(Ordering::Acquire));
            }
        }
        out
    }
}

/// Waits out the fault's delay, if it has one.
pub(crate) async fn wait(fault: Option<&Fault>) {
    if let Some(delay) = fault.map(Fault::delay_duration).filter(|d| !d.is_zero()) {
        tokio::time::sleep(delay).await;
    }
}

/// Adds the fault's `Retry-After`, if it has one.
pub(crate) fn with_retry_after(mut resp: Response<Body>, fault: &Fault) -> Response<Body> {
    if let Some(secs) = fault.retry_after_secs {
        set_header(&mut resp, "retry-after", &secs.to_string());
    }
    resp
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Token => "token",
            Target::Graph => "graph",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_run_out_in_order() {
        let armed = Armed::new(
            Faults::default()
                .with_graph(Fault::status(429).retry_after(1).times(2))
                .with_graph(Fault::status(503).times(1)),
        );
        let seen: Vec<Option<u16>> = (0..5)
            .map(|_| armed.take(Target::Graph).and_then(|f| f.status))
            .collect();
        assert_eq!(seen, [Some(429), Some(429), Some(503), None, None]);
        assert!(armed.take(Target::Token).is_none());
        let left = armed.snapshot();
        assert_eq!(left.graph[0].times, Some(0));
        assert_eq!(armed.config().graph[0].times, Some(2));
    }

    #[test]
    fn unlimited_faults_stay() {
        let armed = Armed::new(Faults::default().with_token(Fault::reset()));
        for _ in 0..3 {
            assert_eq!(
                armed.take(Target::Token).map(|f| f.kind),
                Some(FaultKind::Reset)
            );
        }
        assert_eq!(armed.snapshot().token[0].times, None);
    }

    #[test]
    fn counts_hold_under_contention() {
        let armed = std::sync::Arc::new(Armed::new(
            Faults::default().with_graph(Fault::status(504).times(100)),
        ));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let armed = armed.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .filter(|_| armed.take(Target::Graph).is_some())
                        .count()
                })
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 100);
    }

    #[test]
    fn json_round_trips_and_rejects_unknown_fields() {
        let faults = Faults::default()
            .with_token(Fault::temporarily_unavailable().retry_after(3))
            .with_graph(Fault::status(429).times(2))
            .with_graph(Fault::slow(Duration::from_millis(250)));
        let text = serde_json::to_string(&faults).unwrap();
        assert_eq!(
            text,
            r#"{"reject_ps256_assertions":false,"token":[{"kind":"temporarily_unavailable","retry_after_secs":3}],"graph":[{"kind":"status","status":429,"times":2},{"kind":"slow","delay_ms":250}]}"#
        );
        assert_eq!(serde_json::from_str::<Faults>(&text).unwrap(), faults);
        let down: Faults = serde_json::from_str(r#"{"token":[{"kind":"down"}]}"#).unwrap();
        assert_eq!(down.token[0].kind, FaultKind::Reset);
        assert!(
            serde_json::from_str::<Faults>(r#"{"graph":[{"kind":"reset","tmes":1}]}"#).is_err()
        );
        assert!(serde_json::from_str::<Faults>(r#"{"grpah":[]}"#).is_err());
    }

    #[test]
    fn validate_lists_every_problem() {
        let faults = Faults::default()
            .with_token(Fault::status(429))
            .with_graph(Fault::expired_token())
            .with_graph(Fault::reset().retry_after(1))
            .with_graph(Fault::new(FaultKind::Slow))
            .with_graph(Fault::new(FaultKind::Status))
            .with_graph(Fault::slow(Duration::from_secs(3600)));
        let err = faults.validate().unwrap_err();
        assert_eq!(
            err.0,
            [
                "token[0]: status 429 is outside 500-599",
                "graph[0]: 'expired_token' is a token-endpoint fault",
                "graph[1]: 'reset' sends no Retry-After",
                "graph[2]: 'slow' needs a delay",
                "graph[3]: 'status' needs a status code",
                "graph[4]: delay 3600000 ms is over the 600000 ms limit",
            ]
        );
        assert!(Faults::rs256_only().validate().is_ok());
        assert!(Faults::default().validate().is_ok());
    }

    #[test]
    fn specs_parse() {
        let faults = Faults::from_specs(&[
            "token-down:times=2",
            "token-503:html,retry-after=5",
            "token-unavailable",
            "token-expired",
            "token-bad-signature",
            "token-slow:delay-ms=1500",
            "graph-429:retry-after=5,times=1",
            "graph-429",
            "graph-504:delay-ms=10",
            "graph-reset",
            "graph-401:times=3",
        ])
        .unwrap();
        assert_eq!(faults.token[0], Fault::reset().times(2));
        assert_eq!(faults.token[1], Fault::status(503).html().retry_after(5));
        assert_eq!(faults.token[2].kind, FaultKind::TemporarilyUnavailable);
        assert_eq!(faults.token[5], Fault::slow(Duration::from_millis(1500)));
        assert_eq!(faults.graph[0], Fault::status(429).retry_after(5).times(1));
        assert_eq!(faults.graph[1], Fault::status(429));
        assert_eq!(
            faults.graph[2],
            Fault::status(504).delay(Duration::from_millis(10))
        );
        assert_eq!(faults.graph[4], Fault::status(401).times(3));
    }

    #[test]
    fn bad_specs_are_all_reported() {
        let err = Faults::from_specs(&[
            "graph",
            "web-429",
            "graph-expired",
            "graph-429:retry-after=soon",
            "graph-429:colour=red",
            "token-404",
            "graph-slow",
        ])
        .unwrap_err();
        assert_eq!(err.0.len(), 7, "{err}");
        assert!(err.0[0].contains("expected TARGET-KIND"), "{err}");
        assert!(err.0[2].contains("token-endpoint fault"), "{err}");
        assert!(
            err.0[3].contains("'retry-after' needs a whole number"),
            "{err}"
        );
        assert!(err.0[4].contains("unknown option 'colour'"), "{err}");
        assert!(err.0[5].contains("outside 500-599"), "{err}");
        assert!(err.0[6].contains("'slow' needs a delay"), "{err}");
    }
}
