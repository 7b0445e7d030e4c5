//! What the mock does to each request: its latency distribution, its fault mix and its rate
//! limit. Each can be given on the command line (`--latency`, `--errors`, `--rate-limit`) and
//! changed at run time (`POST /control`, or [`crate::MockHandle::set_behavior`]).

use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// A value that could not be parsed, with what was expected.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

/// How long the mock waits before answering.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Latency {
    /// Always the same delay (`fixed:0ms`, `fixed:20ms`).
    Fixed { ms: f64 },
    /// Uniform between two bounds (`uniform:50..150ms`).
    Uniform { min_ms: f64, max_ms: f64 },
    /// Log-normal with the given median and 99th percentile (`lognormal:p50=200ms,p99=1s`).
    LogNormal { p50_ms: f64, p99_ms: f64 },
}

impl Default for Latency {
    fn default() -> Self {
        Latency::Fixed { ms: 0.0 }
    }
}

/// The 99th percentile of the standard normal distribution.
const Z99: f64 = 2.326_347_874;

impl Latency {
    /// Draws one delay.
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        let ms = match *self {
            Latency::Fixed { ms } => ms,
            Latency::Uniform { min_ms, max_ms } if max_ms > min_ms => rng.gen_range(min_ms..max_ms),
            Latency::Uniform { min_ms, .. } => min_ms,
            Latency::LogNormal { p50_ms, p99_ms } => {
                let sigma = (p99_ms / p50_ms).ln().max(0.0) / Z99;
                // Box-Muller: one standard normal draw from two uniforms.
                let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
                let u2: f64 = rng.gen();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                p50_ms * (sigma * z).exp()
            }
        };
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }
}

fn parse_ms(s: &str) -> Result<f64, ParseError> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (s, 1.0)
    };
    num.trim()
        .parse::<f64>()
        .map(|v| v * scale)
        .map_err(|_| ParseError(format!("not a duration: {s:?} (use 20ms or 1s)")))
}

impl FromStr for Latency {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        match kind {
            "fixed" => Ok(Latency::Fixed {
                ms: parse_ms(rest)?,
            }),
            "uniform" => {
                let (a, b) = rest
                    .split_once("..")
                    .ok_or_else(|| ParseError("uniform:MIN..MAX, e.g. uniform:50..150ms".into()))?;
                // `50..150ms`: the unit of the upper bound applies to both.
                let unit = if b.ends_with("ms") {
                    "ms"
                } else if b.ends_with('s') {
                    "s"
                } else {
                    ""
                };
                let a = if a.ends_with('s') {
                    a.to_owned()
                } else {
                    format!("{a}{unit}")
                };
                Ok(Latency::Uniform {
                    min_ms: parse_ms(&a)?,
                    max_ms: parse_ms(b)?,
                })
            }
            "lognormal" => {
                let mut p50 = None;
                let mut p99 = None;
                for part in rest.split(',') {
                    match part.split_once('=') {
                        Some(("p50", v)) => p50 = Some(parse_ms(v)?),
                        Some(("p99", v)) => p99 = Some(parse_ms(v)?),
                        _ => return Err(ParseError(format!("unknown lognormal part {part:?}"))),
                    }
                }
                let p50_ms = p50.ok_or_else(|| ParseError("lognormal needs p50=…".into()))?;
                Ok(Latency::LogNormal {
                    p50_ms,
                    p99_ms: p99.unwrap_or(p50_ms * 5.0),
                })
            }
            _ => Err(ParseError(format!(
                "unknown latency {s:?}: fixed:Nms, uniform:A..Bms or lognormal:p50=…,p99=…"
            ))),
        }
    }
}

/// Fractions of requests answered with a fault instead of success; drawn independently per
/// request in this order: reset, 503, 500, 429, 400.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    /// Close the connection after reading the request, without answering.
    #[serde(default)]
    pub reset: f64,
    /// 503 service unavailable.
    #[serde(default, rename = "503")]
    pub unavailable: f64,
    /// 500 internal error.
    #[serde(default, rename = "500")]
    pub internal: f64,
    /// 429 with the provider's own rate-limit headers.
    #[serde(default, rename = "429")]
    pub throttled: f64,
    /// 400: a permanent rejection.
    #[serde(default, rename = "400")]
    pub rejected: f64,
}

/// The outcome drawn for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Reset,
    Unavailable,
    Internal,
    Throttled,
    Rejected,
}

impl Faults {
    /// Draws the fault for one request, if any.
    pub fn draw(&self, rng: &mut impl Rng) -> Option<Fault> {
        let x: f64 = rng.gen();
        let mut acc = 0.0;
        for (p, f) in [
            (self.reset, Fault::Reset),
            (self.unavailable, Fault::Unavailable),
            (self.internal, Fault::Internal),
            (self.throttled, Fault::Throttled),
            (self.rejected, Fault::Rejected),
        ] {
            acc += p;
            if x < acc {
                return Some(f);
            }
        }
        None
    }
}

impl FromStr for Faults {
    type Err = ParseError;

    /// `503:0.05,429:0.01,reset:0.001` (empty or `none`: no faults).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut f = Faults::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "none" {
                continue;
            }
            let (k, v) = part
                .split_once(':')
                .ok_or_else(|| ParseError(format!("fault {part:?}: use KIND:FRACTION")))?;
            let v: f64 = v
                .parse()
                .map_err(|_| ParseError(format!("fault {part:?}: fraction is not a number")))?;
            match k {
                "reset" => f.reset = v,
                "503" => f.unavailable = v,
                "500" => f.internal = v,
                "429" => f.throttled = v,
                "400" => f.rejected = v,
                _ => return Err(ParseError(format!("unknown fault kind {k:?}"))),
            }
        }
        Ok(f)
    }
}

/// Everything the mock applies to a request, changeable at run time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Behavior {
    /// The delay before each answer.
    #[serde(default)]
    pub latency: Latency,
    /// The fault mix.
    #[serde(default)]
    pub faults: Faults,
    /// Requests per second allowed (token bucket, one second of burst); above it, 429.
    #[serde(default)]
    pub rate_limit: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parses_latencies() {
        assert_eq!(
            "fixed:0ms".parse::<Latency>().unwrap(),
            Latency::Fixed { ms: 0.0 }
        );
        assert_eq!(
            "uniform:50..150ms".parse::<Latency>().unwrap(),
            Latency::Uniform {
                min_ms: 50.0,
                max_ms: 150.0
            }
        );
        assert_eq!(
            "lognormal:p50=200ms,p99=1s".parse::<Latency>().unwrap(),
            Latency::LogNormal {
                p50_ms: 200.0,
                p99_ms: 1000.0
            }
        );
        assert!("gaussian:1".parse::<Latency>().is_err());
    }

    #[test]
    fn lognormal_median_is_near_p50() {
        let l = Latency::LogNormal {
            p50_ms: 200.0,
            p99_ms: 1000.0,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut v: Vec<f64> = (0..20_000)
            .map(|_| l.sample(&mut rng).as_secs_f64() * 1000.0)
            .collect();
        v.sort_by(f64::total_cmp);
        let p50 = v[v.len() / 2];
        let p99 = v[v.len() * 99 / 100];
        assert!((180.0..220.0).contains(&p50), "{p50}");
        assert!((850.0..1150.0).contains(&p99), "{p99}");
    }

    #[test]
    fn parses_and_draws_faults() {
        let f: Faults = "503:0.05,429:0.01,reset:0.001".parse().unwrap();
        assert_eq!(f.unavailable, 0.05);
        assert_eq!(f.throttled, 0.01);
        assert_eq!(f.reset, 0.001);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let n = (0..100_000)
            .filter(|_| f.draw(&mut rng) == Some(Fault::Unavailable))
            .count();
        assert!((4_500..5_500).contains(&n), "{n}");
        assert!("nope:1".parse::<Faults>().is_err());
    }
}
