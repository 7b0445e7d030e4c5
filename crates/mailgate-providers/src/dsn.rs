//! Provider DSNs (`capture://`, later `smtp://…`, `ses+api://…`): parsed once at start-up into
//! a provider instance.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mailgate_core::provider::Provider;
use mailgate_core::store::CaptureStore;
use mailgate_core::Clock;

use crate::capture::CaptureProvider;

/// Why a DSN was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    /// Not `scheme://…`.
    #[error("provider DSN must look like scheme://… (e.g. capture://)")]
    Malformed,
    /// A scheme this build does not know.
    #[error("unknown provider type '{0}' (this build supports: capture)")]
    UnknownScheme(String),
    /// A query option that is wrong or unknown.
    #[error("invalid option '{0}' in provider DSN")]
    InvalidOption(String),
}

/// A parsed DSN: scheme, the part after `://` up to `?`, and the query options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// `capture`, `smtp`, `ses+api`, …
    pub scheme: String,
    /// Credentials and host, unparsed.
    pub authority: String,
    /// Query options.
    pub options: BTreeMap<String, String>,
}

impl Dsn {
    /// Parses `scheme://authority?key=value&…`.
    pub fn parse(s: &str) -> Result<Self, DsnError> {
        let (scheme, rest) = s.split_once("://").ok_or(DsnError::Malformed)?;
        if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_lowercase() || b == b'+') {
            return Err(DsnError::Malformed);
        }
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut options = BTreeMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| DsnError::InvalidOption(pair.to_owned()))?;
            options.insert(k.to_owned(), v.to_owned());
        }
        Ok(Self {
            scheme: scheme.to_owned(),
            authority: authority.to_owned(),
            options,
        })
    }
}

/// Builds the provider a DSN names. The capture provider writes to `capture_store`.
pub fn build_provider(
    dsn: &Dsn,
    capture_store: Arc<dyn CaptureStore>,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn Provider>, DsnError> {
    match dsn.scheme.as_str() {
        "capture" => {
            let mut provider = CaptureProvider::new(capture_store, clock);
            for (k, v) in &dsn.options {
                match k.as_str() {
                    "delay_ms" => {
                        let ms: u64 = v.parse().map_err(|_| DsnError::InvalidOption(k.clone()))?;
                        provider = provider.with_delay(Duration::from_millis(ms));
                    }
                    _ => return Err(DsnError::InvalidOption(k.clone())),
                }
            }
            Ok(Arc::new(provider))
        }
        other => Err(DsnError::UnknownScheme(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dsns() {
        let d = Dsn::parse("capture://?delay_ms=20").unwrap();
        assert_eq!(d.scheme, "capture");
        assert_eq!(d.authority, "");
        assert_eq!(d.options.get("delay_ms").map(String::as_str), Some("20"));
        let d = Dsn::parse("ses+api://KEY:SECRET@default?region=us-east-1").unwrap();
        assert_eq!(d.scheme, "ses+api");
        assert_eq!(d.authority, "KEY:SECRET@default");
        assert_eq!(Dsn::parse("capture"), Err(DsnError::Malformed));
        assert!(matches!(
            Dsn::parse("capture://?novalue"),
            Err(DsnError::InvalidOption(_))
        ));
    }
}
