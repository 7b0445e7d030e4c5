//! SendGrid webhooks after authentication: a JSON array of events, one normalized event each.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_providers::webhook::parse_authenticated;

fuzz_target!(|data: &[u8]| {
    let _ = parse_authenticated::sendgrid(data);
});
