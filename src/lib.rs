//! graphgate: an authenticating reverse-proxy gateway between internal services and
//! Microsoft Graph for privileged Intune device actions.
pub mod app;
pub mod catalog;
pub mod cloud;
pub mod credential;
pub mod error;
pub mod gateway;
pub mod graph_error;
pub mod identity;
pub mod policy;
pub mod route;
pub mod schema;
pub mod secret;
pub mod server;
pub mod tls;
pub mod token;
pub mod upstream;
