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

/// Exit code of a usage mistake (a bad flag value, an unknown name).
pub const USAGE: i32 = 2;

/// A usage mistake: the command line, not the repository, is at fault.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A usage mistake as an error for `?`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(message.into()))
}

/// The exit code for an error that ended a command.
pub fn code_for(err: &anyhow::Error) -> i32 {
    if err.chain().any(|c| c.is::<Usage>()) {
        return USAGE;
    }
    match err.downcast_ref::<Error>() {
        Some(Error::NoRepository { .. }) => NO_REPOSITORY,
        Some(Error::Locked { .. }) => LOCKED,
        Some(Error::WrongPassword | Error::KeyRemoved { .. }) => WRONG_PASSWORD,
        Some(Error::Interrupted) => INTERRUPTED,
        _ => ERROR,
    }
}

/// The message for an error that ended a command, on one line: the chain of
/// causes joined with `: `, leaving out a cause whose text is already shown
/// (an engine I/O error names its cause in its own message), and any line
/// break replaced.
pub fn one_line(err: &anyhow::Error) -> String {
    if code_for(err) == INTERRUPTED {
        return "interrupted before finishing; run the command again \
                (a backup reuses the data it already uploaded)"
            .into();
    }
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || message.contains(text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(text);
    }
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_drops_repeated_causes_and_line_breaks() {
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let err = anyhow::Error::new(Error::io("/x", io)).context("restore");
        let text = one_line(&err);
        assert_eq!(text.matches("permission denied").count(), 1, "{text}");
        assert!(text.starts_with("restore: /x: "), "{text}");
        let err = anyhow::anyhow!("first\nsecond\n");
        assert_eq!(one_line(&err), "first; second");
        let err = anyhow::Error::new(Error::Interrupted);
        assert!(one_line(&err).starts_with("interrupted"));
    }
}
