//! Operations: what the commands do, each built on [`crate::repo`] for
//! storage and [`crate::format`] for bytes. An operation never talks to a
//! backend directly and never encodes a stored object by hand.

pub mod backup;
pub mod check;
pub mod diff;
pub mod drill;
pub mod dump;
pub mod find;
pub mod forget;
pub mod key_admin;
pub mod ls;
pub mod mount;
pub mod patterns;
pub mod prune;
pub mod push;
pub mod repair;
pub mod restore;
pub mod rewrite;
pub mod stats;
pub mod status;
pub mod sync;
pub mod tag;
