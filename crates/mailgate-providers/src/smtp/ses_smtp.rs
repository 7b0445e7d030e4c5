//! Amazon SES SMTP credentials: the SMTP password is derived from the IAM secret access key for
//! one region (SES "version 4" algorithm), and the host follows from the region.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The SES SMTP endpoint of `region`.
pub(crate) fn ses_smtp_host(region: &str) -> String {
    format!("email-smtp.{region}.amazonaws.com")
}

/// Whether `region` looks like an AWS region name (`us-east-1`, `eu-central-2`, …).
pub(crate) fn is_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-')
}

/// Derives the SES SMTP password (v4) for `region` from an IAM secret access key:
/// `base64(0x04 ‖ HMAC chain("AWS4"+secret; "11111111", region, "ses", "aws4_request",
/// "SendRawEmail"))`.
pub(crate) fn ses_smtp_password(secret_access_key: &str, region: &str) -> String {
    let mut key = hmac(format!("AWS4{secret_access_key}").as_bytes(), b"11111111");
    for part in [region, "ses", "aws4_request", "SendRawEmail"] {
        key = hmac(&key, part.as_bytes());
    }
    let mut bytes = Vec::with_capacity(1 + key.len());
    bytes.push(0x04);
    bytes.extend_from_slice(&key);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The message id in SES SMTP's reply to the end of DATA (`250 Ok <id>`), if there is one.
pub(crate) fn ses_message_id<'a>(mut lines: impl Iterator<Item = &'a str>) -> Option<String> {
    let line = lines.next()?.trim();
    let mut words = line.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("ok") {
        return None;
    }
    let id = words.next()?.trim_matches(|c| c == '<' || c == '>');
    (!id.is_empty()).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_the_reference_vector() {
        // providers.md Appendix A.5.
        assert_eq!(
            ses_smtp_password("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1"),
            "BOntiZFm/r+5s3psZ/RpsjB+aSGsj2J0rXdiLuO0cQL7"
        );
        assert_ne!(
            ses_smtp_password("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "eu-west-1"),
            "BOntiZFm/r+5s3psZ/RpsjB+aSGsj2J0rXdiLuO0cQL7"
        );
    }

    #[test]
    fn parses_the_ses_reply_and_regions() {
        assert_eq!(
            ses_message_id(["Ok 0100018f-abc-000000"].into_iter()).as_deref(),
            Some("0100018f-abc-000000")
        );
        assert_eq!(
            ses_message_id(["Ok <0100-x>"].into_iter()).as_deref(),
            Some("0100-x")
        );
        assert_eq!(ses_message_id(["OK: queued as 12"].into_iter()), None);
        assert_eq!(ses_message_id(["Ok"].into_iter()), None);
        assert!(is_region("us-east-1"));
        assert!(!is_region("us east"));
        assert!(!is_region(""));
        assert_eq!(
            ses_smtp_host("eu-west-1"),
            "email-smtp.eu-west-1.amazonaws.com"
        );
    }
}
