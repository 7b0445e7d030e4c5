//! A provider double: records every message it is handed and answers from a script, so tests
//! can drive retries, permanent failures and slow providers without a network.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mailgate_core::message::ClaimedMessage;
use mailgate_core::provider::{Provider, SendError, SendReceipt};
use mailgate_core::MessageId;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// Accept the message (status `sent`).
    Accept,
    /// Fail with this error.
    Fail(SendError),
    /// Wait, then answer with the inner step.
    Delay(Duration, Box<Scripted>),
}

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Call {
    /// The message handed over.
    pub message_id: MessageId,
    /// Its attempt number.
    pub attempt: u32,
    /// Its subject, to check what was delivered.
    pub subject: String,
    /// When the call started.
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Scripted>,
    calls: Vec<Call>,
}

/// The fake provider. Cheap to clone; clones share the script and the record.
#[derive(Clone, Default)]
pub struct FakeProvider {
    inner: Arc<Mutex<Inner>>,
}

impl FakeProvider {
    /// A provider that accepts everything until told otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues answers for the next calls; when the script runs out, messages are accepted.
    pub fn script(&self, steps: impl IntoIterator<Item = Scripted>) -> &Self {
        self.inner
            .lock()
            .expect("fake provider lock")
            .script
            .extend(steps);
        self
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().expect("fake provider lock").calls.clone()
    }

    /// The calls for one message.
    pub fn calls_for(&self, id: MessageId) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.message_id == id)
            .collect()
    }
}

#[async_trait]
impl Provider for FakeProvider {
    fn name(&self) -> &str {
        "fake"
    }

    async fn send(&self, message: &ClaimedMessage) -> Result<SendReceipt, SendError> {
        let mut step = {
            let mut inner = self.inner.lock().expect("fake provider lock");
            inner.calls.push(Call {
                message_id: message.id,
                attempt: message.attempt,
                subject: message.content.subject.clone(),
                at: Instant::now(),
            });
            inner.script.pop_front().unwrap_or(Scripted::Accept)
        };
        loop {
            match step {
                Scripted::Accept => {
                    return Ok(SendReceipt {
                        provider_message_id: Some(format!("fake-{}", message.id)),
                        final_delivery: false,
                    })
                }
                Scripted::Fail(e) => return Err(e),
                Scripted::Delay(d, next) => {
                    tokio::time::sleep(d).await;
                    step = *next;
                }
            }
        }
    }
}
