//! Provider configuration: single-provider DSNs (`ProviderConfig::from_dsn`), composite chain
//! DSNs (`ChainConfig::from_dsn`: `failover(…)`, `roundrobin(…)` with their options), and the
//! JSON forms (`ProviderConfig::from_json`, `ChainConfig::from_json`, `ChainConfig::from_stored`).
//! Whatever parses is also redacted (as API answers are) and stored-and-reloaded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_providers::{ChainConfig, ProviderConfig};

fn chain_round_trip(chain: &ChainConfig) {
    let _ = chain.redacted();
    let _ = chain.type_names();
    let _ = format!("{chain:?}");
    if let Ok(stored) = serde_json::to_value(chain) {
        let _ = ChainConfig::from_stored(stored);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = ProviderConfig::from_dsn(text) {
        let _ = p.redacted();
        let _ = format!("{p:?}");
    }
    if let Ok(chain) = ChainConfig::from_dsn(text) {
        chain_round_trip(&chain);
    }
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        if let Ok(p) = ProviderConfig::from_json(value.clone()) {
            let _ = p.redacted();
        }
        if let Ok(chain) = ChainConfig::from_json(value.clone()) {
            chain_round_trip(&chain);
        }
        if let Ok(chain) = ChainConfig::from_stored(value) {
            chain_round_trip(&chain);
        }
    }
});
