//! The operation model: the catalog of Graph operations the gateway knows (as data), how a
//! request path is recognised as one of them, the schemas their bodies are checked against,
//! and the simplified API (`/api/v1/...`) that maps flat bodies onto Graph's.

pub mod catalog;
pub mod route;
pub mod schema;
pub mod simple;
