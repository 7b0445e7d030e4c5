//! Environments, API keys, health and closing.

use mailgate_core::apikey::KeyScope;
use mailgate_core::environment::EnvironmentName;
use mailgate_core::ids::{ApiKeyId, EnvironmentId};
use mailgate_core::store::{CapturedMessage, StoreError};
use mailgate_store::Database;

use crate::support::*;

pub async fn ping_and_migrate_again(db: Database) {
    db.storage().ping().await.unwrap();
    db.migrate().await.unwrap();
    db.storage().ping().await.unwrap();
}

pub async fn environments_crud(db: Database) {
    let s = db.storage();
    let prod = environment(&*s, "production").await;
    let staging = environment(&*s, "staging").await;
    let names: Vec<_> = s
        .list_environments()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(names, ["production", "staging"]);
    assert_eq!(
        s.find_environment("production").await.unwrap(),
        Some(prod.clone())
    );
    assert_eq!(
        s.find_environment(&staging.id.to_string()).await.unwrap(),
        Some(staging.clone())
    );
    assert_eq!(s.find_environment("nope").await.unwrap(), None);
    assert_eq!(
        s.find_environment(&EnvironmentId::new().to_string())
            .await
            .unwrap(),
        None
    );

    let dup = mailgate_core::environment::Environment {
        id: EnvironmentId::new(),
        ..prod.clone()
    };
    assert!(matches!(
        s.create_environment(&dup).await,
        Err(StoreError::Conflict(_))
    ));
    let ensured = s
        .ensure_environment(&EnvironmentName::parse("production").unwrap(), at(5))
        .await
        .unwrap();
    assert_eq!(ensured, prod);

    assert!(s.delete_environment(&staging.id).await.unwrap());
    assert!(!s.delete_environment(&staging.id).await.unwrap());
    assert_eq!(s.list_environments().await.unwrap(), vec![prod]);
}

pub async fn delete_environment_cascades(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "doomed").await;
    let other = environment(&*s, "kept").await;
    let (key, secret) = api_key(KeyScope::Environment(env.id), "k");
    s.insert_api_key(&key).await.unwrap();
    let m = message(&env.id, T0);
    let id = m.id;
    s.enqueue(m.clone()).await.unwrap();
    s.enqueue(message(&other.id, T0)).await.unwrap();
    s.capture(&CapturedMessage {
        message_id: id,
        environment_id: env.id,
        content: m.content,
        captured_at: T0,
    })
    .await
    .unwrap();

    assert!(s.delete_environment(&env.id).await.unwrap());
    assert_eq!(s.find_api_key(&secret.hash()).await.unwrap(), None);
    assert_eq!(s.get_message(None, &id).await.unwrap(), None);
    assert!(s.list_captured(&env.id, 10).await.unwrap().is_empty());
    let events = s.list_events(&query()).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].environment_id, other.id);
}

pub async fn api_keys(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    assert!(!s.has_admin_key().await.unwrap());
    let (admin, admin_secret) = api_key(KeyScope::Admin, "root");
    s.insert_api_key(&admin).await.unwrap();
    assert!(s.has_admin_key().await.unwrap());
    let (k1, secret1) = api_key(KeyScope::Environment(env.id), "one");
    let (k2, _) = api_key(KeyScope::Environment(env.id), "two");
    s.insert_api_key(&k1).await.unwrap();
    s.insert_api_key(&k2).await.unwrap();

    assert_eq!(
        s.find_api_key(&admin_secret.hash()).await.unwrap(),
        Some(admin.record.clone())
    );
    assert_eq!(
        s.find_api_key(&secret1.hash()).await.unwrap(),
        Some(k1.record.clone())
    );
    assert_eq!(
        s.find_api_key(&mailgate_core::apikey::ApiKeySecret::generate().hash())
            .await
            .unwrap(),
        None
    );
    let mut listed = s.list_api_keys(&env.id).await.unwrap();
    listed.sort_by_key(|k| k.name.clone());
    assert_eq!(listed, vec![k1.record.clone(), k2.record.clone()]);

    let (mut same_hash, _) = api_key(KeyScope::Environment(env.id), "copy");
    same_hash.hash = k1.hash.clone();
    assert!(matches!(
        s.insert_api_key(&same_hash).await,
        Err(StoreError::Conflict(_))
    ));

    let other = environment(&*s, "other").await;
    assert!(!s.delete_api_key(&other.id, &k1.record.id).await.unwrap());
    assert!(s.delete_api_key(&env.id, &k1.record.id).await.unwrap());
    assert!(!s.delete_api_key(&env.id, &ApiKeyId::new()).await.unwrap());
    assert_eq!(s.find_api_key(&secret1.hash()).await.unwrap(), None);
    assert_eq!(s.list_api_keys(&env.id).await.unwrap(), vec![k2.record]);
}

/// Keys, environments and settings are reused for `StoreOptions::cache_ttl`: a process sees
/// another's revocation, deletion or new settings within that time, and its own at once.
pub async fn other_processes_see_writes_within_the_cache_ttl(db: Database, second: Database) {
    use mailgate_core::settings::EnvironmentSettings;
    use std::time::{Duration, Instant};

    let ttl = mailgate_store::StoreOptions::default().cache_ttl;
    let (a, b) = (db.storage(), second.storage());
    let env = environment(&*a, "default").await;
    let (key, secret) = api_key(KeyScope::Environment(env.id), "one");
    a.insert_api_key(&key).await.unwrap();
    // A key made elsewhere works at once (misses are not kept).
    assert_eq!(
        b.find_api_key(&secret.hash()).await.unwrap(),
        Some(key.record.clone())
    );
    assert!(b.find_environment("default").await.unwrap().is_some());
    let before = b.get_settings(&env.id).await.unwrap();

    let changed = EnvironmentSettings {
        secret_fields: vec!["pin".into()],
        ..EnvironmentSettings::default()
    };
    assert_ne!(before, changed);
    assert!(a.put_settings(&env.id, &changed).await.unwrap());
    assert!(a.delete_api_key(&env.id, &key.record.id).await.unwrap());
    let written = Instant::now();
    assert_eq!(a.find_api_key(&secret.hash()).await.unwrap(), None);
    assert_eq!(a.get_settings(&env.id).await.unwrap(), changed);

    let deadline = written + ttl + Duration::from_secs(1);
    loop {
        let key_gone = b.find_api_key(&secret.hash()).await.unwrap().is_none();
        let settings_seen = b.get_settings(&env.id).await.unwrap() == changed;
        if key_gone && settings_seen {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second store still acts on old rows {:?} after the writes",
            written.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert!(a.delete_environment(&env.id).await.unwrap());
    assert_eq!(a.find_environment("default").await.unwrap(), None);
    let deadline = Instant::now() + ttl + Duration::from_secs(1);
    while b.find_environment("default").await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the deleted environment is still served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn close_refuses_later_writes(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    db.close().await;
    assert!(matches!(
        s.enqueue(message(&env.id, T0)).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(s.ping().await.is_err());
}

pub async fn provider_configs(db: Database) {
    use mailgate_core::store::StoredProviderConfig;
    use mailgate_core::Timestamp;

    let s = db.storage();
    let prod = environment(&*s, "production").await;
    let other = environment(&*s, "staging").await;
    assert_eq!(s.get_provider_config(&prod.id, "").await.unwrap(), None);
    assert_eq!(s.provider_config_version(&prod.id, "").await.unwrap(), None);

    let mut c = StoredProviderConfig {
        environment_id: prod.id,
        scope: String::new(),
        sealed: "v1:sealed-bytes".into(),
        redacted: serde_json::json!({"type": "smtp", "password": "********"}),
        updated_at: Timestamp(1_000),
    };
    s.put_provider_config(&c).await.unwrap();
    assert_eq!(
        s.get_provider_config(&prod.id, "").await.unwrap(),
        Some(c.clone())
    );
    assert_eq!(
        s.get_provider_config(&other.id, "").await.unwrap(),
        None,
        "scoped to its environment"
    );
    assert_eq!(
        s.get_provider_config(&prod.id, "acme").await.unwrap(),
        None,
        "scoped to its scope"
    );

    // Replacing keeps one row and moves the version.
    c.sealed = "v1:other".into();
    c.updated_at = Timestamp(2_000);
    s.put_provider_config(&c).await.unwrap();
    assert_eq!(
        s.provider_config_version(&prod.id, "").await.unwrap(),
        Some(Timestamp(2_000))
    );
    let org = StoredProviderConfig {
        scope: "acme".into(),
        ..c.clone()
    };
    s.put_provider_config(&org).await.unwrap();
    assert_eq!(
        s.list_provider_configs().await.unwrap(),
        vec![c.clone(), org.clone()]
    );

    assert!(s.delete_provider_config(&prod.id, "").await.unwrap());
    assert!(!s.delete_provider_config(&prod.id, "").await.unwrap());
    assert_eq!(
        s.get_provider_config(&prod.id, "acme").await.unwrap(),
        Some(org)
    );

    // Deleting the environment deletes its configurations.
    s.delete_environment(&prod.id).await.unwrap();
    assert!(s.list_provider_configs().await.unwrap().is_empty());
}
