//! `Operation::directory`: GET the directory (RFC 8555 §7.1.1).
use super::{Flow, Step};
use crate::acme::{AcmeError, Client, Operation, Response};

/// Refetches the directory whether or not the client has one.
struct DirectoryFlow {
    requested: bool,
}

impl Operation<()> {
    /// GET the directory even if the client has one; `client.directory` is then fresh.
    pub fn directory() -> Operation<()> {
        Operation::from_flow(Box::new(DirectoryFlow { requested: false }))
    }
}

impl Flow for DirectoryFlow {
    type Output = ();

    fn needs_directory(&self) -> bool {
        false
    }

    fn step(&mut self, _client: &mut Client, _now: f64) -> Step<()> {
        if self.requested {
            Step::Done(())
        } else {
            self.requested = true;
            Step::FetchDirectory
        }
    }

    fn on_reply(&mut self, _: &mut Client, _: Response, _: f64) -> Result<(), AcmeError> {
        Err(AcmeError::State(
            "unexpected reply for the directory operation".into(),
        ))
    }
}
