//! SES events through SNS, after authentication: an SNS `Notification` envelope whose `Message`
//! is the SES event (both formats), fanned out per recipient.
//!
//! Input: the envelope (JSON), or `!` followed by the SES event itself, which the harness wraps
//! in an envelope (so mutations reach the inner JSON directly).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_core::Timestamp;
use mailgate_providers::webhook::parse_authenticated;

const NOW: Timestamp = Timestamp(1_735_689_600_000);

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((b'!', inner)) => {
            let envelope = serde_json::json!({"Type": "Notification", "MessageId": "fuzz-1",
                "Message": String::from_utf8_lossy(inner)});
            let body = serde_json::to_vec(&envelope).unwrap_or_default();
            let _ = parse_authenticated::ses(&body, NOW);
        }
        _ => {
            let _ = parse_authenticated::ses(data, NOW);
        }
    }
});
