//! Prefixed, typed identifiers (`msg_…`, `evt_…`, `env_…`, `key_…`) built on ULIDs, so that they
//! sort by creation time and cannot be confused with one another.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

/// The error returned when a string is not an identifier of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind} id")]
pub struct InvalidId {
    /// The prefix that was expected, such as `msg`.
    pub kind: &'static str,
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Ulid);

        impl $name {
            /// The prefix written before the ULID.
            pub const PREFIX: &'static str = $prefix;

            /// A new identifier for the current instant.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(Ulid::new())
            }

            /// Parses `prefix_ULID`; anything else is refused.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                let rest = s
                    .strip_prefix($prefix)
                    .and_then(|r| r.strip_prefix('_'))
                    .ok_or(InvalidId { kind: $prefix })?;
                Ulid::from_string(rest).map(Self).map_err(|_| InvalidId { kind: $prefix })
            }
        }

        const _: () = assert!($prefix.len() <= MAX_PREFIX);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                encode($prefix, self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Longest prefix an identifier has (with room to spare).
const MAX_PREFIX: usize = 8;

/// Writes `prefix_ULID` in one piece: a send formats several ids, on the writer's thread among
/// others, and `write!` with two arguments costs several times the encoding itself.
fn encode(prefix: &str, ulid: Ulid, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut text = [0u8; MAX_PREFIX + 1 + ulid::ULID_LEN];
    let mut digits = [0u8; ulid::ULID_LEN];
    let n = prefix.len();
    text[..n].copy_from_slice(prefix.as_bytes());
    text[n] = b'_';
    text[n + 1..n + 1 + ulid::ULID_LEN].copy_from_slice(ulid.array_to_str(&mut digits).as_bytes());
    // Only ASCII was copied in: the prefix and Crockford base32.
    f.write_str(std::str::from_utf8(&text[..n + 1 + ulid::ULID_LEN]).map_err(|_| fmt::Error)?)
}

prefixed_id!(
    /// Identifies one accepted message.
    MessageId, "msg"
);
prefixed_id!(
    /// Identifies one event in a message's or an environment's timeline.
    EventId, "evt"
);
prefixed_id!(
    /// Identifies an environment (a tenant: its keys, providers, templates and messages).
    EnvironmentId, "env"
);
prefixed_id!(
    /// Identifies an API key (never the key's secret).
    ApiKeyId, "key"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_prefix_and_the_ulid() {
        let ulid = Ulid::new();
        assert_eq!(MessageId(ulid).to_string(), format!("msg_{ulid}"));
        assert_eq!(EnvironmentId(ulid).to_string(), format!("env_{ulid}"));
        assert_eq!(EventId(ulid).to_string(), format!("evt_{ulid}"));
        assert_eq!(ApiKeyId(ulid).to_string().len(), 4 + ulid::ULID_LEN);
    }

    #[test]
    fn round_trips_and_refuses_other_prefixes() {
        let id = MessageId::new();
        let s = id.to_string();
        assert!(s.starts_with("msg_"));
        assert_eq!(MessageId::parse(&s).unwrap(), id);
        assert!(EventId::parse(&s).is_err());
        assert!(MessageId::parse("msg_").is_err());
        assert!(MessageId::parse("msg_not-a-ulid-at-all-00000000").is_err());
    }
}
