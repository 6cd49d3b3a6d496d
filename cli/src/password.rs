//! Where the password comes from: --password-file / LIFEBOAT_PASSWORD_FILE,
//! LIFEBOAT_PASSWORD, or a prompt on the terminal. Never logged or echoed.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context, Result};
use zeroize::Zeroizing;

/// A password held in memory, wiped on drop.
pub type Secret = Zeroizing<Vec<u8>>;

/// The first line of a password file.
pub fn from_file(path: &Path) -> Result<Secret> {
    // The whole file is wiped too, not only the line taken from it.
    let text = Zeroizing::new(
        std::fs::read(path)
            .with_context(|| format!("cannot read password file {}", path.display()))?,
    );
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line).to_vec();
    if line.is_empty() {
        bail!("password file {} is empty", path.display());
    }
    Ok(Zeroizing::new(line))
}

fn from_env() -> Option<Secret> {
    std::env::var_os("LIFEBOAT_PASSWORD")
        .map(|v| Zeroizing::new(std::os::unix::ffi::OsStringExt::into_vec(v)))
}

fn no_terminal() -> anyhow::Error {
    anyhow::anyhow!(
        "no password given and no terminal to ask on: set LIFEBOAT_PASSWORD or LIFEBOAT_PASSWORD_FILE, or pass --password-file"
    )
}

/// The password to open an existing repository.
pub fn existing(password_file: Option<&Path>) -> Result<Secret> {
    if let Some(path) = password_file {
        return from_file(path);
    }
    if let Some(p) = from_env() {
        if p.is_empty() {
            bail!("LIFEBOAT_PASSWORD is set but empty; set it to the repository's password, or unset it to be asked");
        }
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(no_terminal());
    }
    let p =
        rpassword::prompt_password("Repository password: ").context("cannot read the password")?;
    if p.is_empty() {
        bail!("no password entered");
    }
    Ok(Zeroizing::new(p.into_bytes()))
}

/// The password for a new repository: asked twice on a terminal.
pub fn new(password_file: Option<&Path>) -> Result<Secret> {
    if let Some(path) = password_file {
        return from_file(path);
    }
    if let Some(p) = from_env() {
        if p.is_empty() {
            bail!("LIFEBOAT_PASSWORD is empty; choose a password");
        }
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(no_terminal());
    }
    let first =
        Zeroizing::new(rpassword::prompt_password("New repository password: ")?.into_bytes());
    if first.is_empty() {
        bail!("an empty password is not allowed");
    }
    let second = Zeroizing::new(rpassword::prompt_password("Enter it again: ")?.into_bytes());
    if *first != *second {
        bail!("the two passwords differ; nothing was created");
    }
    Ok(first)
}

/// The password of a key being added (`key add`, `key passwd`): from `path`,
/// else `LIFEBOAT_NEW_PASSWORD`, else asked twice on a terminal. Never the
/// repository's own password variables, so a script cannot reuse one by mistake.
pub fn new_key(path: Option<&Path>) -> Result<Secret> {
    if let Some(path) = path {
        return from_file(path);
    }
    if let Some(p) = std::env::var_os("LIFEBOAT_NEW_PASSWORD") {
        if p.is_empty() {
            bail!("LIFEBOAT_NEW_PASSWORD is empty; choose a password");
        }
        return Ok(Zeroizing::new(std::os::unix::ffi::OsStringExt::into_vec(p)));
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "no new password given and no terminal to ask on: pass --new-password-file or set LIFEBOAT_NEW_PASSWORD"
        );
    }
    let first = Zeroizing::new(rpassword::prompt_password("New password: ")?.into_bytes());
    if first.is_empty() {
        bail!("an empty password is not allowed");
    }
    let second = Zeroizing::new(rpassword::prompt_password("Enter it again: ")?.into_bytes());
    if *first != *second {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}
