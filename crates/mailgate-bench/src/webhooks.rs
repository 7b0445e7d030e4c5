//! Provider webhook bodies for the ingestion benchmark: Postmark `Delivery` records (one per
//! request, HTTP Basic credentials) and SendGrid Signed Event Webhook batches (a JSON array,
//! ECDSA P-256 over `timestamp ‖ body`), each event about one of the messages the gateway
//! accepted, with a provider event id unique to the run.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mailgate_core::Timestamp;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;

/// The benchmark's SendGrid signing key: fixed, so that `bench/run` can configure the gateway
/// with its public key (`loadgen --print-sendgrid-key`). It signs nothing but benchmark traffic.
pub struct SendgridSigner(SigningKey);

impl Default for SendgridSigner {
    fn default() -> Self {
        Self(SigningKey::from_slice(&[0x42; 32]).expect("a valid P-256 scalar"))
    }
}

impl SendgridSigner {
    /// The verification key as SendGrid shows it: base64 DER SubjectPublicKeyInfo.
    pub fn public_key_b64(&self) -> String {
        let der = self
            .0
            .verifying_key()
            .to_public_key_der()
            .expect("a P-256 key encodes");
        STANDARD.encode(der.as_bytes())
    }

    /// The `X-Twilio-Email-Event-Webhook-Signature` of `body` sent at `timestamp`.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        let mut message = timestamp.as_bytes().to_vec();
        message.extend_from_slice(body);
        let sig: Signature = self.0.sign(&message);
        STANDARD.encode(sig.to_der().as_bytes())
    }
}

/// An event id as providers make them: unique, in no order (Postmark's are UUIDs, SendGrid's
/// random base64), so that each event's deduplication entry lands where a real one would.
/// `run` keeps runs against one database apart; `n` numbers the events of a run.
pub fn event_id(run: &str, n: u64) -> String {
    // splitmix64: a bijection, so distinct numbers give distinct ids.
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("{run}-{:016x}", z ^ (z >> 31))
}

/// One Postmark `Delivery` record about `message_id`, delivered `at` (a provider reports events
/// as they happen: the time is about now); `run` and `seq` make its MessageID (and so its event
/// id) unique.
pub fn postmark_delivery(run: &str, seq: u64, at: Timestamp, message_id: &str) -> String {
    format!(
        r#"{{"RecordType":"Delivery","ServerID":23,"MessageStream":"outbound","MessageID":"{}","Recipient":"user{}@example.org","Tag":"receipt","DeliveredAt":"{}","Details":"Test delivery webhook details","Metadata":{{"mailgate_message_id":"{message_id}"}}}}"#,
        event_id(run, seq),
        seq % 1000,
        at.to_rfc3339()
    )
}

/// A SendGrid batch of `n` `delivered` events that happened `at` (SendGrid's timestamps are
/// whole seconds), the `i`-th about `message_id(i)`.
pub fn sendgrid_batch(
    run: &str,
    seq: u64,
    n: usize,
    at: Timestamp,
    message_id: impl Fn(usize) -> String,
) -> String {
    let seconds = at.millis() / 1000;
    let events: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"email":"user{}@example.org","timestamp":{seconds},"event":"delivered","sg_event_id":"{}","sg_message_id":"{run}{seq}x{i}.filterdrecv-1","response":"250 OK","mailgate_message_id":"{}"}}"#,
                i % 1000,
                event_id(run, seq * n as u64 + i as u64),
                message_id(i)
            )
        })
        .collect();
    format!("[{}]", events.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::VerifyingKey;
    use p256::pkcs8::DecodePublicKey;

    #[test]
    fn a_signature_verifies_with_the_printed_key() {
        let s = SendgridSigner::default();
        let der = STANDARD.decode(s.public_key_b64()).unwrap();
        let key = VerifyingKey::from_public_key_der(&der).unwrap();
        let body = sendgrid_batch("r", 7, 3, Timestamp(0), |i| format!("msg_{i}"));
        let sig = Signature::from_der(
            &STANDARD
                .decode(s.sign("1700000000", body.as_bytes()))
                .unwrap(),
        )
        .unwrap();
        let mut msg = b"1700000000".to_vec();
        msg.extend_from_slice(body.as_bytes());
        assert!(key.verify(&msg, &sig).is_ok());
        msg.push(b' ');
        assert!(key.verify(&msg, &sig).is_err());
    }

    const AT: Timestamp = Timestamp(1_764_676_800_123);

    /// Distinct numbers give distinct ids, in no order: neighbours do not share a prefix past
    /// the run's.
    #[test]
    fn event_ids_are_unique_and_unordered() {
        let ids: Vec<String> = (0..10_000).map(|n| event_id("r", n)).collect();
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        let ascending = ids.windows(2).filter(|w| w[0] < w[1]).count();
        assert!((4_000..6_000).contains(&ascending), "{ascending}");
        assert!(ids.iter().all(|id| id.starts_with("r-") && id.len() == 18));
    }

    #[test]
    fn bodies_are_json_with_unique_ids() {
        let b: serde_json::Value =
            serde_json::from_str(&sendgrid_batch("r", 7, 3, AT, |i| format!("msg_{i}"))).unwrap();
        assert_eq!(b.as_array().unwrap().len(), 3);
        assert_eq!(b[2]["sg_event_id"], event_id("r", 7 * 3 + 2));
        let ids: std::collections::HashSet<_> =
            (0..3).map(|i| b[i]["sg_event_id"].to_string()).collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(b[1]["mailgate_message_id"], "msg_1");
        assert_eq!(b[0]["timestamp"], 1_764_676_800);
        let p: serde_json::Value =
            serde_json::from_str(&postmark_delivery("r", 9, AT, "msg_x")).unwrap();
        assert_eq!(p["DeliveredAt"], "2025-12-02T12:00:00.123Z");
        assert_eq!(p["MessageID"], event_id("r", 9));
        assert_eq!(p["Metadata"]["mailgate_message_id"], "msg_x");
    }
}
