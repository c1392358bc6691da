//! The names of apps and versions, checked.

/// Names of apps and versions become directory names, S3 keys and shell
/// words on hosts, so they are kept to a set that is safe in all three.
pub fn check_name(what: &'static str, name: &str) -> crate::error::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(crate::error::ReleaseError::BadName {
            what,
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_safe_as_paths_keys_and_shell_words() {
        for good in [
            "web",
            "api-2",
            "v1.2.3",
            "1.0+build.5",
            "20261205.055100",
            "a_b",
        ] {
            check_name("version", good).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "-x",
            "a/b",
            "a b",
            "a'b",
            "é",
            &"x".repeat(129),
        ] {
            let err = check_name("version", bad).unwrap_err();
            assert!(err.to_string().contains("version"), "{err}");
        }
    }
}
