//! Templates, environment settings, delivery options and secret redaction.

use std::time::Duration;

use mailgate_core::environment::OrganizationName;
use mailgate_core::message::{Delivery, EnqueueOutcome, MessageStatus};
use mailgate_core::settings::{EnvironmentSettings, Tracking};
use mailgate_core::store::{CapturedMessage, StoredContent};
use mailgate_core::template::{Locale, Template, TemplateRecord, UsageType};
use mailgate_store::Database;

use crate::support::*;

fn record(
    env: &mailgate_core::EnvironmentId,
    usage: &str,
    locale: &str,
    subject: &str,
) -> TemplateRecord {
    TemplateRecord {
        environment_id: *env,
        usage: UsageType::parse(usage, "usage").unwrap(),
        locale: Locale::parse(locale, "locale").unwrap(),
        template: Template {
            subject: Some(subject.into()),
            text: Some("{{ code }}".into()),
            ..Template::default()
        },
        updated_at: T0,
    }
}

pub async fn templates_crud(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let other = environment(&*s, "other").await;
    let sign_in = UsageType::parse("SignIn", "usage").unwrap();
    let en = Locale::english();
    s.put_template(&record(&env.id, "SignIn", "en", "one"))
        .await
        .unwrap();
    s.put_template(&record(&env.id, "SignIn", "fr", "un"))
        .await
        .unwrap();
    s.put_template(&record(&env.id, "Generic", "en", "g"))
        .await
        .unwrap();
    s.put_template(&record(&env.id, "Invitation", "en", "i"))
        .await
        .unwrap();
    s.put_template(&record(&other.id, "SignIn", "en", "other"))
        .await
        .unwrap();
    let mut replaced = record(&env.id, "SignIn", "en", "two");
    replaced.updated_at = at(5);
    s.put_template(&replaced).await.unwrap();

    assert_eq!(
        s.get_template(&env.id, &sign_in, &en).await.unwrap(),
        Some(replaced)
    );
    let listed = s.list_templates(&env.id).await.unwrap();
    let keys: Vec<_> = listed
        .iter()
        .map(|r| format!("{}/{}", r.usage, r.locale))
        .collect();
    assert_eq!(
        keys,
        ["Generic/en", "Invitation/en", "SignIn/en", "SignIn/fr"]
    );
    let found = s
        .templates_for(&env.id, &[sign_in.clone(), UsageType::generic()])
        .await
        .unwrap();
    assert_eq!(
        found.len(),
        3,
        "SignIn in two locales and Generic, not Invitation"
    );

    assert!(s.delete_template(&env.id, &sign_in, &en).await.unwrap());
    assert!(!s.delete_template(&env.id, &sign_in, &en).await.unwrap());
    assert_eq!(s.get_template(&env.id, &sign_in, &en).await.unwrap(), None);
    assert_eq!(s.list_templates(&other.id).await.unwrap().len(), 1);
}

pub async fn settings_roundtrip(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    assert_eq!(
        s.get_settings(&env.id).await.unwrap(),
        EnvironmentSettings::default()
    );
    let mut settings = EnvironmentSettings {
        default_locale: Locale::parse("de", "locale").unwrap(),
        secret_fields: vec!["otp".into()],
        ..EnvironmentSettings::default()
    };
    settings.tracking.links = true;
    settings.defaults.from =
        Some(mailgate_core::Mailbox::parse("Acme <no@acme.example>", "from").unwrap());
    assert!(s.put_settings(&env.id, &settings).await.unwrap());
    assert_eq!(s.get_settings(&env.id).await.unwrap(), settings);
    assert!(!s
        .put_settings(&mailgate_core::EnvironmentId::new(), &settings)
        .await
        .unwrap());
}

pub async fn delivery_options_reach_the_claim(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let mut m = message(&env.id, T0);
    m.delivery = Delivery {
        expires_at: Some(at(60_000)),
        tracking: Tracking {
            opens: true,
            links: false,
        },
        ..Delivery::default()
    };
    s.enqueue(m.clone()).await.unwrap();
    let plain = message(&env.id, T0);
    s.enqueue(plain.clone()).await.unwrap();
    let claimed = s.claim(10, at(1), Duration::from_secs(60)).await.unwrap();
    let got = claimed.iter().find(|c| c.id == m.id).unwrap();
    assert_eq!(got.delivery, m.delivery);
    let got = claimed.iter().find(|c| c.id == plain.id).unwrap();
    assert_eq!(got.delivery, Delivery::default());
}

pub async fn organization_and_sandbox_reach_the_claim(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let delivery = Delivery {
        expires_at: None,
        tracking: Tracking {
            opens: false,
            links: true,
        },
        organization: Some(OrganizationName::parse("acme-eu.1").unwrap()),
        sandboxed: true,
    };
    // Keyless messages go through the multi-row statements; enqueued together they share one.
    let mut keyless = message(&env.id, T0);
    keyless.delivery = delivery.clone();
    let mut other = message(&env.id, T0);
    other.delivery.organization = Some(OrganizationName::parse("globex").unwrap());
    // A message with an idempotency key goes through the single-row insert.
    let mut keyed = idempotent(&env.id, "org-1", "body");
    keyed.delivery = delivery.clone();
    let (a, b, c) = tokio::join!(
        s.enqueue(keyless.clone()),
        s.enqueue(other.clone()),
        s.enqueue(keyed.clone())
    );
    for outcome in [a, b, c] {
        assert!(matches!(outcome.unwrap(), EnqueueOutcome::Created(_)));
    }
    let plain = message(&env.id, T0);
    s.enqueue(plain.clone()).await.unwrap();

    let claimed = s.claim(10, at(1), Duration::from_secs(60)).await.unwrap();
    assert_eq!(claimed.len(), 4);
    let delivery_of = |id| &claimed.iter().find(|c| c.id == id).unwrap().delivery;
    assert_eq!(delivery_of(keyless.id), &delivery);
    assert_eq!(delivery_of(keyed.id), &delivery);
    assert_eq!(delivery_of(other.id), &other.delivery);
    assert!(!other.delivery.sandboxed);
    assert_eq!(delivery_of(plain.id), &Delivery::default());
}

pub async fn final_state_redacts_secrets(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let mut m = message(&env.id, T0);
    m.content.subject = "Your code 734911".into();
    m.content.text = Some("Code: 734911, link https://x.example/?t=abcd".into());
    m.secrets = vec!["734911".into(), "https://x.example/?t=abcd".into()];
    s.enqueue(m.clone()).await.unwrap();
    let lease = Duration::from_secs(60);

    // A retry keeps the secrets: the next attempt needs the content.
    let c = s.claim(1, at(1), lease).await.unwrap().remove(0);
    let mut retry = completion(&c, MessageStatus::Queued);
    retry.next_attempt_at = Some(at(2));
    s.complete(&[retry], at(1)).await.unwrap();
    let Some(StoredContent::Retained(content)) = s.get_content(None, &m.id).await.unwrap() else {
        panic!("content retained")
    };
    assert_eq!(content.subject, "Your code 734911");

    let c = s.claim(1, at(3), lease).await.unwrap().remove(0);
    s.capture(&CapturedMessage {
        message_id: m.id,
        environment_id: env.id,
        content: c.content.clone(),
        captured_at: at(3),
    })
    .await
    .unwrap();
    s.complete(&[completion(&c, MessageStatus::Delivered)], at(4))
        .await
        .unwrap();
    let Some(StoredContent::Retained(content)) = s.get_content(None, &m.id).await.unwrap() else {
        panic!("content retained")
    };
    assert_eq!(content.subject, "Your code [redacted]");
    assert_eq!(
        content.text.as_deref(),
        Some("Code: [redacted], link [redacted]")
    );
    assert_eq!(content.to, m.content.to, "everything else is kept");
    let captured = s.list_captured(&env.id, 10).await.unwrap();
    assert_eq!(captured[0].content.subject, "Your code [redacted]");
}
