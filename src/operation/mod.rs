//! The operation model: the catalog of Graph operations the gateway knows (as data), how a
//! request path is recognised as one of them, the schemas their bodies are checked against,
//! the simplified API (`/api/v1/...`) that maps flat bodies onto Graph's, and the reference
//! a reader gets of all of it (`graphgate operations`).

pub mod catalog;
pub mod reference;
pub mod route;
pub mod schema;
pub mod simple;
