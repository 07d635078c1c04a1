//! graphgate: an authenticating reverse-proxy gateway between internal services and
//! Microsoft Graph, for privileged Intune device-management actions.
//!
//! The map, in the order a request meets it:
//! - [`server`]: the listener (connection caps per source and in total, a deadline for every
//!   connection state, an HTTP/2 control-frame budget, HTTP/1.1 + HTTP/2, graceful shutdown).
//!   [`slots`] holds the per-key caps it and the gateway use.
//! - [`gateway`]: **the request pipeline, in one place**: ids → identity → recognition →
//!   body validation → policy → token → audit intent → forward → audit outcome.
//! - [`identity`]: who the caller is (API key or client certificate; [`client_crl`] checks
//!   certificates against a CRL file that follows its changes).
//! - [`route`] and [`catalog`]: which Graph operation a path is, on which device; the
//!   operations themselves are data in the catalog. [`schema`] validates their bodies.
//! - [`policy`]: the deny-by-default allow-list (`policy.yaml`); [`reload`] replaces it on
//!   SIGHUP or when a complete new file is in place.
//! - [`audit`]: the durable, hash-chained audit log, its writer, `verify` and `query`.
//! - [`telemetry`], [`metrics`] and [`admin`]: logs, OTLP traces, Prometheus metrics, and the
//!   admin listener serving `/metrics`, `/healthz`, `/readyz` and the audit [`console`].
//! - [`token`] and [`credential`]: the cached app-only Entra token and how it is obtained.
//! - [`upstream`]: the outbound HTTPS client (and connect-to overrides for tests).
//! - [`cloud`]: the national-cloud table.
//! - [`error`] and [`graph_error`]: failures as Graph-shaped error responses.
//! - [`secret`] and [`tls`]: secret-bearing values and TLS plumbing.
//! - [`app`]: assembling a gateway from typed settings; [`demo`]: `serve --emulator`.
//! - [`emulator`]: the Entra + Graph stand-in used by the tests and the demo.
pub mod admin;
pub mod answer;
pub mod app;
pub mod audit;
pub mod breaker;
pub mod catalog;
pub mod client_crl;
pub mod cloud;
pub mod console;
pub mod credential;
pub mod demo;
pub mod emulator;
pub mod error;
pub mod explain;
pub mod forward;
pub mod gateway;
pub mod graph_error;
pub mod idempotency;
pub mod identity;
pub mod inbound;
pub mod metrics;
pub mod policy;
pub mod ratelimit;
pub mod reload;
pub mod route;
pub mod schema;
pub mod secret;
pub mod server;
pub mod simple;
pub mod slots;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod upstream;
