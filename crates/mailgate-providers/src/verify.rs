//! What the providers' `verify` implementations share: turning a failed request into a check,
//! naming where requests go, and listing names without flooding the report.

use mailgate_core::provider::{CheckAspect, SendError, VerifyCheck};

/// The check for a verification request that failed. A retryable failure (no answer, a timeout,
/// an outage, throttling) says nothing about `aspect`: it is a `Connection` failure. A refusal
/// is a failure of `aspect`. The detail is the classified error (code and message), which never
/// holds a secret.
pub(crate) fn request_failed(aspect: CheckAspect, e: &SendError) -> VerifyCheck {
    match e {
        SendError::Retryable { .. } => VerifyCheck::failed(CheckAspect::Connection, e.to_string()),
        _ => VerifyCheck::failed(aspect, e.to_string()),
    }
}

/// A `Skipped` check for `aspect` because an earlier check failed.
pub(crate) fn not_checked(aspect: CheckAspect, why: &str) -> VerifyCheck {
    VerifyCheck::skipped(aspect, format!("not checked: {why}"))
}

/// Where requests go: `region {region} ({host})`, or the endpoint override's host when `base`
/// is not the region's own `region_base`.
pub(crate) fn region_check(region: &str, base: &str, region_base: &str) -> VerifyCheck {
    let host = host_of(base);
    if host == host_of(region_base) {
        VerifyCheck::ok(CheckAspect::Region, format!("region {region} ({host})"))
    } else {
        VerifyCheck::ok(
            CheckAspect::Region,
            format!("region {region}, through the endpoint override {host}"),
        )
    }
}

/// The host (and port, when given) of a URL, never its path, query or credentials; the URL
/// itself when it does not parse.
pub(crate) fn host_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => url.to_owned(),
        },
        Err(_) => url.to_owned(),
    }
}

/// `a, b, c` — at most `max` of `names`, then `and N more`.
pub(crate) fn list<S: AsRef<str>>(names: &[S], max: usize) -> String {
    let shown: Vec<&str> = names.iter().take(max).map(AsRef::as_ref).collect();
    let mut out = shown.join(", ");
    if names.len() > max {
        out.push_str(&format!(" and {} more", names.len() - max));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::provider::CheckStatus;

    #[test]
    fn outages_are_connection_failures_and_refusals_stay_with_their_aspect() {
        let c = request_failed(
            CheckAspect::Sender,
            &SendError::retryable("timeout", "no answer"),
        );
        assert_eq!(
            (c.aspect, c.status, c.detail.as_str()),
            (
                CheckAspect::Connection,
                CheckStatus::Failed,
                "timeout: no answer"
            )
        );
        let c = request_failed(
            CheckAspect::Credentials,
            &SendError::unusable("http_401", "bad key"),
        );
        assert_eq!(
            (c.aspect, c.status),
            (CheckAspect::Credentials, CheckStatus::Failed)
        );
    }

    #[test]
    fn hosts_and_lists() {
        assert_eq!(host_of("https://api.mailgun.net"), "api.mailgun.net");
        assert_eq!(host_of("http://u:p@127.0.0.1:8080/x?k=v"), "127.0.0.1:8080");
        assert_eq!(list(&["a", "b", "c"], 2), "a, b and 1 more");
        assert_eq!(list(&["a"], 2), "a");
        assert_eq!(list::<&str>(&[], 2), "");
    }
}
