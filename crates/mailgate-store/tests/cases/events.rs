//! The event log and the capture mailbox.

use std::time::Duration;

use mailgate_core::event::{EventQuery, EventType};
use mailgate_core::message::MessageStatus;
use mailgate_core::store::CapturedMessage;
use mailgate_store::Database;

use crate::support::*;

pub async fn list_events_filters_and_pages(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let other = environment(&*s, "other").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let m = message(&env.id, at(i * 10));
        ids.push(m.id);
        s.enqueue(m).await.unwrap();
    }
    s.enqueue(message(&other.id, at(100))).await.unwrap();
    let claimed = s
        .claim(1, at(0), Duration::from_secs(60))
        .await
        .unwrap()
        .remove(0);
    s.complete(&[completion(&claimed, MessageStatus::Sent)], at(200))
        .await
        .unwrap();

    let all = s.list_events(&query()).await.unwrap();
    assert_eq!(all.len(), 7);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let mine = s
        .list_events(&EventQuery {
            environment_id: Some(env.id),
            ..query()
        })
        .await
        .unwrap();
    assert_eq!(mine.len(), 6);
    let sent = s
        .list_events(&EventQuery {
            types: vec![EventType::Sent],
            ..query()
        })
        .await
        .unwrap();
    assert_eq!(
        sent.iter().map(|e| e.message_id).collect::<Vec<_>>(),
        vec![Some(claimed.id)]
    );
    let both = EventQuery {
        types: vec![EventType::Sent, EventType::Queued],
        environment_id: Some(other.id),
        ..query()
    };
    assert_eq!(s.list_events(&both).await.unwrap().len(), 1);
    let since = s
        .list_events(&EventQuery {
            since: Some(at(30)),
            ..query()
        })
        .await
        .unwrap();
    assert_eq!(since.len(), 4, "created at 30, 40, 100 and 200");
    let one = s
        .list_events(&EventQuery {
            message_id: Some(ids[3]),
            ..query()
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);

    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .list_events(&EventQuery {
                after_seq: cursor,
                limit: 3,
                ..query()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        cursor = page.last().map(|e| e.seq);
        pages.extend(page);
    }
    assert_eq!(pages, all);
}

pub async fn capture_keeps_duplicates(db: Database) {
    let s = db.storage();
    let env = environment(&*s, "default").await;
    let other = environment(&*s, "other").await;
    let m = message(&env.id, T0);
    let copy = |subject: &str, t| CapturedMessage {
        message_id: m.id,
        environment_id: env.id,
        content: content(subject),
        captured_at: t,
    };
    s.capture(&copy("first", at(1))).await.unwrap();
    s.capture(&copy("second", at(2))).await.unwrap();
    s.capture(&copy("third", at(3))).await.unwrap();
    let newest = s.list_captured(&env.id, 2).await.unwrap();
    assert_eq!(newest, vec![copy("third", at(3)), copy("second", at(2))]);
    assert_eq!(s.list_captured(&env.id, 10).await.unwrap().len(), 3);
    assert!(s.list_captured(&other.id, 10).await.unwrap().is_empty());
}
