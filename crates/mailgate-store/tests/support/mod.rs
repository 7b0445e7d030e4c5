//! Fixtures shared by the contract suite.

use std::collections::BTreeMap;

use mailgate_core::apikey::{ApiKeyRecord, ApiKeySecret, KeyScope, NewApiKey};
use mailgate_core::environment::{Environment, EnvironmentName};
use mailgate_core::event::{EventQuery, EventType, NewEvent};
use mailgate_core::ids::{ApiKeyId, EnvironmentId, MessageId};
use mailgate_core::message::{ClaimedMessage, MessageStatus};
use mailgate_core::message::{Content, Idempotency, IdempotencyKey, NewMessage};
use mailgate_core::store::Completion;
use mailgate_core::store::Storage;
use mailgate_core::{Mailbox, Timestamp};

/// A fixed instant the tests count from.
pub const T0: Timestamp = Timestamp(1_764_237_600_000);

/// `T0` plus `ms` milliseconds.
pub fn at(ms: i64) -> Timestamp {
    Timestamp(T0.0 + ms)
}

/// Creates an environment called `name`.
pub async fn environment(store: &dyn Storage, name: &str) -> Environment {
    let env = Environment {
        id: EnvironmentId::new(),
        name: EnvironmentName::parse(name).unwrap(),
        created_at: T0,
    };
    store.create_environment(&env).await.unwrap();
    env
}

/// Some content with two recipients.
pub fn content(subject: &str) -> Content {
    Content {
        from: Mailbox::parse("Sender <sender@example.com>", "from").unwrap(),
        to: vec![Mailbox::parse("a@example.com", "to").unwrap()],
        cc: vec![Mailbox::parse("b@example.com", "cc").unwrap()],
        bcc: vec![],
        reply_to: vec![],
        subject: subject.to_owned(),
        text: Some("hello".into()),
        html: None,
        headers: vec![],
        attachments: vec![],
    }
}

/// A message for `env`, accepted (and due) at `created_at`.
pub fn message(env: &EnvironmentId, created_at: Timestamp) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        environment_id: *env,
        content: content("Your code"),
        tags: vec!["signin".into()],
        metadata: BTreeMap::from([("user".to_owned(), "42".to_owned())]),
        provider_options: Some(serde_json::json!({ "track_opens": false })),
        idempotency: None,
        max_attempts: 5,
        created_at,
        delivery: Default::default(),
        secrets: Vec::new(),
        template: None,
    }
}

/// A message carrying idempotency key `key` for request body `body`.
pub fn idempotent(env: &EnvironmentId, key: &str, body: &str) -> NewMessage {
    let mut m = message(env, T0);
    m.idempotency = Some(Idempotency::new(
        IdempotencyKey::parse(key).unwrap(),
        &serde_json::json!({ "body": body }),
    ));
    m
}

/// A key record for `scope` and its secret.
pub fn api_key(scope: KeyScope, name: &str) -> (NewApiKey, ApiKeySecret) {
    let secret = ApiKeySecret::generate();
    let record = ApiKeyRecord {
        id: ApiKeyId::new(),
        scope,
        name: name.into(),
        hint: secret.hint(),
        created_at: T0,
    };
    (
        NewApiKey {
            record,
            hash: secret.hash(),
        },
        secret,
    )
}

/// Every event, oldest first.
pub fn query() -> EventQuery {
    EventQuery {
        environment_id: None,
        message_id: None,
        types: vec![],
        since: None,
        after_seq: None,
        limit: 100,
    }
}

/// A completion of `claimed` to `status`, with one event of the matching type.
pub fn completion(claimed: &ClaimedMessage, status: MessageStatus) -> Completion {
    let event_type = EventType::parse(status.as_str()).unwrap_or(EventType::Deferred);
    Completion {
        message_id: claimed.id,
        lease_token: claimed.lease_token.clone(),
        status,
        next_attempt_at: None,
        provider: None,
        provider_message_id: None,
        last_error: None,
        events: vec![NewEvent::for_message(
            claimed.environment_id,
            claimed.id,
            event_type,
            at(200),
            serde_json::json!({ "attempt": claimed.attempt }),
        )],
    }
}

/// A message of `env` sent through the queue (enqueued at 0, claimed, completed `sent` at 100 by
/// `provider` with the provider message id `pmid`); its id.
pub async fn sent_message(
    s: &dyn Storage,
    env: &EnvironmentId,
    provider: Option<&str>,
    pmid: Option<&str>,
) -> MessageId {
    let m = message(env, at(0));
    let id = m.id;
    s.enqueue(m).await.unwrap();
    let claimed = s
        .claim(1, at(0), std::time::Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(claimed.id, id);
    let mut done = completion(&claimed, MessageStatus::Sent);
    done.provider = provider.map(Into::into);
    done.provider_message_id = pmid.map(Into::into);
    s.complete(&[done], at(100)).await.unwrap();
    id
}
