//! graphgate: an authenticating reverse-proxy gateway between internal services and
//! Microsoft Graph for privileged Intune device actions.
pub mod catalog;
pub mod cloud;
pub mod emulator;
pub mod graph_error;
pub mod route;
pub mod schema;
pub mod secret;
pub mod tls;
