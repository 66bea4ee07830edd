//! Redis's own command metadata: COMMAND INFO and DOCS entries, command
//! families, and CONFIG parameters with their defaults.
//!
//! (Being generated from a local redis-server 7.0.15; until then these
//! answer little.)

use std::sync::OnceLock;

use crate::resp::codec::Reply;

/// The family of a Redis command ringkv does not have ("lists", "sorted
/// sets"...), for its unknown-command error.
pub fn missing_family(_name: &[u8]) -> Option<&'static str> {
    None
}

/// COMMAND INFO's entry for `name`, if ringkv has the command.
pub fn command_info(_name: &str) -> Option<Reply> {
    None
}

/// COMMAND DOCS's entry for `name`, if ringkv has the command.
pub fn command_docs(_name: &str) -> Option<Reply> {
    None
}

/// Every Redis 7.0 configuration parameter and its default value.
pub fn config_defaults() -> &'static [(String, String)] {
    static DEFAULTS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    DEFAULTS.get_or_init(|| {
        [
            ("maxmemory", "0"),
            ("save", ""),
            ("appendonly", "no"),
            ("databases", "16"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    })
}
