//! The agent protocol's decoder: what a master reads from an agent (and an
//! agent from a master) before anything else happens. Any bytes must decode
//! to a message or to an error, never a panic; a message that decodes must
//! encode back to a frame that decodes to the same message; and a job
//! message goes through the agent's guard, which must answer (run or
//! refuse) without panicking, and refuse the same nonce the second time.
//! On a bus the same bytes arrive inside a signed envelope: opening one
//! must check or refuse it without panicking, and an opened body goes
//! through the same decoders.

#![no_main]

use cairn_orch::agent::Guard;
use cairn_orch::agent::protocol::{ToAgent, ToMaster, decode, encode};
use cairn_orch::agent::seal::open;
use libfuzzer_sys::fuzz_target;

fn round_trip<T>(msg: &T)
where
    T: serde::Serialize + for<'de> serde::Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    let frame = encode(msg);
    let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 4, "the length prefix is the body's");
    let back: T = decode(&frame[4..]).expect("an encoded message decodes");
    assert_eq!(&back, msg);
}

fuzz_target!(|data: &[u8]| {
    frame(data);
    if let Ok(opened) = open("cairn.agent.a1.job", data) {
        frame(opened.body.as_bytes());
    }
});

fn frame(data: &[u8]) {
    if let Ok(msg) = decode::<ToMaster>(data) {
        round_trip(&msg);
    }
    if let Ok(msg) = decode::<ToAgent>(data) {
        round_trip(&msg);
        if let ToAgent::Job(job) = msg {
            let mut guard = Guard::new("a1");
            let now = 1_796_440_000_000;
            if guard.check(&job, now).is_ok() {
                assert!(guard.check(&job, now).is_err(), "a replay is refused");
            }
        }
    }
}
