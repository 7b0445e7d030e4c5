//! SES's `verify`: the region (`Region`), the credentials and the account (`GetAccount`:
//! `Credentials`, and sandbox, paused sending, enforcement and the send quota as `Quota`), the
//! configured sender's identity or its parent domains (`GetEmailIdentity`) and the region's
//! verified identities (`ListEmailIdentities`) as `Sender`. Address identities other than the
//! configured sender are counted, never named.

use aws_sdk_sesv2::operation::get_account::GetAccountOutput;
use aws_sdk_sesv2::types::{IdentityType, VerificationStatus};
use mailgate_core::address::Mailbox;
use mailgate_core::provider::{CheckAspect, SendError, VerifyCheck};

use super::classify::classify_other;
use super::client::SesProvider;
use crate::verify::{host_of, list, not_checked, request_failed};

/// The most identity pages `verify` reads.
const MAX_IDENTITY_PAGES: usize = 10;
/// The most domain names one check lists.
const MAX_LISTED: usize = 20;
/// Above this share of the daily quota sent, the quota check warns.
const QUOTA_WARNING_SHARE: f64 = 0.9;

/// Whether verification goes on after a check.
enum Next {
    Continue,
    Stop,
}

impl SesProvider {
    /// Every check, in order; a refused credential or an unreachable SES stops early.
    pub(super) async fn verify_checks(&self) -> Vec<VerifyCheck> {
        let mut checks = vec![self.region_check()];
        let mut credentials_checked = match self.check_account(&mut checks).await {
            Some(known) => known,
            None => return checks,
        };
        if let Some(from) = self.from.clone() {
            match self.check_from(&from, &mut checks).await {
                Ok(answered) => credentials_checked |= answered,
                Err(Next::Stop) => return checks,
                Err(Next::Continue) => {}
            }
        }
        match self.check_identities(&mut checks).await {
            Ok(answered) => credentials_checked |= answered,
            Err(Next::Stop) => return checks,
            Err(Next::Continue) => {}
        }
        if !credentials_checked {
            checks.push(VerifyCheck::skipped(
                CheckAspect::Credentials,
                format!(
                    "SES in {} answered nothing that proves the credentials",
                    self.region
                ),
            ));
        } else if !checks.iter().any(|c| c.aspect == CheckAspect::Credentials) {
            checks.push(self.credentials_ok(""));
        }
        checks
    }

    fn region_check(&self) -> VerifyCheck {
        match &self.endpoint {
            Some(endpoint) => VerifyCheck::ok(
                CheckAspect::Region,
                format!(
                    "region {}, through the endpoint override {}",
                    self.region,
                    host_of(endpoint)
                ),
            ),
            None => VerifyCheck::ok(
                CheckAspect::Region,
                format!(
                    "region {} (email.{}.amazonaws.com)",
                    self.region, self.region
                ),
            ),
        }
    }

    fn credentials_ok(&self, note: &str) -> VerifyCheck {
        VerifyCheck::ok(
            CheckAspect::Credentials,
            format!("credentials accepted by SES in {}{note}", self.region),
        )
    }

    /// `GetAccount`: `Some(true)` when it proved the credentials, `Some(false)` when it could
    /// not say, `None` when verification must stop.
    async fn check_account(&self, checks: &mut Vec<VerifyCheck>) -> Option<bool> {
        let error = match self.client.get_account().send().await {
            Ok(account) => {
                checks.push(self.credentials_ok(""));
                self.describe_account(&account, checks);
                return Some(true);
            }
            Err(e) => classify_other(e, &self.region),
        };
        let unavailable = |e: &SendError| {
            VerifyCheck::skipped(
                CheckAspect::Quota,
                format!(
                    "account details unavailable ({e}); send rate: {}",
                    match self.configured_rate {
                        Some(r) => format!("max_send_rate {r} per second"),
                        None => "no limit configured".into(),
                    }
                ),
            )
        };
        match &error {
            SendError::Retryable { .. } if error.code() == "credentials_unavailable" => {
                checks.push(VerifyCheck::failed(
                    CheckAspect::Credentials,
                    error.to_string(),
                ));
                checks.push(not_checked(CheckAspect::Sender, "no AWS credentials"));
                None
            }
            SendError::Retryable { .. } => {
                checks.push(request_failed(CheckAspect::Connection, &error));
                None
            }
            // Authorization is decided after authentication: the credentials are good, the
            // policy does not grant ses:GetAccount.
            SendError::Unusable { .. } if error.code().starts_with("AccessDenied") => {
                checks.push(self.credentials_ok(" (but not allowed ses:GetAccount)"));
                checks.push(unavailable(&error));
                Some(true)
            }
            SendError::Unusable { .. } => {
                checks.push(request_failed(CheckAspect::Credentials, &error));
                checks.push(not_checked(
                    CheckAspect::Sender,
                    "SES refused the credentials",
                ));
                None
            }
            // An endpoint without GetAccount (moto answers 404).
            SendError::Permanent { .. } => {
                checks.push(unavailable(&error));
                Some(false)
            }
        }
    }

    /// Sandbox, paused sending, enforcement status and the quota.
    fn describe_account(&self, account: &GetAccountOutput, checks: &mut Vec<VerifyCheck>) {
        let region = &self.region;
        let quota = account.send_quota();
        let max = quota.map(|q| q.max24_hour_send()).unwrap_or_default();
        let daily = if max < 0.0 {
            "unlimited".to_owned()
        } else {
            format!("{} per day", number(max))
        };
        let rate = quota.map(|q| q.max_send_rate()).unwrap_or_default();
        let sent = quota.map(|q| q.sent_last24_hours()).unwrap_or_default();
        if !account.sending_enabled() {
            checks.push(VerifyCheck::failed(
                CheckAspect::Quota,
                format!(
                    "sending is paused for this account in {region} — resume it in the SES console"
                ),
            ));
        }
        match account.enforcement_status() {
            Some("SHUTDOWN") => checks.push(VerifyCheck::failed(
                CheckAspect::Quota,
                format!("AWS shut down sending for this account in {region} (enforcement status SHUTDOWN) — contact AWS support"),
            )),
            Some("PROBATION") => checks.push(VerifyCheck::warning(
                CheckAspect::Quota,
                format!("the account is on probation in {region} (bounce or complaint rate too high) — fix it before AWS pauses sending"),
            )),
            _ => {}
        }
        checks.push(if account.production_access_enabled() {
            VerifyCheck::ok(
                CheckAspect::Quota,
                format!(
                    "production access: {daily}, {} per second ({} sent in the last 24 hours)",
                    number(rate),
                    number(sent)
                ),
            )
        } else {
            VerifyCheck::warning(
                CheckAspect::Quota,
                format!(
                    "sandbox: only verified recipients, {daily}, {} per second — request production access in the SES console",
                    number(rate)
                ),
            )
        });
        if max > 0.0 && sent >= max * QUOTA_WARNING_SHARE {
            checks.push(VerifyCheck::warning(
                CheckAspect::Quota,
                format!(
                    "{} of {} messages sent in the last 24 hours: the daily quota is nearly used up",
                    number(sent),
                    number(max)
                ),
            ));
        }
    }

    /// Whether an identity exists and is verified for sending (`None`: it does not exist).
    async fn identity_verified(&self, identity: &str) -> Result<Option<bool>, SendError> {
        match self
            .client
            .get_email_identity()
            .email_identity(identity)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.verified_for_sending_status()
                    || out.verification_status() == Some(&VerificationStatus::Success),
            )),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(classify_other(e, &self.region)),
        }
    }

    /// The configured sender: the address, then its domain and each parent domain. `Ok(true)`:
    /// SES answered (so the credentials work).
    async fn check_from(
        &self,
        from: &Mailbox,
        checks: &mut Vec<VerifyCheck>,
    ) -> Result<bool, Next> {
        let address = from.email.to_string();
        let domain = from.email.domain();
        let mut candidates = vec![address.clone()];
        let mut d = domain;
        loop {
            candidates.push(d.to_owned());
            match d.split_once('.') {
                Some((_, parent)) if parent.contains('.') => d = parent,
                _ => break,
            }
        }
        let region = &self.region;
        let mut pending = None;
        for candidate in &candidates {
            match self.identity_verified(candidate).await {
                Ok(Some(true)) => {
                    let kind = if candidate.contains('@') {
                        "address"
                    } else {
                        "domain"
                    };
                    checks.push(VerifyCheck::ok(
                        CheckAspect::Sender,
                        format!(
                            "sender {address}: {kind} {candidate} verified for sending in {region}"
                        ),
                    ));
                    return Ok(true);
                }
                Ok(Some(false)) => pending = pending.or(Some(candidate.clone())),
                Ok(None) => {}
                Err(e) => {
                    return Err(self.listing_failed("read the sender's identity", &e, checks))
                }
            }
        }
        checks.push(VerifyCheck::failed(
            CheckAspect::Sender,
            match pending {
                Some(p) => format!("sender {address}: identity {p} exists in {region} but is not verified yet — finish its DNS (or email) verification"),
                None => format!("sender {address}: no verified identity covers it in {region} — verify the domain {domain} (or the address) in this region"),
            },
        ));
        Ok(true)
    }

    /// The check for a failed identity request, and whether verification goes on.
    fn listing_failed(&self, what: &str, e: &SendError, checks: &mut Vec<VerifyCheck>) -> Next {
        match e {
            SendError::Retryable { .. } => {
                checks.push(request_failed(CheckAspect::Connection, e));
                Next::Stop
            }
            SendError::Unusable { .. } if !e.code().starts_with("AccessDenied") => {
                checks.push(request_failed(CheckAspect::Credentials, e));
                Next::Stop
            }
            // Informational: an endpoint without the operation (moto answers 404) or a policy
            // without it does not make sending fail.
            _ => {
                checks.push(VerifyCheck::skipped(
                    CheckAspect::Sender,
                    format!("could not {what} in {} ({e})", self.region),
                ));
                Next::Continue
            }
        }
    }

    /// The region's identities: the verified domains (and how many addresses), and those not
    /// verified yet. `Ok(true)`: SES answered.
    async fn check_identities(&self, checks: &mut Vec<VerifyCheck>) -> Result<bool, Next> {
        let region = &self.region;
        let configured = self.from.as_ref().map(|f| f.email.to_string());
        let (mut verified, mut pending) = (Names::default(), Names::default());
        let mut token = None;
        for _ in 0..MAX_IDENTITY_PAGES {
            let out = match self
                .client
                .list_email_identities()
                .page_size(100)
                .set_next_token(token)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    let e = classify_other(e, region);
                    return Err(self.listing_failed("list identities", &e, checks));
                }
            };
            for id in out.email_identities() {
                let name = id.identity_name().unwrap_or_default();
                let address = id.identity_type() == Some(&IdentityType::EmailAddress)
                    && configured.as_deref() != Some(name);
                let names = if id.verification_status() == Some(&VerificationStatus::Success)
                    && id.sending_enabled()
                {
                    &mut verified
                } else {
                    &mut pending
                };
                names.add(name, address);
            }
            token = out
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        checks.push(if verified.is_empty() {
            VerifyCheck::failed(
                CheckAspect::Sender,
                format!("no verified identities in {region} — verify a domain before sending"),
            )
        } else {
            VerifyCheck::ok(
                CheckAspect::Sender,
                format!("verified identities in {region}: {}", verified.describe()),
            )
        });
        if !pending.is_empty() {
            checks.push(VerifyCheck::warning(
                CheckAspect::Sender,
                format!(
                    "identities not verified (or sending disabled) in {region}: {}",
                    pending.describe()
                ),
            ));
        }
        Ok(true)
    }
}

/// Identity names to report: domains (and the configured sender) by name, addresses counted.
#[derive(Default)]
struct Names {
    named: Vec<String>,
    addresses: usize,
}

impl Names {
    fn add(&mut self, name: &str, hidden_address: bool) {
        if hidden_address {
            self.addresses += 1;
        } else {
            self.named.push(name.to_owned());
        }
    }

    fn is_empty(&self) -> bool {
        self.named.is_empty() && self.addresses == 0
    }

    fn describe(&self) -> String {
        match (self.named.is_empty(), self.addresses) {
            (_, 0) => list(&self.named, MAX_LISTED),
            (true, n) => format!("{n} address identit{}", if n == 1 { "y" } else { "ies" }),
            (false, n) => format!(
                "{} and {n} address identit{}",
                list(&self.named, MAX_LISTED),
                if n == 1 { "y" } else { "ies" }
            ),
        }
    }
}

/// `200` rather than `200.0`; fractions kept.
fn number(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_counted_and_domains_named() {
        let mut n = Names::default();
        n.add("acme.com", false);
        n.add("ann@example.net", true);
        n.add("bo@example.net", true);
        assert_eq!(n.describe(), "acme.com and 2 address identities");
        let mut n = Names::default();
        n.add("ann@example.net", true);
        assert_eq!(n.describe(), "1 address identity");
        assert_eq!(number(200.0), "200");
        assert_eq!(number(1.5), "1.5");
    }
}
