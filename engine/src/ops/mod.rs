//! Operations: what the commands do, each built on [`crate::repo`] for
//! storage and [`crate::format`] for bytes. An operation never talks to a
//! backend directly and never encodes a stored object by hand.

pub mod backup;
pub mod check;
pub mod drill;
pub mod forget;
pub mod key_admin;
pub mod ls;
pub mod mount;
pub mod prune;
pub mod push;
pub mod repair;
pub mod restore;
pub mod status;
pub mod sync;
