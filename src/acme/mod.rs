//! The RFC 8555 client as a sans-I/O state machine: no socket, no clock, no Lua.
//!
//! A [`Client`] holds what the account needs across operations (directory, nonce pool, account
//! key, account URL). Each protocol operation is an [`Operation`]: the caller asks
//! [`Operation::next_action`] what to do, does it (an HTTP exchange, a sleep, publishing a
//! challenge), and feeds the result back through a `handle_*` method, until the action is
//! [`Action::Done`] or [`Action::Failed`]. The caller passes `now` (Unix seconds) in.

mod error;
pub mod http;
pub mod problem;

pub use error::AcmeError;
pub use http::{Method, Request, Response};
pub use problem::Problem;
pub mod client;
pub use client::{
    Action, ChallengeTask, ChallengeType, Client, ClientConfig, Directory, Eab, Identifier,
    NewAccount, Operation, OrderRequest, Outcome,
};
