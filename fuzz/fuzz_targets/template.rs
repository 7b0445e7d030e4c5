//! Templates (`mailgate_core::template`): validation when saved, rendering with a send's data,
//! and the rendered address lists split and parsed as a send does.
//!
//! Input: NUL-separated fields `subject`, `html`, `text`, `from`, `reply_to`, `cc`, `bcc`, then
//! the data as JSON (an object; a fixed sample when absent or not an object).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_core::address::Mailbox;
use mailgate_core::template::{split_addresses, Template};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let mut field = || parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
    let template = Template {
        subject: field(),
        html: field(),
        text: field(),
        from: field(),
        reply_to: field(),
        cc: field(),
        bcc: field(),
        provider_template: None,
    };
    let data = field()
        .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_else(|| {
            serde_json::json!({"code": "123456", "name": "<Ann & \"Bob\">", "app": "Acme",
                "link": "https://acme.example/verify?t=abc", "items": [1, 2, 3],
                "user": {"email": "ann@example.com", "locale": "fr-CA"}})
            .as_object()
            .cloned()
            .unwrap_or_default()
        });
    let _ = template.validate();
    if let Ok(r) = template.render(&data) {
        for list in [&r.from, &r.reply_to, &r.cc, &r.bcc].into_iter().flatten() {
            for one in split_addresses(list) {
                let _ = Mailbox::parse(one, "to");
            }
        }
    }
});
