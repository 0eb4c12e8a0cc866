//! Which rule a request falls under, and its bucket key. Works on a plain view of the request.
use crate::config::{KeyPart, Match, RateLimitConfig, Rule};
use crate::table::bucket_key;
use std::borrow::Cow;
use wasmfilter_common::headers::Pair;

/// What the rules look at, borrowed from the request's header map by the proxy-wasm layer.
#[derive(Debug, Clone, Default)]
pub struct RequestView<'a> {
    pub method: Cow<'a, str>,
    /// `:path` as sent, query included.
    pub path: Cow<'a, str>,
    /// Header names lower case (as Envoy hands them over), `:method` and `:path` left out.
    pub headers: Vec<Pair<'a>>,
    /// Envoy's `source.address`, e.g. `10.0.0.7:51234` or `[::1]:51234`.
    pub source_address: Option<String>,
}

impl RequestView<'_> {
    /// The header's value; repeated headers are joined with `,` (so a repeat cannot dodge a key). Borrowed when
    /// the header is there once.
    pub fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut values = self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_ref());
        let first = values.next()?;
        let mut joined = Cow::Borrowed(first);
        for v in values {
            let text = joined.to_mut();
            text.push(',');
            text.push_str(v);
        }
        Some(joined)
    }

    pub fn path_only(&self) -> &str {
        self.path.split(['?', '#']).next().unwrap_or("")
    }

    pub fn client_ip(&self) -> String {
        self.source_address.as_deref().map(strip_port).unwrap_or_default().to_owned()
    }
}

/// `1.2.3.4:80` → `1.2.3.4`; `[::1]:80` → `::1`; anything else unchanged.
pub fn strip_port(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => addr,
    }
}

fn matches(m: &Match, req: &RequestView<'_>) -> bool {
    if let Some(prefix) = &m.path_prefix {
        if !req.path_only().starts_with(prefix.as_str()) {
            return false;
        }
    }
    if !m.methods.is_empty() && !m.methods.iter().any(|method| *method == req.method) {
        return false;
    }
    m.headers.iter().all(|h| match (req.header(&h.name), &h.value) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(got), Some(want)) => got == *want,
    })
}

/// The first rule whose `match` holds, else the default rule; `None`: the request is not limited.
pub fn select<'a>(config: &'a RateLimitConfig, req: &RequestView<'_>) -> Option<&'a Rule> {
    config.rules.iter().find(|r| r.matcher.as_ref().is_none_or(|m| matches(m, req))).or(config.default_rule.as_ref())
}

/// The bucket key of `req` under `rule`.
pub fn key_for(rule: &Rule, req: &RequestView<'_>) -> Vec<u8> {
    let parts: Vec<Cow<'_, str>> = rule
        .key
        .iter()
        .map(|part| match part {
            KeyPart::Header { name } => req.header(name).unwrap_or_default(),
            KeyPart::ClientAddress => Cow::Owned(req.client_ip()),
            KeyPart::Path => Cow::Borrowed(req.path_only()),
            KeyPart::Method => Cow::Borrowed(req.method.as_ref()),
        })
        .collect();
    bucket_key(&rule.name, &parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RateLimitConfig {
        RateLimitConfig::parse(
            br#"{"rules": [
                {"name": "login", "match": {"path_prefix": "/login", "methods": ["POST"]}, "rate": 1,
                 "key": [{"source": "client_address"}]},
                {"name": "free", "match": {"headers": [{"name": "x-tier", "value": "free"}, {"name": "x-user"}]},
                 "rate": 2, "key": [{"source": "header", "name": "x-user"}]}
              ],
              "default_rule": {"name": "all", "rate": 100, "key": [{"source": "method"}, {"source": "path"}]}}"#,
        )
        .unwrap()
    }

    fn req<'a>(method: &'a str, path: &'a str, headers: &[(&str, &str)]) -> RequestView<'a> {
        RequestView {
            method: method.into(),
            path: path.into(),
            headers: wasmfilter_common::headers::owned(headers),
            source_address: Some("10.1.2.3:5555".into()),
        }
    }

    #[test]
    fn first_matching_rule_wins() {
        let c = config();
        let name = |r: &RequestView<'_>| select(&c, r).map(|r| r.name.clone());
        assert_eq!(name(&req("POST", "/login?next=/", &[])).as_deref(), Some("login"));
        assert_eq!(name(&req("GET", "/login", &[])).as_deref(), Some("all"));
        assert_eq!(name(&req("POST", "/x/login", &[])).as_deref(), Some("all"));
        assert_eq!(name(&req("GET", "/", &[("x-tier", "free"), ("x-user", "u")])).as_deref(), Some("free"));
        assert_eq!(name(&req("GET", "/", &[("x-tier", "paid"), ("x-user", "u")])).as_deref(), Some("all"));
        assert_eq!(name(&req("GET", "/", &[("x-tier", "free")])).as_deref(), Some("all"));
        assert_eq!(name(&req("POST", "/login", &[("x-tier", "free"), ("x-user", "u")])).as_deref(), Some("login"));
    }

    #[test]
    fn no_default_rule_means_not_limited() {
        let mut c = config();
        c.default_rule = None;
        assert!(select(&c, &req("GET", "/", &[])).is_none());
    }

    #[test]
    fn keys_from_each_source() {
        let c = config();
        let login = &c.rules[0];
        let free = &c.rules[1];
        let all = c.default_rule.as_ref().unwrap();
        assert_eq!(key_for(login, &req("POST", "/login", &[])), bucket_key("login", &["10.1.2.3"]));
        assert_eq!(key_for(free, &req("GET", "/", &[("x-user", "bob")])), bucket_key("free", &["bob"]));
        assert_eq!(key_for(free, &req("GET", "/", &[])), bucket_key("free", &[""]));
        assert_eq!(key_for(all, &req("GET", "/a?b=1", &[])), bucket_key("all", &["GET", "/a"]));
        // A repeated header is one joined value, not the first one only.
        assert_eq!(
            key_for(free, &req("GET", "/", &[("x-user", "a"), ("x-user", "b")])),
            bucket_key("free", &["a,b"])
        );
    }

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("1.2.3.4:80"), "1.2.3.4");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("host"), "host");
        assert_eq!(RequestView::default().client_ip(), "");
    }
}
