//! Provider chains: what `PUT /v1/environments/{env}/provider` (and an organization's provider)
//! takes — one provider, a primary with ordered failovers, or a round-robin set — each with an
//! optional maximum send rate, plus the circuit breaker's settings and, for organizations, a
//! sender.
//!
//! Accepted forms (JSON):
//! - one provider: `{"type": "ses", …}` or `{"dsn": "ses+api://…"}`;
//! - a composite DSN as in Symfony Mailer: `{"dsn": "failover(postmark+api://… ses+api://…)"}`
//!   or `roundrobin(…)`;
//! - `{"primary": P, "failovers": [P, …]}` or `{"mode": "roundrobin", "providers": [P, …]}`,
//!   where each `P` is a provider in either form above plus optional `name`, `max_per_second`
//!   and `burst`.
//!
//! Beside those, the top level may hold `mode`, `sender` (the sender of an organization's
//! messages that name none), and `circuit` (`{"failure_threshold": 3, "cooldown_seconds": 30}`). A DSN member
//! takes `max_per_second`, `burst` and `name` as query options (Symfony's `max_per_second`).

use std::time::Duration;

use mailgate_core::limits::RateLimit;
use mailgate_core::routing::{BreakerPolicy, RouteMode};
use mailgate_core::Mailbox;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{ConfigError, ProviderConfig};
use crate::dsn::Dsn;

/// The most providers one chain may hold.
pub const MAX_MEMBERS: usize = 8;

/// One provider of a chain.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// Its name in the chain (unique; defaults to `primary`, `failover-1`, … or `provider-1`, …).
    pub name: String,
    /// The provider.
    pub provider: ProviderConfig,
    /// Its maximum send rate, shared by every process on the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// The circuit breaker's settings for a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitConfig {
    /// Consecutive provider-side failures that open a provider's circuit.
    #[serde(default = "default_threshold")]
    pub failure_threshold: u32,
    /// Seconds an open circuit skips the provider before a message probes it.
    #[serde(default = "default_cooldown")]
    pub cooldown_seconds: u64,
}

fn default_threshold() -> u32 {
    BreakerPolicy::default().failure_threshold
}

fn default_cooldown() -> u64 {
    BreakerPolicy::default().cooldown.as_secs()
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            failure_threshold: default_threshold(),
            cooldown_seconds: default_cooldown(),
        }
    }
}

impl CircuitConfig {
    /// The policy the dispatcher applies.
    pub fn policy(&self) -> BreakerPolicy {
        BreakerPolicy {
            failure_threshold: self.failure_threshold,
            cooldown: Duration::from_secs(self.cooldown_seconds),
        }
    }
}

/// A whole chain, secrets included: stored sealed, shown only through `redacted()`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Failover or round-robin.
    #[serde(default)]
    pub mode: RouteMode,
    /// The providers, primary first.
    pub members: Vec<MemberConfig>,
    /// The sender used for messages that do not name one (organizations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// The circuit breaker.
    #[serde(default)]
    pub circuit: CircuitConfig,
}

impl std::fmt::Debug for ChainConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChainConfig({})", self.redacted())
    }
}

impl From<ProviderConfig> for ChainConfig {
    fn from(provider: ProviderConfig) -> Self {
        Self {
            mode: RouteMode::Failover,
            members: vec![MemberConfig {
                name: "primary".into(),
                provider,
                rate_limit: None,
            }],
            sender: None,
            circuit: CircuitConfig::default(),
        }
    }
}

impl ChainConfig {
    /// Parses any accepted JSON form (see the module documentation).
    pub fn from_json(value: Value) -> Result<Self, ConfigError> {
        let Value::Object(mut obj) = value else {
            return Err(ConfigError::invalid("provider", "must be a JSON object"));
        };
        let mode = match obj.remove("mode") {
            None => None,
            Some(v) => Some(
                serde_json::from_value::<RouteMode>(v)
                    .map_err(|_| ConfigError::invalid("mode", "must be failover or roundrobin"))?,
            ),
        };
        let sender = match obj.remove("sender") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(ConfigError::invalid("sender", "must be a string")),
        };
        let circuit = match obj.remove("circuit") {
            None => CircuitConfig::default(),
            Some(v) => serde_json::from_value(v)
                .map_err(|e| ConfigError::invalid("circuit", e.to_string()))?,
        };
        let (mode, members) = if obj.contains_key("primary") || obj.contains_key("providers") {
            let members = listed_members(obj)?;
            (mode.unwrap_or(RouteMode::Failover), members)
        } else {
            // One provider, or a composite DSN.
            let (dsn_mode, members) = single_or_composite(obj)?;
            if mode.is_some() && dsn_mode.is_some() && mode != dsn_mode {
                return Err(ConfigError::invalid(
                    "mode",
                    "contradicts the composite DSN's failover(…) or roundrobin(…)",
                ));
            }
            (mode.or(dsn_mode).unwrap_or(RouteMode::Failover), members)
        };
        let chain = Self {
            mode,
            members: name_members(mode, members)?,
            sender,
            circuit,
        };
        chain.validate()?;
        Ok(chain)
    }

    /// Parses a DSN: one provider, `failover(…)` or `roundrobin(…)`.
    pub fn from_dsn(s: &str) -> Result<Self, ConfigError> {
        let (mode, members) = parse_dsn_members(s, "dsn")?;
        let mode = mode.unwrap_or(RouteMode::Failover);
        let chain = Self {
            mode,
            members: name_members(mode, members)?,
            sender: None,
            circuit: CircuitConfig::default(),
        };
        chain.validate()?;
        Ok(chain)
    }

    /// Reads a stored chain; also accepts a single provider stored before chains existed.
    pub fn from_stored(value: Value) -> Result<Self, ConfigError> {
        if value.get("members").is_some() {
            serde_json::from_value(value)
                .map_err(|e| ConfigError::invalid("provider", e.to_string()))
        } else {
            ProviderConfig::from_json(value).map(Self::from)
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.members.is_empty() {
            return Err(ConfigError::invalid(
                "providers",
                "a chain needs at least one provider",
            ));
        }
        if self.members.len() > MAX_MEMBERS {
            return Err(ConfigError::invalid(
                "providers",
                format!("a chain holds at most {MAX_MEMBERS} providers"),
            ));
        }
        if let Some(sender) = &self.sender {
            Mailbox::parse(sender, "sender")
                .map_err(|e| ConfigError::invalid("sender", e.message))?;
        }
        if self.circuit.failure_threshold == 0 || self.circuit.failure_threshold > 1000 {
            return Err(ConfigError::invalid(
                "circuit.failure_threshold",
                "must be between 1 and 1000",
            ));
        }
        if self.circuit.cooldown_seconds == 0 || self.circuit.cooldown_seconds > 86_400 {
            return Err(ConfigError::invalid(
                "circuit.cooldown_seconds",
                "must be between 1 and 86400",
            ));
        }
        for (i, m) in self.members.iter().enumerate() {
            if self.members[..i].iter().any(|o| o.name == m.name) {
                return Err(ConfigError::invalid(
                    "name",
                    format!("two providers of the chain are named '{}'", m.name),
                ));
            }
        }
        Ok(())
    }

    /// The chain as JSON with every secret masked, in the shape it is set with: a single
    /// provider without options as the provider itself, anything else as
    /// `{"mode", "primary", "failovers"}` (or `"providers"` for round-robin).
    pub fn redacted(&self) -> Value {
        let plain = self.members.len() == 1
            && self.members[0].rate_limit.is_none()
            && self.members[0].name == "primary"
            && self.sender.is_none()
            && self.circuit == CircuitConfig::default()
            && self.mode == RouteMode::Failover;
        if plain {
            return self.members[0].provider.redacted();
        }
        let member = |m: &MemberConfig| {
            let mut v = m.provider.redacted();
            if let Some(obj) = v.as_object_mut() {
                obj.insert("name".into(), Value::from(m.name.clone()));
                if let Some(r) = &m.rate_limit {
                    obj.insert("max_per_second".into(), Value::from(r.per_second));
                    obj.insert("burst".into(), Value::from(r.burst));
                }
            }
            v
        };
        let mut out = Map::new();
        out.insert(
            "mode".into(),
            serde_json::to_value(self.mode).unwrap_or(Value::Null),
        );
        match self.mode {
            RouteMode::Failover => {
                out.insert("primary".into(), member(&self.members[0]));
                out.insert(
                    "failovers".into(),
                    Value::Array(self.members[1..].iter().map(member).collect()),
                );
            }
            RouteMode::Roundrobin => {
                out.insert(
                    "providers".into(),
                    Value::Array(self.members.iter().map(member).collect()),
                );
            }
        }
        if let Some(sender) = &self.sender {
            out.insert("sender".into(), Value::from(sender.clone()));
        }
        out.insert(
            "circuit".into(),
            serde_json::to_value(self.circuit).unwrap_or(Value::Null),
        );
        Value::Object(out)
    }

    /// The type names of the providers, in order (for logs).
    pub fn type_names(&self) -> Vec<&'static str> {
        self.members
            .iter()
            .map(|m| m.provider.type_name())
            .collect()
    }
}

/// A member before naming: its provider, its rate limit, its name if given.
type Unnamed = (ProviderConfig, Option<RateLimit>, Option<String>);

fn listed_members(mut obj: Map<String, Value>) -> Result<Vec<Unnamed>, ConfigError> {
    let mut members = Vec::new();
    let primary = obj.remove("primary");
    let failovers = obj.remove("failovers");
    let providers = obj.remove("providers");
    if let Some(k) = obj.keys().next() {
        return Err(ConfigError::invalid(
            k.clone(),
            "unknown field beside primary/failovers/providers (known: mode, sender, circuit)",
        ));
    }
    match (primary, providers) {
        (Some(p), None) => {
            members.push(member_from_json(p, "primary")?);
            match failovers {
                None | Some(Value::Null) => {}
                Some(Value::Array(list)) => {
                    for (i, f) in list.into_iter().enumerate() {
                        members.push(member_from_json(f, &format!("failovers[{i}]"))?);
                    }
                }
                Some(_) => return Err(ConfigError::invalid("failovers", "must be an array")),
            }
        }
        (None, Some(Value::Array(list))) => {
            if failovers.is_some() {
                return Err(ConfigError::invalid(
                    "failovers",
                    "give primary and failovers, or providers, not both",
                ));
            }
            for (i, p) in list.into_iter().enumerate() {
                members.push(member_from_json(p, &format!("providers[{i}]"))?);
            }
        }
        (None, Some(_)) => return Err(ConfigError::invalid("providers", "must be an array")),
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                "providers",
                "give primary and failovers, or providers, not both",
            ))
        }
        (None, None) => unreachable!("checked by the caller"),
    }
    Ok(members)
}

/// One member in JSON: a provider (`type` or `dsn`) plus `name`, `max_per_second`, `burst`.
fn member_from_json(value: Value, field: &str) -> Result<Unnamed, ConfigError> {
    let Value::Object(mut obj) = value else {
        return Err(ConfigError::invalid(field, "must be a JSON object"));
    };
    let name = match obj.remove("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            return Err(ConfigError::invalid(
                format!("{field}.name"),
                "must be a string",
            ))
        }
    };
    let per_second = match obj.remove("max_per_second") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_f64().ok_or_else(|| {
            ConfigError::invalid(format!("{field}.max_per_second"), "must be a number")
        })?),
    };
    let burst = match obj.remove("burst") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|b| u32::try_from(b).ok())
                .ok_or_else(|| {
                    ConfigError::invalid(format!("{field}.burst"), "must be a whole number")
                })?,
        ),
    };
    if let Some(Value::String(dsn)) = obj.get("dsn") {
        if dsn.contains('(') {
            return Err(ConfigError::invalid(
                format!("{field}.dsn"),
                "a member is one provider; failover(…) and roundrobin(…) go at the top level",
            ));
        }
    }
    let (provider, dsn_rate, dsn_name) =
        if let (1, Some(Value::String(dsn))) = (obj.len(), obj.get("dsn")) {
            let dsn = dsn.clone();
            parse_member_dsn(&dsn, &format!("{field}.dsn"))?
        } else {
            (ProviderConfig::from_json(Value::Object(obj))?, None, None)
        };
    let rate = match (per_second, burst) {
        (None, None) => dsn_rate,
        (Some(p), b) => Some(rate_limit(p, b.unwrap_or(1), field)?),
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                format!("{field}.burst"),
                "burst needs max_per_second",
            ))
        }
    };
    Ok((provider, rate, name.or(dsn_name)))
}

fn rate_limit(per_second: f64, burst: u32, field: &str) -> Result<RateLimit, ConfigError> {
    RateLimit::new(per_second, burst)
        .map_err(|e| ConfigError::invalid(format!("{field}.{}", e.field), e.message))
}

fn single_or_composite(
    obj: Map<String, Value>,
) -> Result<(Option<RouteMode>, Vec<Unnamed>), ConfigError> {
    if let (1, Some(Value::String(dsn))) = (obj.len(), obj.get("dsn")) {
        return parse_dsn_members(dsn, "dsn");
    }
    // A typed provider, with the member options beside its fields.
    Ok((
        None,
        vec![member_from_json(Value::Object(obj), "provider")?],
    ))
}

/// Splits `failover(a b c)` / `roundrobin(a b)` into members; a plain DSN is one member.
fn parse_dsn_members(
    s: &str,
    field: &str,
) -> Result<(Option<RouteMode>, Vec<Unnamed>), ConfigError> {
    let s = s.trim();
    for (prefix, mode) in [
        ("failover(", RouteMode::Failover),
        ("roundrobin(", RouteMode::Roundrobin),
    ] {
        if let Some(inner) = s.strip_prefix(prefix) {
            let inner = inner.strip_suffix(')').ok_or_else(|| {
                ConfigError::invalid(
                    field,
                    format!("{prefix}…) is missing its closing parenthesis"),
                )
            })?;
            if inner.contains('(') {
                return Err(ConfigError::invalid(
                    field,
                    "composite DSNs cannot be nested",
                ));
            }
            let members = inner
                .split_whitespace()
                .enumerate()
                .map(|(i, d)| parse_member_dsn(d, &format!("{field}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            if members.len() < 2 {
                return Err(ConfigError::invalid(
                    field,
                    format!("{prefix}…) needs at least two DSNs separated by spaces"),
                ));
            }
            return Ok((Some(mode), members));
        }
    }
    if s.contains('(') {
        return Err(ConfigError::invalid(
            field,
            "unknown composite; use failover(DSN DSN …) or roundrobin(DSN DSN …)",
        ));
    }
    Ok((None, vec![parse_member_dsn(s, field)?]))
}

/// One provider DSN, taking the member options `max_per_second`, `burst` and `name` from it.
fn parse_member_dsn(s: &str, field: &str) -> Result<Unnamed, ConfigError> {
    let mut dsn = Dsn::parse(s)?;
    let per_second: Option<f64> = dsn.take_parsed("max_per_second", "a number")?;
    let burst: Option<u32> = dsn.take_parsed("burst", "a whole number")?;
    let name = dsn.take("name");
    let rate = match (per_second, burst) {
        (None, None) => None,
        (Some(p), b) => Some(rate_limit(p, b.unwrap_or(1), field)?),
        (None, Some(_)) => return Err(ConfigError::invalid("burst", "burst needs max_per_second")),
    };
    Ok((ProviderConfig::from_parsed_dsn(dsn)?, rate, name))
}

fn name_members(mode: RouteMode, members: Vec<Unnamed>) -> Result<Vec<MemberConfig>, ConfigError> {
    members
        .into_iter()
        .enumerate()
        .map(|(i, (provider, rate_limit, name))| {
            let name = match name {
                Some(n) => {
                    let ok = !n.is_empty()
                        && n.len() <= 64
                        && n.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                    if !ok {
                        return Err(ConfigError::invalid(
                            "name",
                            "a provider's name is 1–64 letters, digits, '-' and '_'",
                        ));
                    }
                    n
                }
                None => match (mode, i) {
                    (RouteMode::Failover, 0) => "primary".into(),
                    (RouteMode::Failover, i) => format!("failover-{i}"),
                    (RouteMode::Roundrobin, i) => format!("provider-{}", i + 1),
                },
            };
            Ok(MemberConfig {
                name,
                provider,
                rate_limit,
            })
        })
        .collect()
}
