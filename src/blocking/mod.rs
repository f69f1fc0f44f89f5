//! Driving the sans-I/O core outside nginx: a ureq 3 transport ([`Driver`]), challenge
//! publishers for the CLI (an http-01 standalone responder and a dns-01 hook runner), and a
//! reader/writer of the original library's file storage format ([`FileStore`]).

mod driver;
mod error;
mod publisher;
mod remote;
mod store;

pub use driver::{unix_now, Driver, DriverOptions};
pub use error::BlockingError;
pub use publisher::{ChallengePublisher, DnsHookPublisher, Http01Responder, NoPublisher};
pub use remote::AnyStore;
pub use store::{updated_now, write_private_file, CertEntry, FileStore, ACCOUNT_KEY_KEY};
