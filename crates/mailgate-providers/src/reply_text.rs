//! What a provider said, made safe to store and show: provider error texts end up in
//! `last_error`, in events and in API answers, so addresses are hidden and length is bounded.

/// The longest provider text kept, in characters (an ellipsis marks the cut).
pub const MAX_CHARS: usize = 300;

/// Replaces every word that contains `@` with `<address>`, collapses whitespace, says "no details
/// given" for an empty text, and cuts it to [`MAX_CHARS`].
pub fn safe(text: &str) -> String {
    let scrubbed = text
        .split_whitespace()
        .map(|w| if w.contains('@') { "<address>" } else { w })
        .collect::<Vec<_>>()
        .join(" ");
    if scrubbed.is_empty() {
        return "no details given".into();
    }
    match scrubbed.char_indices().nth(MAX_CHARS) {
        Some((i, _)) => format!("{}…", &scrubbed[..i]),
        None => scrubbed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_addresses_and_bounds_length() {
        assert_eq!(
            safe("Email address is not verified: bob@example.com, (ann@example.org)."),
            "Email address is not verified: <address> <address>"
        );
        assert_eq!(safe("  \n "), "no details given");
        let long = "x".repeat(400);
        assert_eq!(safe(&long).chars().count(), MAX_CHARS + 1);
        assert!(safe(&long).ends_with('…'));
        assert_eq!(safe("é".repeat(10).as_str()), "é".repeat(10));
    }
}
