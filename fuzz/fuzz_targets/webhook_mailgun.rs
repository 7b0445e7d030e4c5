//! Mailgun webhooks after authentication: the JSON body's `event-data` into a normalized event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_providers::webhook::parse_authenticated;

fuzz_target!(|data: &[u8]| {
    let _ = parse_authenticated::mailgun(data);
});
