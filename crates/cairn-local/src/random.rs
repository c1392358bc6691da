//! Random secrets for the local cloud (tokens, passwords), from the OS.

/// `n` random bytes as hex.
pub fn hex(n: usize) -> Result<String, getrandom::Error> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
