//! `POST /v1/emails`: the JSON body as the HTTP edge parses it (`json::parse` into `SendEmailIn`,
//! then `SendEmailIn::into_request`, the one place a body becomes a core `SendRequest`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_server::dto::SendEmailIn;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(input) = mailgate_server::json::parse::<SendEmailIn>(&value) else {
        return;
    };
    let _ = input.into_request();
});
