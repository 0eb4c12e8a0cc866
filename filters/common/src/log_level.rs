//! The `log_level` configuration setting every filter accepts: lower-case names, `info` when absent.
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The host's log level (`proxy_wasm::set_log_level(level.to_host())`).
    pub fn to_host(self) -> proxy_wasm::types::LogLevel {
        use proxy_wasm::types::LogLevel as Host;
        match self {
            LogLevel::Trace => Host::Trace,
            LogLevel::Debug => Host::Debug,
            LogLevel::Info => Host::Info,
            LogLevel::Warn => Host::Warn,
            LogLevel::Error => Host::Error,
        }
    }

    /// Sets the filter's log level at configuration: the stricter of this setting and the level Envoy logs Wasm
    /// at (asked once, here), so a line Envoy would drop is neither formatted nor sent across the VM boundary.
    /// An Envoy log level raised later (admin `/logging`) shows after the next configuration.
    pub fn apply(self) {
        proxy_wasm::set_log_level(stricter(self.to_host(), proxy_wasm::hostcalls::get_log_level().ok()));
    }
}

/// The stricter (higher) of the configured level and the host's, when the host told it.
pub fn stricter(configured: proxy_wasm::types::LogLevel, host: Option<proxy_wasm::types::LogLevel>) -> proxy_wasm::types::LogLevel {
    match host {
        Some(host) if host as u32 > configured as u32 => host,
        _ => configured,
    }
}

#[cfg(test)]
mod tests {
    use super::LogLevel;
    use proxy_wasm::types::LogLevel as Host;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(default)]
        log_level: LogLevel,
    }

    fn parse(json: &str) -> Result<LogLevel, crate::json::Error> {
        crate::json::from_slice::<Config>(json.as_bytes()).map(|c| c.log_level)
    }

    #[test]
    fn the_stricter_level_wins() {
        use super::stricter;
        assert_eq!(stricter(Host::Info, Some(Host::Warn)) as u32, Host::Warn as u32);
        assert_eq!(stricter(Host::Error, Some(Host::Debug)) as u32, Host::Error as u32);
        assert_eq!(stricter(Host::Debug, None) as u32, Host::Debug as u32);
    }

    #[test]
    fn names_are_lower_case_and_default_is_info() {
        assert_eq!(parse("{}").ok(), Some(LogLevel::Info));
        assert_eq!(LogLevel::default(), LogLevel::Info);
        for (name, level) in [("trace", LogLevel::Trace), ("debug", LogLevel::Debug), ("info", LogLevel::Info),
                              ("warn", LogLevel::Warn), ("error", LogLevel::Error)] {
            assert_eq!(parse(&format!(r#"{{"log_level":"{name}"}}"#)).ok(), Some(level), "{name}");
        }
    }

    #[test]
    fn other_spellings_are_refused_with_the_variants() {
        for bad in [r#""INFO""#, r#""Info""#, r#""warning""#, "3", "null"] {
            let err = parse(&format!(r#"{{"log_level":{bad}}}"#));
            assert!(err.is_err(), "{bad} accepted");
        }
        let msg = parse(r#"{"log_level":"loud"}"#).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("unknown variant `loud`") && msg.contains("`trace`, `debug`, `info`, `warn`, `error`"),
                "{msg}");
    }

    #[test]
    fn each_level_maps_to_the_same_host_level() {
        let pairs = [(LogLevel::Trace, Host::Trace), (LogLevel::Debug, Host::Debug), (LogLevel::Info, Host::Info),
                     (LogLevel::Warn, Host::Warn), (LogLevel::Error, Host::Error)];
        for (level, host) in pairs {
            assert_eq!(level.to_host() as u32, host as u32, "{level:?}");
        }
    }
}
