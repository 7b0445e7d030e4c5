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

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, self.0)
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
