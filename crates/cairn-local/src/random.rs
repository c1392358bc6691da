//! Random secrets for the local cloud (tokens, passwords), from the OS.

/// `n` random bytes as hex.
pub fn hex(n: usize) -> Result<String, getrandom::Error> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}
