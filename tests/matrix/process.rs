//! Cases that drive the real binary: SIGKILL, full disks, dead servers.

use super::ProcessCase;

/// Every process case, in table order.
pub const CASES: &[ProcessCase] = &[];
