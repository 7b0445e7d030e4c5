//! The built-in templates: one for each well-known usage type, in English, used when an
//! environment has none of its own. One responsive, accessible layout (`layout.html`, with a text
//! twin) is filled with each usage type's words. Every one shows `link` as a button when the data
//! has one, and `code` otherwise; `app_name` and `expires_in_minutes` are optional.

use serde_json::{json, Map, Value};

use super::{Locale, Template, UsageType};

/// The locale of the built-in templates.
pub const BUILTIN_LOCALE: &str = "en";

const LAYOUT_HTML: &str = include_str!("builtin/layout.html");
const LAYOUT_TEXT: &str = include_str!("builtin/layout.txt");

/// (usage, subject, title, intro, action)
const WORDS: [(&str, &str, &str, &str, &str); 7] = [
    (
        "Register",
        "Finish creating your account",
        "Finish creating your account",
        "Use this to confirm your email address and finish signing up.",
        "Confirm my email",
    ),
    (
        "SignIn",
        "Your sign-in code",
        "Sign in",
        "Use this to sign in. Never share it with anyone.",
        "Sign in",
    ),
    (
        "ForgotPassword",
        "Reset your password",
        "Reset your password",
        "Someone asked to reset the password of your account. Use this to choose a new one.",
        "Reset my password",
    ),
    (
        "Invitation",
        "You have been invited",
        "You have been invited",
        "You have been invited to join. Accept the invitation to get started.",
        "Accept the invitation",
    ),
    (
        "MagicLink",
        "Your sign-in link",
        "Sign in",
        "Use this link to sign in. It works once and expires soon.",
        "Sign in",
    ),
    (
        "EmailVerification",
        "Verify your email address",
        "Verify your email address",
        "Use this to confirm that this email address is yours.",
        "Verify my email",
    ),
    (
        "Generic",
        "Your verification code",
        "Your verification code",
        "Use this to continue.",
        "Continue",
    ),
];

/// The built-in template of a well-known usage type.
pub fn builtin(usage: &UsageType) -> Option<Template> {
    let (_, subject, title, intro, action) = WORDS.iter().find(|(u, ..)| *u == usage.as_str())?;
    let fill = |s: &str| {
        s.replace("%TITLE%", title)
            .replace("%INTRO%", intro)
            .replace("%ACTION%", action)
    };
    Some(Template {
        subject: Some(format!(
            "{{% if app_name is defined %}}{{{{ app_name }}}}: {{% endif %}}{subject}"
        )),
        html: Some(fill(LAYOUT_HTML)),
        text: Some(fill(LAYOUT_TEXT)),
        ..Template::default()
    })
}

/// The locale of the built-in templates, as a [`Locale`].
pub(crate) fn builtin_locale() -> Locale {
    Locale::english()
}

/// Sample data for previews: a code or a link fitting the usage type, under what the caller gave.
pub fn sample_data(usage: &UsageType, given: &Map<String, Value>) -> Map<String, Value> {
    let mut data = match usage.as_str() {
        "MagicLink" | "Invitation" => {
            json!({ "link": "https://example.com/auth/verify?token=sample-token" })
        }
        _ => json!({ "code": "123456" }),
    }
    .as_object()
    .cloned()
    .unwrap_or_default();
    data.insert("app_name".into(), Value::from("Example"));
    data.insert("expires_in_minutes".into(), Value::from(10));
    data.extend(given.clone());
    data
}
