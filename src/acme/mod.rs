//! The RFC 8555 client as a sans-I/O state machine: no socket, no clock, no Lua.
//!
//! A [`Client`] holds what the account needs across operations (directory, nonce pool, account
//! key, account URL). Each protocol operation is an [`Operation`]: the caller asks
//! [`Operation::next_action`] what to do, does it (an HTTP exchange, a sleep, publishing a
//! challenge), and feeds the result back through a `handle_*` method, until the action is
//! [`Action::Done`] or [`Action::Failed`]. The caller passes `now` (Unix seconds) in.
//!
//! ```no_run
//! # use resty_acme_core::acme::*;
//! # fn transport(_: &Request) -> Result<Response, String> { unimplemented!() }
//! # fn run(client: &mut Client, req: OrderRequest, now: impl Fn() -> f64) -> Result<IssuedCertificate, AcmeError> {
//! let mut op = Operation::order(req);
//! loop {
//!     match op.next_action(client, now()) {
//!         Action::Http(req) => match transport(&req) {
//!             Ok(resp) => op.handle_response(client, resp, now()),
//!             Err(e) => op.handle_transport_error(client, e),
//!         },
//!         Action::Sign(job) => op.handle_signature(client, job.sign().map_err(|e| e.to_string())),
//!         Action::Sleep { until } => { /* sleep until `until`, then ask again */ }
//!         Action::Publish(task) => op.handle_published(client, Ok(())),
//!         Action::Unpublish(task) => op.handle_unpublished(client),
//!         Action::Done(cert) => return Ok(cert),
//!         Action::Failed(err) => return Err(err),
//!     }
//! }
//! # }
//! ```

mod authorization;
pub mod backoff;
mod challenge;
pub mod client;
mod directory;
mod error;
mod flow;
pub mod http;
mod identifier;
mod jws;
mod link;
mod nonce;
mod operation;
pub mod persist;
mod poll;
pub mod problem;
pub mod renewal;
mod timestamp;
mod types;

#[cfg(test)]
mod flow_tests;
#[cfg(test)]
mod proptests;

pub use challenge::{ChallengeTask, ChallengeType};
pub use client::{Client, ClientConfig};
pub use error::AcmeError;
pub use flow::{AccountInfo, Eab, IssuedCertificate, NewAccount, OrderRequest, RenewalWindow};
pub use http::{Method, Request, Response};
pub use identifier::Identifier;
pub use link::parse_field as parse_link_header;
pub use operation::{Action, Operation, SignJob};
pub use problem::Problem;
pub use timestamp::{parse_http_date, parse_rfc3339};
pub use types::Directory;
