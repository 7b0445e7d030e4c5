//! Provider DSNs (`capture://`, `smtp://user:pass@host:587`, `ses+api://KEY:SECRET@default?region=…`),
//! parsed with the `url` crate so that credentials are percent-decoded.

use std::collections::BTreeMap;

use url::Url;

use crate::config::ConfigError;

/// A parsed DSN. Its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    /// `capture`, `smtp`, `smtps`, `ses+api`, …
    pub scheme: String,
    /// The user part, percent-decoded (an API key, an SMTP user, an access key id).
    pub user: Option<String>,
    /// The password part, percent-decoded.
    pub password: Option<String>,
    /// The host; `None` for `default` (the provider's own endpoint) and for `capture://`.
    pub host: Option<String>,
    /// The port, if given.
    pub port: Option<u16>,
    /// Query options (the last value wins when a key repeats).
    pub options: BTreeMap<String, String>,
}

impl std::fmt::Debug for Dsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dsn")
            .field("scheme", &self.scheme)
            .field("user", &self.user.as_ref().map(|_| "**"))
            .field("password", &self.password.as_ref().map(|_| "**"))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Dsn {
    /// Parses `scheme://[user[:password]@]host[:port][?key=value&…]`. Error messages never
    /// contain the input, which may hold credentials.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let url = Url::parse(s.trim()).map_err(|e| {
            ConfigError::invalid("dsn", format!("not a valid DSN ({e}); expected scheme://…"))
        })?;
        let decode = |v: &str| {
            percent_decode(v).ok_or_else(|| {
                ConfigError::invalid("dsn", "credentials are not valid percent-encoded UTF-8")
            })
        };
        let user = match url.username() {
            "" => None,
            u => Some(decode(u)?),
        };
        let password = url.password().map(decode).transpose()?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty() && *h != "default")
            .map(str::to_owned);
        let options = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Ok(Self {
            scheme: url.scheme().to_owned(),
            user,
            password,
            host,
            port: url.port(),
            options,
        })
    }

    /// Removes and returns an option.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.options.remove(key)
    }

    /// Removes an option and parses it; `expected` says what a valid value is ("a whole number
    /// of seconds").
    pub fn take_parsed<T: std::str::FromStr>(
        &mut self,
        key: &str,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        self.take(key)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|_| ConfigError::invalid(key, format!("must be {expected}")))
            })
            .transpose()
    }

    /// Fails if options remain that the provider did not take: they are typos or unsupported.
    pub fn finish(&self) -> Result<(), ConfigError> {
        match self.options.keys().next() {
            Some(k) => Err(ConfigError::invalid(
                k,
                format!("unknown option '{k}' for {}://", self.scheme),
            )),
            None => Ok(()),
        }
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_credentials_hosts_and_options() {
        let d = Dsn::parse(
            "smtp://user%40example.com:p%2Fa%2Bss@mail.example.com:587?helo=gw.example.com",
        )
        .unwrap();
        assert_eq!(d.scheme, "smtp");
        assert_eq!(d.user.as_deref(), Some("user@example.com"));
        assert_eq!(d.password.as_deref(), Some("p/a+ss"));
        assert_eq!(d.host.as_deref(), Some("mail.example.com"));
        assert_eq!(d.port, Some(587));
        assert_eq!(
            d.options.get("helo").map(String::as_str),
            Some("gw.example.com")
        );

        let d = Dsn::parse("ses+api://AKID:SECRET@default?region=us-east-1").unwrap();
        assert_eq!(d.scheme, "ses+api");
        assert_eq!(d.host, None);
        let d = Dsn::parse("capture://").unwrap();
        assert_eq!(
            (d.scheme.as_str(), d.host.clone(), d.user.clone()),
            ("capture", None, None)
        );
    }

    #[test]
    fn errors_and_debug_never_show_secrets() {
        let d = Dsn::parse("smtp://u:hunter2@h:25").unwrap();
        assert!(!format!("{d:?}").contains("hunter2"));
        let e = Dsn::parse("smtp://u:hunter2@h:notaport").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let mut d = Dsn::parse("capture://?dealy_ms=3").unwrap();
        assert!(d.take("delay_ms").is_none());
        assert!(d.finish().unwrap_err().to_string().contains("dealy_ms"));
    }
}
