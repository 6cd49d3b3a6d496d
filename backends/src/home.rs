//! `~` in paths the user writes: the shell expands it on a command line, but
//! not in a config file, a URL's query string or a quoted pattern.

/// Expands a leading `~`, `~/`, `$HOME` or `${HOME}` to the home directory,
/// in paths and patterns alike. `~user/…` and a `~` further in are left as
/// they are, as is everything when there is no home directory.
pub fn expand_user(text: &str) -> String {
    let Some(home) = dirs::home_dir() else {
        return text.to_string();
    };
    let home = home.display().to_string();
    for prefix in ["~", "$HOME", "${HOME}"] {
        if let Some(rest) = text.strip_prefix(prefix) {
            if rest.is_empty() || rest.starts_with('/') {
                return format!("{home}{rest}");
            }
        }
    }
    text.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_is_expanded_at_the_start_only() {
        let home = dirs::home_dir()
            .expect("a home directory")
            .display()
            .to_string();
        assert_eq!(expand_user("~/.cache"), format!("{home}/.cache"));
        assert_eq!(expand_user("$HOME/x"), format!("{home}/x"));
        assert_eq!(expand_user("${HOME}"), home);
        assert_eq!(expand_user("~"), home);
        assert_eq!(expand_user("~other/x"), "~other/x");
        assert_eq!(expand_user("~x"), "~x");
        assert_eq!(expand_user("*.tmp"), "*.tmp");
        assert_eq!(expand_user("a/~/b"), "a/~/b");
    }
}
