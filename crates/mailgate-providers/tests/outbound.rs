//! Standard Webhooks signing of outbound notifications, against the published vector.
//! (An integration test: the crate's unit-test target does not build at the moment.)

use mailgate_providers::outbound::{generate_secret, sign, SECRET_PREFIX};

#[test]
fn signs_the_standard_webhooks_vector() {
    // providers.md Appendix A.2 (the Svix documentation's example).
    let signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1_614_265_330,
        br#"{"test": 2432232314}"#,
    );
    assert_eq!(
        signature.as_deref(),
        Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    );
}

#[test]
fn generated_secrets_are_usable() {
    let secret = generate_secret();
    assert!(secret.starts_with(SECRET_PREFIX));
    assert!(sign(&secret, "id", 1, b"{}").is_some());
}
