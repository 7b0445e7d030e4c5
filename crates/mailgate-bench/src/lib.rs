//! Benchmark tools for mailgate (see `BENCHMARKS.md` and `bench/run`):
//! - `floor-http`: axum hello-world (`GET /`) and 1 KB JSON echo (`POST /echo`), the HTTP floor;
//! - `floor-durable`: axum + JSON + one SQLite writer thread (WAL, `synchronous=FULL`) with
//!   group commit, answering 202 only after the commit: the durable-accept floor;
//! - `loadgen`: a small open- or closed-loop HTTP/1.1 load generator with latency percentiles
//!   and a JSON report; it also posts signed provider webhooks (`webhooks`).
#![forbid(unsafe_code)]

pub mod webhooks;

/// A ~1 KB send request body whose subject carries `run` and `seq`, so that every message is
/// distinct (the mock provider can count them by subject).
pub fn send_body(run: &str, seq: u64) -> String {
    // The filler makes the body 1,024 bytes give or take the digits of `seq`.
    const FILLER: &str = "Thanks for your order. Your receipt follows; keep it for your records. ";
    let mut text = String::with_capacity(800);
    while text.len() < 760 {
        text.push_str(FILLER);
    }
    text.truncate(760);
    format!(
        r#"{{"environment":"default","from":"Acme <noreply@acme.example>","to":"user{}@example.org","subject":"Your receipt {run}-{seq}","text":"{text}","tags":["receipt"],"metadata":{{"order":"{seq}"}}}}"#,
        seq % 1000
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_body_is_about_one_kilobyte_of_valid_json() {
        let b = super::send_body("r1", 123_456);
        assert!((900..1100).contains(&b.len()), "{}", b.len());
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["subject"], "Your receipt r1-123456");
    }
}
