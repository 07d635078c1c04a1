//! The end-to-end tests, linked into one binary so the crate is linked once: the gateway,
//! the emulator, the CLI and the shipped deploy files, each against real processes and
//! sockets on `127.0.0.1:0`. `common` is the shared harness.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// These tests time real processes and sockets, often under a paused Tokio clock: their own
// bounds are on the std clock (the crate's code reads time only through `clock`).
#![allow(clippy::disallowed_methods)]

mod common;

mod admin_listener;
mod approvals;
mod approvals_cli;
mod audit;
mod audit_chain;
mod audit_checkpoints;
mod audit_cli;
mod audit_ends;
mod audit_ship;
mod audit_volume;
mod audit_witness;
mod authority;
mod bulk;
mod catalog;
mod cli;
mod cli_comforts;
mod conditions;
mod connections;
mod console;
mod console_approvals;
mod console_scale;
mod crash;
mod credentials;
mod demo_callers;
mod deploy;
mod docs;
mod emulator;
mod emulator_csdl;
mod emulator_devices;
mod emulator_faults;
mod gateway;
mod hostile;
mod http2_abuse;
mod inflight;
mod input;
mod jwt_callers;
mod jwt_discovery;
mod jwt_hostile;
mod maa;
mod metrics;
mod monitoring;
mod mtls;
mod observability;
mod operator;
mod otlp_tls;
mod parking;
mod people;
mod policy;
mod reconcile;
mod refusal_logs;
mod reload;
mod resilience;
mod rfc6962;
mod schemathesis;
mod sdk;
mod shared_state;
mod shutdown;
mod startup;
mod state_contract;
mod state_store;
mod stated;
mod webhooks;
