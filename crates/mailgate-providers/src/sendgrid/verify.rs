//! What SendGrid's `verify` makes of what it read: the API key's scopes (`GET /v3/scopes`), the
//! verified Single Senders (`GET /v3/verified_senders`) and the authenticated domains
//! (`GET /v3/whitelabel/domains`). Single Senders are addresses: they are counted, never listed,
//! except the configured sender.

use mailgate_core::address::Mailbox;
use mailgate_core::provider::{CheckAspect, VerifyCheck};
use serde::Deserialize;

use crate::verify::list;

/// The most domain names one check lists.
const MAX_LISTED: usize = 20;

/// `GET /v3/scopes`.
#[derive(Deserialize)]
pub(super) struct Scopes {
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `GET /v3/verified_senders`.
#[derive(Deserialize)]
pub(super) struct Senders {
    #[serde(default)]
    pub results: Vec<Sender>,
}

/// A Single Sender.
#[derive(Deserialize)]
pub(super) struct Sender {
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default)]
    pub from_email: String,
    #[serde(default)]
    pub verified: bool,
}

/// An authenticated domain.
#[derive(Deserialize)]
pub(super) struct AuthDomain {
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub valid: bool,
}

/// What one listing gave: the items, or why they could not be read.
pub(super) enum Listing<T> {
    Read(Vec<T>),
    Refused(String),
}

impl<T> Listing<T> {
    fn items(&self) -> Option<&[T]> {
        match self {
            Listing::Read(items) => Some(items),
            Listing::Refused(_) => None,
        }
    }
}

/// Whether the key may send.
pub(super) fn scopes_check(scopes: &Scopes) -> VerifyCheck {
    if scopes.scopes.iter().any(|s| s == "mail.send") {
        VerifyCheck::ok(
            CheckAspect::Credentials,
            "API key accepted by SendGrid; it may send (mail.send)",
        )
    } else {
        VerifyCheck::failed(
            CheckAspect::Credentials,
            "API key accepted by SendGrid, but it lacks the mail.send permission: give it Mail Send access",
        )
    }
}

/// Whether `domain` is `parent` or one of its subdomains.
fn covered_by(domain: &str, parent: &str) -> bool {
    domain.eq_ignore_ascii_case(parent)
        || domain
            .to_ascii_lowercase()
            .ends_with(&format!(".{}", parent.to_ascii_lowercase()))
}

/// The sender checks from both listings.
pub(super) fn sender_checks(
    from: Option<&Mailbox>,
    senders: &Listing<Sender>,
    domains: &Listing<AuthDomain>,
    checks: &mut Vec<VerifyCheck>,
) {
    match (senders, domains) {
        (Listing::Refused(a), Listing::Refused(b)) => {
            checks.push(VerifyCheck::skipped(
                CheckAspect::Sender,
                format!("the API key cannot read senders or authenticated domains (a mail.send-only key?), so the sender was not checked: {a}; {b}"),
            ));
            return;
        }
        (Listing::Read(_), Listing::Refused(why)) => checks.push(VerifyCheck::skipped(
            CheckAspect::Sender,
            format!("authenticated domains not readable ({why})"),
        )),
        (Listing::Refused(why), Listing::Read(_)) => checks.push(VerifyCheck::skipped(
            CheckAspect::Sender,
            format!("verified senders not readable ({why})"),
        )),
        (Listing::Read(_), Listing::Read(_)) => {}
    }
    let valid: Vec<&str> = domains
        .items()
        .unwrap_or_default()
        .iter()
        .filter(|d| d.valid)
        .map(|d| d.domain.as_str())
        .collect();
    if let Some(from) = from {
        checks.push(from_check(from, senders, domains.items().is_some(), &valid));
    }
    if let Some(domains) = domains.items() {
        checks.push(if valid.is_empty() {
            VerifyCheck::warning(
                CheckAspect::Sender,
                "no authenticated (valid) domain in SendGrid: authenticate one for DMARC alignment",
            )
        } else {
            VerifyCheck::ok(
                CheckAspect::Sender,
                format!("authenticated domains: {}", list(&valid, MAX_LISTED)),
            )
        });
        let invalid: Vec<&str> = domains
            .iter()
            .filter(|d| !d.valid)
            .map(|d| d.domain.as_str())
            .collect();
        if !invalid.is_empty() {
            checks.push(VerifyCheck::warning(
                CheckAspect::Sender,
                format!(
                    "domains whose DNS records do not validate: {}",
                    list(&invalid, MAX_LISTED)
                ),
            ));
        }
    }
    let verified = senders
        .items()
        .map(|s| s.iter().filter(|s| s.verified).count());
    if let Some(n) = verified {
        checks.push(VerifyCheck::ok(
            CheckAspect::Sender,
            format!("{n} verified Single Sender(s)"),
        ));
    }
    if from.is_none() && valid.is_empty() && verified == Some(0) {
        checks.push(VerifyCheck::failed(
            CheckAspect::Sender,
            "nothing can be sent yet: authenticate a domain or verify a Single Sender",
        ));
    }
}

/// Whether the configured sender is a verified identity: an authenticated domain (or a parent
/// of its domain), or a verified Single Sender.
fn from_check(
    from: &Mailbox,
    senders: &Listing<Sender>,
    domains_read: bool,
    valid: &[&str],
) -> VerifyCheck {
    let address = from.email.normalized();
    let domain = from.email.domain();
    let sender = senders
        .items()
        .unwrap_or_default()
        .iter()
        .find(|s| s.from_email.eq_ignore_ascii_case(&address));
    let covering = valid.iter().find(|d| covered_by(domain, d));
    match (sender, covering) {
        (_, Some(d)) => VerifyCheck::ok(
            CheckAspect::Sender,
            format!("From {address}: domain {d} is authenticated in SendGrid"),
        ),
        (Some(s), None) if s.verified => VerifyCheck::ok(
            CheckAspect::Sender,
            format!("From {address}: verified Single Sender in SendGrid"),
        ),
        (Some(_), None) => VerifyCheck::failed(
            CheckAspect::Sender,
            format!("From {address}: a Single Sender exists but is not verified yet — click the link SendGrid emailed, or authenticate {domain}"),
        ),
        // What the key could not read may hold it.
        (None, None) if !domains_read || senders.items().is_none() => VerifyCheck::warning(
            CheckAspect::Sender,
            format!("From {address}: not found in what the API key can read — make sure {domain} is authenticated or the address is a verified Single Sender"),
        ),
        (None, None) => VerifyCheck::failed(
            CheckAspect::Sender,
            format!("From {address}: not a verified sender identity in SendGrid — authenticate the domain {domain} or verify the address as a Single Sender"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::provider::CheckStatus;

    fn sender(email: &str, verified: bool) -> Sender {
        Sender {
            id: None,
            from_email: email.into(),
            verified,
        }
    }

    fn domain(name: &str, valid: bool) -> AuthDomain {
        AuthDomain {
            domain: name.into(),
            valid,
        }
    }

    #[test]
    fn scopes_decide_the_credentials() {
        let s = |v: &[&str]| Scopes {
            scopes: v.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            scopes_check(&s(&["mail.send", "alerts.read"])).status,
            CheckStatus::Ok
        );
        assert_eq!(
            scopes_check(&s(&["alerts.read"])).status,
            CheckStatus::Failed
        );
    }

    #[test]
    fn parent_domains_cover_subdomains_and_senders_are_only_counted() {
        let from = Mailbox::parse("noreply@mail.acme.com", "from").unwrap();
        let senders = Listing::Read(vec![sender("ops@single.org", true)]);
        let domains = Listing::Read(vec![domain("acme.com", true)]);
        let mut checks = Vec::new();
        sender_checks(Some(&from), &senders, &domains, &mut checks);
        assert_eq!(checks[0].status, CheckStatus::Ok, "{checks:?}");
        assert!(checks[0]
            .detail
            .contains("domain acme.com is authenticated"));
        assert!(!checks.iter().any(|c| c.detail.contains("ops@single.org")));

        let unreadable: Listing<AuthDomain> = Listing::Refused("forbidden".into());
        let mut checks = Vec::new();
        sender_checks(Some(&from), &senders, &unreadable, &mut checks);
        assert!(
            checks.iter().any(|c| c.status == CheckStatus::Warning
                && c.detail.contains("not found in what the API key can read")),
            "{checks:?}"
        );
    }
}
