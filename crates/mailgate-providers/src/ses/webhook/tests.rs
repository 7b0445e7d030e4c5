use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;

use super::*;

#[test]
fn string_to_sign_matches_the_reference_example() {
    let m = json!({"Type": "Notification", "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events", "Subject": null,
        "Message": "{\"eventType\":\"Delivery\",...}", "Timestamp": "2025-01-01T00:00:00.000Z",
        "SignatureVersion": "2", "Signature": "x", "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem"});
    let expected = "Message\n{\"eventType\":\"Delivery\",...}\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n\
Timestamp\n2025-01-01T00:00:00.000Z\nTopicArn\narn:aws:sns:us-east-1:123456789012:ses-events\nType\nNotification\n";
    assert_eq!(string_to_sign(&m).unwrap(), expected);
    let confirm = json!({"Type": "SubscriptionConfirmation", "MessageId": "1", "Token": "t",
        "TopicArn": "a", "Message": "m", "SubscribeURL": "u", "Timestamp": "ts"});
    assert_eq!(
        string_to_sign(&confirm).unwrap(),
        "Message\nm\nMessageId\n1\nSubscribeURL\nu\nTimestamp\nts\nToken\nt\nTopicArn\na\nType\nSubscriptionConfirmation\n"
    );
}

#[test]
fn certificate_hosts_follow_the_official_pattern() {
    assert!(is_sns_host("sns.us-east-1.amazonaws.com"));
    assert!(is_sns_host("sns.cn-north-1.amazonaws.com.cn"));
    assert!(!is_sns_host("sns.us.amazonaws.com"));
    assert!(!is_sns_host("evil-bucket.s3.amazonaws.com"));
    assert!(!is_sns_host("sns.us-east-1.amazonaws.com.evil.net"));
    let config: SesConfig = serde_json::from_value(json!({"region": "us-east-1"})).unwrap();
    assert!(check_url(
        &config,
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-f3.pem",
        true
    )
    .is_ok());
    assert!(check_url(&config, "http://sns.us-east-1.amazonaws.com/x.pem", true).is_err());
    assert!(check_url(&config, "https://sns.us-east-1.amazonaws.com/x.txt", true).is_err());
    assert!(check_url(&config, "https://127.0.0.1/x.pem", true).is_err());
}

#[test]
fn signatures_v1_and_v2_verify_and_forgeries_do_not() {
    let key = RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
    let public = key.to_public_key();
    let mut m = json!({"Type": "Notification", "MessageId": "id-1", "TopicArn": "arn:t",
        "Message": "{}", "Timestamp": "2025-01-01T00:00:00.000Z"});
    let text = string_to_sign(&m).unwrap();
    for (version, sig) in [
        (
            "1",
            SigningKey::<sha1::Sha1>::new(key.clone())
                .sign(text.as_bytes())
                .to_vec(),
        ),
        (
            "2",
            SigningKey::<sha2::Sha256>::new(key.clone())
                .sign(text.as_bytes())
                .to_vec(),
        ),
    ] {
        m["SignatureVersion"] = version.into();
        m["Signature"] = STANDARD.encode(&sig).into();
        assert!(verify_signature(&public, &m).is_ok(), "v{version}");
    }
    m["SignatureVersion"] = "1".into();
    assert!(
        verify_signature(&public, &m).is_err(),
        "a v2 signature is not a v1 one"
    );
    m["SignatureVersion"] = "2".into();
    m["Message"] = "{\"forged\":true}".into();
    assert!(verify_signature(&public, &m).is_err());
    m["SignatureVersion"] = "3".into();
    assert!(verify_signature(&public, &m).is_err());
}

#[test]
fn both_ses_formats_fan_out_per_recipient() {
    let event = json!({"eventType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": "2017-08-05T00:41:02.669Z",
            "bouncedRecipients": [
                {"emailAddress": "a@example.com", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"},
                {"emailAddress": "b@example.com"}]},
        "mail": {"messageId": "EXAMPLE-000000", "tags": {"mailgate_message_id": ["msg_01HZZZZZZZZZZZZZZZZZZZZZZZ"]}}});
    let events = parse("sns-1", &event, Timestamp(0)).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].provider_event_id, "sns-1:0");
    assert_eq!(events[0].bounce_type, Some(BounceType::Hard));
    assert_eq!(
        events[0].detail["diagnostic_code"],
        "smtp; 550 5.1.1 user unknown"
    );
    assert!(events[0].message_id.is_some());
    assert_eq!(
        events[1].recipient.as_ref().unwrap().normalized(),
        "b@example.com"
    );

    let notification = json!({"notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": "c@example.com"}], "complaintFeedbackType": "abuse"},
        "mail": {"messageId": "EXAMPLE-1"}});
    let events = parse("sns-2", &notification, Timestamp(5)).unwrap();
    assert_eq!(events[0].event_type, EventType::Complained);
    assert_eq!(events[0].provider_message_id.as_deref(), Some("EXAMPLE-1"));
    assert_eq!(events[0].occurred_at, Timestamp(5));

    let delivery = json!({"notificationType": "Delivery", "mail": {"messageId": "m"},
        "delivery": {"recipients": ["d@example.com"], "smtpResponse": "250 2.6.0 Message received"}});
    let events = parse("sns-3", &delivery, Timestamp(0)).unwrap();
    assert_eq!(events[0].event_type, EventType::Delivered);
    assert_eq!(
        events[0].detail["mta_response"],
        "250 2.6.0 Message received"
    );
}
