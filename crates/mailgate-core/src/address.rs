//! Email addresses (RFC 5321 mailbox syntax, internationalized domains accepted) and mailboxes
//! with an optional display name (`Ann Example <ann@example.com>`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::validation::{check_header_value, FieldError};

const MAX_LOCAL: usize = 64;
const MAX_ADDRESS: usize = 254;
const MAX_LABEL: usize = 63;
const MAX_DISPLAY_NAME: usize = 256;

/// A syntactically valid address: `local@domain`, with the domain kept in its ASCII (punycode)
/// form and the Unicode form remembered for display.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    local: String,
    domain: String,
}

impl EmailAddress {
    /// Parses an address; refuses anything that SMTP would not carry.
    pub fn parse(input: &str) -> Result<Self, String> {
        if input.is_empty() {
            return Err("address is empty".into());
        }
        if input.chars().any(|c| c.is_control()) {
            return Err("address contains control characters or line breaks".into());
        }
        let at = input.rfind('@').ok_or("address has no @")?;
        let (local, domain) = (&input[..at], &input[at + 1..]);
        parse_local(local)?;
        let domain = parse_domain(domain)?;
        // The length of the address as written (`Display`): local part, `@`, domain.
        if local.len() + 1 + domain.len() > MAX_ADDRESS {
            return Err(format!("address is longer than {MAX_ADDRESS} characters"));
        }
        Ok(Self {
            local: local.to_owned(),
            domain,
        })
    }

    /// The part before the `@`.
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The domain in ASCII form (IDNs as punycode, lower case).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The address with the domain in lower case; the form used for suppression and comparison.
    pub fn normalized(&self) -> String {
        let mut out = self.local.to_lowercase();
        out.reserve(1 + self.domain.len());
        out.push('@');
        out.push_str(&self.domain);
        out
    }
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn parse_local(local: &str) -> Result<(), String> {
    if local.is_empty() {
        return Err("address has nothing before the @".into());
    }
    if local.len() > MAX_LOCAL {
        return Err(format!(
            "the part before the @ is longer than {MAX_LOCAL} characters"
        ));
    }
    if let Some(inner) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        // Quoted string: printable characters, with `\` escaping the next one.
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars
                        .next()
                        .ok_or("quoted local part ends with a backslash")?;
                }
                '"' => return Err("unescaped quote in quoted local part".into()),
                c if c.is_control() => return Err("control character in local part".into()),
                _ => {}
            }
        }
        return Ok(());
    }
    if local
        .split('.')
        .any(|atom| atom.is_empty() || !atom.chars().all(is_atext))
    {
        return Err(
            "the part before the @ contains characters that need quoting, or empty dots".into(),
        );
    }
    Ok(())
}

fn parse_domain(domain: &str) -> Result<String, String> {
    if domain.is_empty() {
        return Err("address has no domain".into());
    }
    if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        let ip = literal.strip_prefix("IPv6:").unwrap_or(literal);
        return ip
            .parse::<std::net::IpAddr>()
            .map(|_| domain.to_owned())
            .map_err(|_| "domain literal is not an IP address".into());
    }
    let ascii = idna::domain_to_ascii_strict(domain)
        .map_err(|_| format!("'{domain}' is not a valid domain name"))?;
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err("domain needs at least one dot (e.g. example.com)".into());
    }
    for label in &labels {
        if label.is_empty() || label.len() > MAX_LABEL {
            return Err("domain has an empty or over-long label".into());
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err("domain labels may hold only letters, digits and inner hyphens".into());
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err("top-level domain cannot be numeric".into());
    }
    Ok(ascii)
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Three plain writes: an address is written for every send, and `write!` costs more
        // than the copying.
        f.write_str(&self.local)?;
        f.write_str("@")?;
        f.write_str(&self.domain)
    }
}

impl Serialize for EmailAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An address with an optional display name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mailbox {
    /// The display name, if any (already unquoted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The address.
    pub email: EmailAddress,
}

impl Mailbox {
    /// Parses `addr`, `<addr>`, `Name <addr>` or `"Name, Inc." <addr>`; `field` names the input
    /// in the error.
    pub fn parse(input: &str, field: &str) -> Result<Self, FieldError> {
        check_header_value(field, input)?;
        let input = input.trim();
        let (name, addr) = match (input.rfind('<'), input.ends_with('>')) {
            (Some(open), true) => {
                let name = input[..open].trim();
                let name = name
                    .strip_prefix('"')
                    .and_then(|n| n.strip_suffix('"'))
                    .unwrap_or(name)
                    .trim();
                (
                    if name.is_empty() {
                        None
                    } else {
                        Some(name.to_owned())
                    },
                    &input[open + 1..input.len() - 1],
                )
            }
            _ => (None, input),
        };
        let email =
            EmailAddress::parse(addr).map_err(|m| FieldError::new("invalid_address", field, m))?;
        let mailbox = Self { name, email };
        mailbox.check_name(field)?;
        Ok(mailbox)
    }

    /// Builds a mailbox from parts (the JSON object form `{"email", "name"}`).
    pub fn from_parts(email: &str, name: Option<&str>, field: &str) -> Result<Self, FieldError> {
        let email =
            EmailAddress::parse(email).map_err(|m| FieldError::new("invalid_address", field, m))?;
        let name = name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        let mailbox = Self { name, email };
        mailbox.check_name(field)?;
        Ok(mailbox)
    }

    fn check_name(&self, field: &str) -> Result<(), FieldError> {
        if let Some(name) = &self.name {
            check_header_value(field, name)?;
            if name.chars().count() > MAX_DISPLAY_NAME {
                return Err(FieldError::new(
                    "invalid_address",
                    field,
                    "display name is too long",
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(
                f,
                "\"{}\" <{}>",
                n.replace('\\', "\\\\").replace('"', "\\\""),
                self.email
            ),
            None => write!(f, "{}", self.email),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_international_addresses() {
        for ok in [
            "ann@example.com",
            "ann.lee+tag@sub.example.co.uk",
            "\"ann lee\"@example.com",
            "ann@[192.0.2.1]",
            "ann@bücher.example",
            "ñandú@example.com",
            "o'brien@example.ie",
        ] {
            assert!(EmailAddress::parse(ok).is_ok(), "{ok} should parse");
        }
        assert_eq!(
            EmailAddress::parse("ann@BÜCHER.example").unwrap().domain(),
            "xn--bcher-kva.example"
        );
    }

    #[test]
    fn refuses_malformed_addresses() {
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "ann@localhost",
            "ann..lee@example.com",
            ".ann@example.com",
            "ann lee@example.com",
            "ann@exa mple.com",
            "ann@-example.com",
            "ann@example.com\r\nBcc: x@evil.com",
            "ann@example.123",
            "ann@[999.1.1.1]",
        ] {
            assert!(
                EmailAddress::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(EmailAddress::parse(&long_local).is_err());
    }

    #[test]
    fn parses_mailboxes_with_names() {
        let m = Mailbox::parse("Ann Lee <ann@example.com>", "from").unwrap();
        assert_eq!(m.name.as_deref(), Some("Ann Lee"));
        assert_eq!(m.email.to_string(), "ann@example.com");
        let m = Mailbox::parse("\"Lee, Ann\" <ann@example.com>", "from").unwrap();
        assert_eq!(m.name.as_deref(), Some("Lee, Ann"));
        assert_eq!(m.to_string(), "\"Lee, Ann\" <ann@example.com>");
        let e =
            Mailbox::parse("Ann\r\nBcc: evil@example.com <ann@example.com>", "from").unwrap_err();
        assert_eq!(e.code, "header_injection");
        assert_eq!(e.field, "from");
    }
}
