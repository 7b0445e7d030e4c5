//! Bad API keys.

use reqwest::Method;
use serde_json::json;

use super::{email, with, Auth, Case, Rng};

pub(super) fn bad_keys(r: &mut Rng, admin: &str, key: &str, out: &mut Vec<Case>) {
    const F: &str = "bad_key";
    for _ in 0..110 {
        let (auth, what): (Auth, String) = match r.below(9) {
            0 => (Auth::None, "no key".into()),
            1 => (Auth::Raw(b"Bearer".to_vec()), "empty bearer".into()),
            2 => (
                Auth::Raw(format!("Bearer mg_{}", r.word()).into_bytes()),
                "unknown key".into(),
            ),
            3 => (
                Auth::Raw(format!("Basic {admin}").into_bytes()),
                "admin key as Basic".into(),
            ),
            4 => (
                Auth::Raw(format!("Bearer {}x", key).into_bytes()),
                "key with a suffix".into(),
            ),
            5 => (
                Auth::Raw(format!("Bearer {}", &key[..key.len() - 1]).into_bytes()),
                "truncated key".into(),
            ),
            6 => (
                Auth::Raw(format!("Bearer {admin} {admin}").into_bytes()),
                "two keys".into(),
            ),
            7 => (
                Auth::Raw(format!("Bearer {}", "A".repeat(r.range(100, 4000))).into_bytes()),
                "long key".into(),
            ),
            _ => (
                Auth::Raw(format!("Token {key}").into_bytes()),
                "wrong scheme".into(),
            ),
        };
        let path = *r.pick(&[
            "/v1/emails",
            "/v1/environments/default/provider",
            "/v1/environments/default/templates/SignIn",
        ]);
        let method = if path == "/v1/emails" {
            Method::POST
        } else {
            Method::PUT
        };
        out.push(
            Case::new(F, format!("{method} {path}: {what}"), method, path)
                .auth(auth)
                .json(&email())
                .expect(401, "unauthorized"),
        );
    }
    for _ in 0..20 {
        out.push(
            Case::send(
                F,
                "another environment's send",
                &with(email(), "environment", "hooks".into()),
            )
            .expect(403, "forbidden_environment"),
        );
        out.push(
            Case::new(
                F,
                "another environment's provider",
                Method::PUT,
                "/v1/environments/hooks/provider",
            )
            .json(&json!({"dsn": "capture://"}))
            .expect(403, "forbidden_environment"),
        );
    }
}
