//! Resend webhooks after authentication: one JSON event into a normalized event.
//!
//! Input: the `svix-id` header value, a newline, the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_core::Timestamp;
use mailgate_providers::webhook::parse_authenticated;

fuzz_target!(|data: &[u8]| {
    let (id, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"msg_fuzz"[..], data),
    };
    let id = String::from_utf8_lossy(id);
    let _ = parse_authenticated::resend(&id, body, Timestamp(1_735_689_600_000));
});
