//! graphgate: an authenticating reverse-proxy gateway between internal services and
//! Microsoft Graph, for privileged Intune device-management actions.
//!
//! The map, in the order a request meets it (modules marked *crate* are private to it):
//! - [`app`]: start-up after the flags: a typed [`app::ServeConfig`] whose files are read
//!   with every problem reported at once, then [`app::App::run`] on listeners the caller
//!   bound, with the policy reloader, audit shipping and the admin listener beside it. The
//!   binary (`src/main.rs`, `src/cli/`) reads the flags and the environment; tests start a
//!   gateway the same way.
//! - [`server`]: the listener (connection caps per source and in total, a deadline for every
//!   connection state, an HTTP/2 control-frame budget, HTTP/1.1 + HTTP/2, idle HTTP/1.1
//!   connections parked outside hyper, the allocator's free memory returned once quiet,
//!   graceful shutdown).
//!   `slots` (*crate*) holds the per-key caps it and the gateway use.
//! - [`gateway`]: **the request pipeline, in one place**, as four stages called in order:
//!   identify → admit → decide (ending with the approval gate) → execute (idempotency →
//!   pacing → token → durable audit intent → Graph), stopping what is not yet sent once
//!   shutdown begins, and sampling refusals' log lines. [`gateway::decision`] is the policy
//!   question it shares with
//!   [`gateway::explain`] (`policy explain`, `policy test`).
//! - [`identity`]: who the caller is (API key, client certificate, or a JWT from an issuer
//!   the policy trusts: [`identity::jwt`]; [`tls::client_crl`] checks certificates against
//!   a CRL file), and the person and reason a request is made for ([`identity::stated`]).
//! - `admit` (*crate*): admission, shared by the gateway and `policy explain`: request ids,
//!   the operation, query, idempotency key, content type, and the body read within bounds,
//!   parsed once and validated. [`bulk`]: the bulk `executeAction`, decided per device.
//! - [`operation`]: the operation model: the [`operation::catalog`] of Graph operations (as
//!   data), [`operation::route`] recognition of a path, [`operation::schema`] for bodies,
//!   the [`operation::simple`] flat API, and [`operation::reference`], the catalog as
//!   `graphgate operations` and the operations reference describe it.
//! - [`policy`]: the deny-by-default allow-list (`policy.yaml`) and its typed refusal
//!   ([`policy::Forbidden`]); [`reload`] replaces it on SIGHUP or when a new file is in place.
//! - [`approval`]: four-eyes approvals: a request under a rule with `approval:` is held (202
//!   and the approval resource) until distinct people from every group approve its exact
//!   content, then run once across replicas; the approval API; break glass; the events every
//!   change emits (the rules themselves are [`policy::approval`]); Intune's Multi Admin
//!   Approval handled for callers ([`approval::maa`]): a write Intune holds becomes an
//!   approval, sent again once with Intune's code when a person approves it there;
//!   [`notify`] sends every change to the policy's webhooks (JSON, Teams, Slack), signed,
//!   from bounded queues.
//! - [`ratelimit`]: the policy's rate limits (in devices), daily budgets, the tenant write
//!   pacing and the dry-run rate ([`ratelimit::ledger`]: the memory store's budgets kept
//!   across restarts through the audit intents); [`idempotency`]: no double execution of a
//!   repeated request; [`state`]: where both keep their counts and claims (and approvals, as
//!   versioned records), behind one contract ([`state::Store`]) kept in this process or in
//!   Redis shared by every replica, under the deployment's name ([`state::Namespace`]).
//! - [`token`] and [`credential`]: the cached app-only Entra token (with its own circuit
//!   breaker) and how it is obtained.
//! - [`audit`]: the durable, hash-chained audit log: the per-request trail whose intent is
//!   durable before Graph is called, its writer, `verify` and `query`; the log as an RFC 6962
//!   Merkle tree ([`audit::checkpoints::tree`]) whose signed checkpoints witnesses cosign
//!   ([`audit::witnessing`]), receipts, tiles, and the refusal to launder a cut log at start.
//! - [`witness`]: `graphgate witness serve`, the C2SP tlog-witness a security team runs
//!   apart from the gateway.
//! - [`forward`]: sending an admitted request to Graph and what may be retried;
//!   [`upstream`]: the outbound HTTPS client (and connect-to overrides for tests).
//! - `error` (*crate*): every stage's failure and the one place it becomes status, Graph
//!   error code, message and headers; `graph_error` (*crate*) is Graph's error JSON;
//!   `answer` (*crate*) words the gateway's own answers (ids, dry runs, disclosures).
//! - [`telemetry`], [`metrics`] and [`admin`]: logs, OTLP traces, Prometheus metrics, and the
//!   admin listener serving `/metrics`, `/healthz`, `/readyz` and the audit [`console`]
//!   (with its read-only approvals pages)
//!   (over TLS if asked; on loopback only to requests addressed there); [`otlp`]: the OTLP
//!   exporters' transport (TLS to the collector, client certificates).
//! - [`cloud`]: the national-cloud table; [`clock`]: time, read in one place; [`secret`] and
//!   [`tls`]: secret-bearing values and TLS plumbing; [`words`]: counted nouns and "did you
//!   mean" in messages.
//!
//! Not here: the Entra + Graph emulator that stands for Microsoft in the tests and in
//! `serve --emulator` is a crate of its own (`emulator/`), which this library does not
//! depend on and which builds without the binary's `emulator` feature leave out.
//!
//! Dependencies point one way: `.ci/modgraph.py` prints the module graph and fails CI on a
//! cycle at any depth (between top-level modules, and inside every folder).
pub mod admin;
pub(crate) mod admit;
pub(crate) mod answer;
pub mod app;
pub mod approval;
pub mod audit;
pub mod bulk;
pub mod clock;
pub mod cloud;
pub mod console;
pub mod credential;
pub(crate) mod error;
pub mod forward;
pub mod gateway;
pub(crate) mod graph_error;
pub mod idempotency;
pub mod identity;
pub mod metrics;
pub mod notify;
pub mod operation;
pub mod otlp;
pub mod policy;
pub mod ratelimit;
pub mod reload;
pub mod secret;
pub mod server;
pub(crate) mod slots;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod upstream;
pub mod witness;
pub mod words;
