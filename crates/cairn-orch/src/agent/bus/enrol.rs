//! An agent's enrolment over the bus: a proof of the token, not the token.

/// The proof of the enrolment token an agent sends over the bus, where the
/// token itself would be read by every subscriber: an HMAC of its id and
/// key fingerprint under the token, so it enrols that key and no other.
pub fn enrolment_proof(token: &str, id: &str, fingerprint: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token.as_bytes());
    let tag = ring::hmac::sign(&key, format!("cairn-enrol\0{id}\0{fingerprint}").as_bytes());
    hex::encode(tag.as_ref())
}

/// Checks a proof in constant time.
pub fn check_enrolment_proof(token: &str, id: &str, fingerprint: &str, proof: &str) -> bool {
    let Some(bytes) = (0..proof.len())
        .step_by(2)
        .map(|i| {
            proof
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token.as_bytes());
    ring::hmac::verify(
        &key,
        format!("cairn-enrol\0{id}\0{fingerprint}").as_bytes(),
        &bytes,
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_enrolment_proof_binds_the_token_to_one_key() {
        let p = enrolment_proof("s3cret", "a1", "f1");
        assert!(check_enrolment_proof("s3cret", "a1", "f1", &p));
        assert!(!check_enrolment_proof("s3cret", "a1", "f2", &p));
        assert!(!check_enrolment_proof("s3cret", "a2", "f1", &p));
        assert!(!check_enrolment_proof("other", "a1", "f1", &p));
        assert!(!check_enrolment_proof("s3cret", "a1", "f1", "zz"));
        assert!(!check_enrolment_proof("s3cret", "a1", "f1", "abc"));
    }
}
