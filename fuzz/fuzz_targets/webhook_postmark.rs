//! Postmark webhooks after authentication: one JSON record into a normalized event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_core::Timestamp;
use mailgate_providers::webhook::parse_authenticated;

fuzz_target!(|data: &[u8]| {
    let _ = parse_authenticated::postmark(data, Timestamp(1_735_689_600_000));
});
