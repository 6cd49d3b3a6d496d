//! Exit codes and the mapping from engine errors to them.

use lifeboat_engine::Error;

/// Everything went well.
pub const OK: i32 = 0;
/// A general error.
pub const ERROR: i32 = 1;
/// The run finished but left something out (unreadable files).
pub const INCOMPLETE: i32 = 3;
/// No repository at the destination.
pub const NO_REPOSITORY: i32 = 10;
/// The repository is locked.
pub const LOCKED: i32 = 11;
/// Wrong password.
pub const WRONG_PASSWORD: i32 = 12;
/// Interrupted by the user.
pub const INTERRUPTED: i32 = 130;

/// The exit code for an error that ended a command.
pub fn code_for(err: &anyhow::Error) -> i32 {
    match err.downcast_ref::<Error>() {
        Some(Error::NoRepository { .. }) => NO_REPOSITORY,
        Some(Error::Locked { .. }) => LOCKED,
        Some(Error::WrongPassword | Error::KeyRemoved { .. }) => WRONG_PASSWORD,
        Some(Error::Interrupted) => INTERRUPTED,
        _ => ERROR,
    }
}
