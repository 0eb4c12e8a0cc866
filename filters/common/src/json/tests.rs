//! The JSON reader against RFC 8259 and hostile input (garbage, deep nesting, huge numbers, invalid UTF-8, lone
//! surrogates, duplicate keys), the serde layer's messages and field paths, and a differential run against
//! serde_json over mutated documents.
use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Error, MAX_DEPTH, Number, Value, from_slice, parse};

fn ok(text: &str) -> Value {
    parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn err(input: &[u8]) -> String {
    match parse(input) {
        Ok(v) => panic!("{:?} accepted as {v:?}", String::from_utf8_lossy(input)),
        Err(e) => e.to_string(),
    }
}

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

#[test]
fn parses_every_kind_of_value() {
    let v = ok(r#" {"a": [1, -2, 3.5, true, false, null, "x"], "b": {}, "c": []} "#);
    let a = v.get("a").and_then(Value::as_array).unwrap();
    assert_eq!(a.len(), 7);
    assert_eq!(a[0], Value::Number(Number::Unsigned(1)));
    assert_eq!(a[1], Value::Number(Number::Negative(-2)));
    assert_eq!(a[2], Value::Number(Number::Other("3.5".into())));
    assert_eq!(&a[3..6], &[Value::Bool(true), Value::Bool(false), Value::Null]);
    assert_eq!(a[6], s("x"));
    assert!(v.get("b").and_then(Value::as_object).is_some_and(|o| o.is_empty()));
    assert_eq!(v.get("c").and_then(Value::as_array), Some(&[][..]));
    assert_eq!(v.get("d"), None);
    assert_eq!(ok("\t\r\n 7 \n"), Value::Number(Number::Unsigned(7)));
    let keys: Vec<&str> = v.as_object().unwrap().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "b", "c"], "document order");
}

#[test]
fn string_escapes_and_unicode() {
    assert_eq!(ok(r#""\" \\ \/ \b \f \n \r \t""#), s("\" \\ / \u{8} \u{c} \n \r \t"));
    assert_eq!(ok(r#""\u0041\u00e9\u20AC""#), s("Aé€"));
    assert_eq!(ok(r#""\ud83d\ude00""#), s("😀"), "surrogate pair");
    assert_eq!(ok(r#""\uD83D\uDE00""#), s("😀"));
    assert_eq!(ok("\"é😀\""), s("é😀"), "raw UTF-8");
    assert_eq!(ok(r#""\u0000""#), s("\0"));
    for (input, why) in [
        (&br#""\ud83d""#[..], "lone surrogate"),
        (br#""\ud83dx""#, "lone surrogate"),
        (br#""\ud83d\u0041""#, "lone surrogate"),
        (br#""\ud83d\n""#, "lone surrogate"),
        (br#""\ude00""#, "lone surrogate"),
        (br#""\ude00\ud83d""#, "lone surrogate"),
        (br#""\u12""#, "invalid escape"),
        (br#""\u12"#, "EOF while parsing a string"),
        (br#""\uZZZZ""#, "invalid escape"),
        (br#""\x""#, "invalid escape"),
        (br#""\'""#, "invalid escape"),
        (b"\"a\nb\"", "control character"),
        (b"\"a\tb\"", "control character"),
        (b"\"a\x00b\"", "control character"),
        (b"\"abc", "EOF while parsing a string"),
        (b"\"\\", "EOF while parsing a string"),
        (b"\"\xff\"", "invalid unicode code point"),
        (b"\"\xc0\x80\"", "invalid unicode code point"),
        (b"\"\xe2\x82\"", "invalid unicode code point"),
        (b"\"\xed\xa0\x80\"", "invalid unicode code point"),
        (b"\"\xf4\x90\x80\x80\"", "invalid unicode code point"),
        (b"{\"\xff\": 1}", "invalid unicode code point"),
    ] {
        let e = err(input);
        assert!(e.contains(why), "{:?}: {e}", String::from_utf8_lossy(input));
    }
}

#[test]
fn numbers_are_exact_integers_or_their_text() {
    let n = |text: &str| match ok(text) {
        Value::Number(n) => n,
        other => panic!("{other:?}"),
    };
    assert_eq!(n("0"), Number::Unsigned(0));
    assert_eq!(n("-0"), Number::Unsigned(0));
    assert_eq!(n("18446744073709551615"), Number::Unsigned(u64::MAX));
    assert_eq!(n("18446744073709551616"), Number::Other("18446744073709551616".into()));
    assert_eq!(n("-9223372036854775808"), Number::Negative(i64::MIN));
    assert_eq!(n("-9223372036854775809"), Number::Other("-9223372036854775809".into()));
    assert_eq!(n("1E+3").to_string(), "1E+3");
    assert_eq!(n("-1.5e-3").to_string(), "-1.5e-3");
    assert_eq!(n("42").to_string(), "42");
    assert_eq!(n("-42").as_i64(), Some(-42));
    assert_eq!(n("42").as_i64(), Some(42));
    assert_eq!(n("-42").as_u64(), None);
    let huge = "9".repeat(5000);
    assert_eq!(n(&huge), Number::Other(huge.clone().into()));
    assert_eq!(n("1e999999999999999999999").as_u64(), None);
    for bad in ["01", "-01", "00", "-", "+1", "1.", ".5", "1.e3", "1e", "1e+", "--1", "0x10", "NaN", "Infinity",
                "-Infinity", "1_000", "١"] {
        assert!(parse(bad.as_bytes()).is_err(), "{bad} accepted");
    }
    assert!(err(b"[1.]").contains("invalid number at line 1 column 4"));
}

#[test]
fn integer_part_is_exact() {
    let part = |text: &str| match ok(text) {
        Value::Number(n) => n.integer_part(),
        other => panic!("{other:?}"),
    };
    assert_eq!(part("1000"), Some(1000));
    assert_eq!(part("1000.999"), Some(1000));
    assert_eq!(part("1.5e3"), Some(1500));
    assert_eq!(part("15E-1"), Some(1));
    assert_eq!(part("5e-1"), Some(0));
    assert_eq!(part("0.0"), Some(0));
    assert_eq!(part("0e999999"), Some(0));
    assert_eq!(part("1e19"), Some(10_000_000_000_000_000_000));
    assert_eq!(part("1e20"), None, "beyond u64");
    assert_eq!(part("18446744073709551615.5"), Some(u64::MAX));
    assert_eq!(part("18446744073709551616.0"), None);
    assert_eq!(part("1e99999999999999999999"), None);
    assert_eq!(part("1e-99999999999999999999"), Some(0));
    assert_eq!(part("0.0000000000000000000000000001e30"), Some(100));
    assert_eq!(part("-1"), None);
    assert_eq!(part("-0.5"), None);
    assert_eq!(part("-0"), Some(0));
}

#[test]
fn refuses_malformed_documents_with_their_position() {
    for (input, want) in [
        ("", "invalid JSON: EOF while parsing a value at line 1 column 0"),
        ("   ", "invalid JSON: EOF while parsing a value at line 1 column 3"),
        ("{", "invalid JSON: EOF while parsing an object at line 1 column 1"),
        ("[1,", "field `[1]`: EOF while parsing a value at line 1 column 3"),
        ("[1", "invalid JSON: EOF while parsing a list at line 1 column 2"),
        ("[1 2]", "invalid JSON: expected `,` or `]` at line 1 column 4"),
        ("[1,]", "invalid JSON: trailing comma at line 1 column 4"),
        ("{\"a\":1,}", "invalid JSON: trailing comma at line 1 column 8"),
        ("{\"a\" 1}", "invalid JSON: expected `:` at line 1 column 6"),
        ("{a:1}", "invalid JSON: key must be a string at line 1 column 2"),
        ("{1:1}", "invalid JSON: key must be a string at line 1 column 2"),
        ("{\"a\":1 \"b\":2}", "invalid JSON: expected `,` or `}` at line 1 column 8"),
        ("{\"a\":}", "field `a`: expected value at line 1 column 6"),
        ("{\"a\":\n  [1, tru]}", "field `a[1]`: expected ident at line 2 column 10"),
        ("{\"a\": nul", "field `a`: EOF while parsing a value at line 1 column 9"),
        ("1 2", "invalid JSON: trailing characters at line 1 column 3"),
        ("{} x", "invalid JSON: trailing characters at line 1 column 4"),
        ("truex", "invalid JSON: trailing characters at line 1 column 5"),
        ("\u{feff}{}", "invalid JSON: expected value at line 1 column 1"),
        ("'a'", "invalid JSON: expected value at line 1 column 1"),
        ("// c\n{}", "invalid JSON: expected value at line 1 column 1"),
        ("{\"a\": [{\"b\": [0, {\"c\": x}]}]}", "field `a[0].b[1].c`: expected value at line 1 column 24"),
    ] {
        assert_eq!(err(input.as_bytes()), want, "{input:?}");
    }
}

#[test]
fn duplicate_keys_are_refused_where_they_occur() {
    assert_eq!(err(br#"{"a": 1, "a": 2}"#), "duplicate field `a` at the top level");
    assert_eq!(err(br#"{"x": [{"b": 1, "c": 2, "b": 3}]}"#), "field `x[0]`: duplicate field `b`");
    // Large objects take the sorted path.
    let members: Vec<String> = (0..500).map(|i| format!("\"k{i}\": {i}")).collect();
    let distinct = format!("{{{}}}", members.join(","));
    assert_eq!(ok(&distinct).as_object().map(|o| o.len()), Some(500));
    let twice = format!("{{{}, \"k250\": 0}}", members.join(","));
    assert_eq!(err(twice.as_bytes()), "duplicate field `k250` at the top level");
    // Equal after unescaping is equal.
    assert!(err(br#"{"a": 1, "\u0061": 2}"#).contains("duplicate field `a`"));
    assert!(parse(br#"{"a": {"a": {"a": 1}}, "b": [{"a": 1}, {"a": 2}]}"#).is_ok(), "same key in different objects");
}

#[test]
fn nesting_is_bounded() {
    let nested = |depth: usize, open: &str, close: &str| format!("{}{}", open.repeat(depth), close.repeat(depth));
    assert!(parse(nested(MAX_DEPTH, "[", "]").as_bytes()).is_ok());
    assert!(err(nested(MAX_DEPTH + 1, "[", "]").as_bytes()).contains("recursion limit exceeded"));
    assert!(parse(nested(MAX_DEPTH, "{\"a\":", "}").replace(":}", ":1}").as_bytes()).is_ok());
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(MAX_DEPTH + 1), "}".repeat(MAX_DEPTH + 1));
    assert!(err(deep_objects.as_bytes()).contains("recursion limit exceeded"));
    // A megabyte of openers fails fast at the limit instead of recursing through them (or blowing the stack).
    for opener in [&b"["[..], b"{\"a\":", b"[{\"a\":"] {
        let input = opener.repeat(1 << 20 >> opener.len().min(3));
        assert!(err(&input).contains("recursion limit exceeded"));
    }
    // Depth is about nesting, not about how many containers a document holds.
    let wide = format!("[{}]", vec!["[[1]]"; 10_000].join(","));
    assert_eq!(ok(&wide).as_array().map(<[Value]>::len), Some(10_000));
}

/// A little deterministic generator (xorshift64*) for the mutation runs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: &[&str] = &[
    r#"{"keys": [{"kty": "RSA", "kid": "r1", "n": "0vx7agoebGcQSuuPiLJXZpt", "e": "AQAB", "alg": "RS256"},
        {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#,
    r#"{"sub": "alice", "exp": 4102444800, "nbf": 1.5e9, "aud": ["a", "b"], "scope": "r w", "n": -12, "x": null,
        "t": true, "f": false, "u": "\u00e9\ud83d\ude00\n", "deep": [[[{"a": [1, {"b": {}}]}]]]}"#,
    r#"{"rules": [{"name": "login", "match": {"path_prefix": "/login", "methods": ["POST"]}, "rate": 10}],
        "max_keys": 18446744073709551615, "idle_timeout_ms": -9223372036854775808, "f": 0.000001, "e": 1E+2}"#,
];

const INTERESTING: &[u8] = b"{}[]\":,\\/ \t\n0123456789-+.eEtrufalsn\x00\x1f\x7f\x80\xbf\xc0\xed\xf0\xffu";

/// The same document as a serde_json value, for the differential run.
fn same(mine: &Value, theirs: &serde_json::Value) -> bool {
    match (mine, theirs) {
        (Value::Null, serde_json::Value::Null) => true,
        (Value::Bool(a), serde_json::Value::Bool(b)) => a == b,
        (Value::String(a), serde_json::Value::String(b)) => a == b,
        (Value::Number(Number::Unsigned(a)), serde_json::Value::Number(b)) => {
            b.as_u64() == Some(*a) || (*a == 0 && b.as_f64() == Some(0.0))
        }
        (Value::Number(Number::Negative(a)), serde_json::Value::Number(b)) => b.as_i64() == Some(*a),
        (Value::Number(Number::Other(_)), serde_json::Value::Number(b)) => b.is_f64(),
        (Value::Array(a), serde_json::Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)),
        (Value::Object(a), serde_json::Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same(v, w)))
        }
        _ => false,
    }
}

#[test]
fn agrees_with_serde_json_on_mutated_documents() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..30_000 {
        let seed = SEEDS[round % SEEDS.len()].as_bytes();
        let mut doc = seed.to_vec();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(doc.len() + 1);
            match rng.below(4) {
                0 if at < doc.len() => doc[at] = INTERESTING[rng.below(INTERESTING.len())],
                1 if at < doc.len() => {
                    doc.remove(at);
                }
                2 => doc.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
                _ => {
                    let end = (at + rng.below(12)).min(doc.len());
                    let chunk = doc[at..end].to_vec();
                    doc.splice(at..at, chunk);
                }
            }
        }
        let theirs = serde_json::from_slice::<serde_json::Value>(&doc);
        match (parse(&doc), theirs) {
            (Ok(mine), Ok(theirs)) => {
                accepted += 1;
                assert!(same(&mine, &theirs), "{}: {mine:?} vs {theirs:?}", String::from_utf8_lossy(&doc));
            }
            (Err(_), Err(_)) => refused += 1,
            // serde_json keeps the last of duplicate keys; we refuse them.
            (Err(e), Ok(_)) if e.message().starts_with("duplicate field") => refused += 1,
            // serde_json refuses a number beyond f64's range; we keep its text (no float unless a field is one).
            (Ok(_), Err(e)) if e.to_string().starts_with("number out of range") => accepted += 1,
            (mine, theirs) => panic!("{}: ours {mine:?}, serde_json {theirs:?}", String::from_utf8_lossy(&doc)),
        }
    }
    assert!(accepted > 1000 && refused > 10_000, "{accepted} accepted, {refused} refused");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let len = rng.below(64);
        let doc: Vec<u8> = (0..len).map(|_| INTERESTING[rng.below(INTERESTING.len())]).collect();
        let theirs = serde_json::from_slice::<serde_json::Value>(&doc).is_ok();
        match parse(&doc) {
            Ok(_) => assert!(theirs || doc.contains(&b'e') || doc.contains(&b'E'), "{:?}", String::from_utf8_lossy(&doc)),
            Err(e) => assert!(!theirs || e.message().starts_with("duplicate field"), "{e}"),
        }
    }
}

// The serde layer.

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    name: String,
    #[serde(default)]
    rules: Vec<Rule>,
    limit: Option<u32>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    mode: Mode,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    rate: u32,
    #[serde(default)]
    offset: i64,
    ratio: Option<f64>,
    pair: Option<(u8, String)>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    #[default]
    Fast,
    Exact,
}

fn config_err(text: &str) -> String {
    match from_slice::<Config>(text.as_bytes()) {
        Ok(c) => panic!("{text}: accepted {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn deserializes_typed_configuration() {
    let c: Config = from_slice(
        br#"{"name": "n", "limit": null, "labels": {"a": "1", "b": "2"}, "mode": "exact",
             "rules": [{"rate": 4294967295, "offset": -9223372036854775808, "ratio": 0.25, "pair": [255, "x"]},
                       {"rate": 0, "ratio": 3}]}"#,
    )
    .unwrap();
    assert_eq!((c.name.as_str(), c.limit, c.mode, c.labels.len()), ("n", None, Mode::Exact, 2));
    assert_eq!(c.rules[0], Rule { rate: u32::MAX, offset: i64::MIN, ratio: Some(0.25), pair: Some((255, "x".into())) });
    assert_eq!((c.rules[1].rate, c.rules[1].ratio), (0, Some(3.0)));
    assert_eq!(from_slice::<Config>(br#"{"name": ""}"#).map(|c| c.mode), Ok(Mode::Fast));
}

#[test]
fn errors_name_the_field_in_serde_words() {
    for (text, want) in [
        (r#"{"name": "n", "nme": 1}"#, "field `nme`: unknown field `nme`, expected one of `name`, `rules`, `limit`, `labels`, `mode`"),
        (r#"{"rules": []}"#, "missing field `name` at the top level"),
        (r#""x""#, r#"invalid type: string "x", expected struct Config at the top level"#),
        (r#"{"name": 5}"#, "field `name`: invalid type: integer `5`, expected a string"),
        (r#"{"name": null}"#, "field `name`: invalid type: null, expected a string"),
        (r#"{"name": "n", "limit": "5"}"#, r#"field `limit`: invalid type: string "5", expected u32"#),
        (r#"{"name": "n", "limit": 5.0}"#, "field `limit`: invalid type: floating point `5.0`, expected u32"),
        (r#"{"name": "n", "limit": 1e3}"#, "field `limit`: invalid type: floating point `1e3`, expected u32"),
        (r#"{"name": "n", "limit": -1}"#, "field `limit`: invalid value: integer `-1`, expected u32"),
        (r#"{"name": "n", "limit": 4294967296}"#, "field `limit`: invalid value: integer `4294967296`, expected u32"),
        (r#"{"name": "n", "limit": true}"#, "field `limit`: invalid type: boolean `true`, expected u32"),
        (r#"{"name": "n", "rules": {}}"#, "field `rules`: invalid type: map, expected a sequence"),
        (r#"{"name": "n", "rules": [{"rate": 1}, {"rate": 1, "x": 2}]}"#, "field `rules[1].x`: unknown field `x`"),
        (r#"{"name": "n", "rules": [{"rate": 1}, {}]}"#, "field `rules[1]`: missing field `rate`"),
        (r#"{"name": "n", "rules": [{"rate": 1, "pair": [256, "x"]}]}"#, "field `rules[0].pair[0]`: invalid value: integer `256`, expected u8"),
        (r#"{"name": "n", "rules": [{"rate": 1, "pair": [1, "x", 2]}]}"#, "field `rules[0].pair`: invalid length 3, expected 2 elements"),
        (r#"{"name": "n", "rules": [{"rate": 1, "ratio": 1e400}]}"#, "field `rules[0].ratio`: number out of range"),
        (r#"{"name": "n", "rules": [{"rate": 1, "ratio": "1"}]}"#, r#"field `rules[0].ratio`: invalid type: string "1", expected f64"#),
        (r#"{"name": "n", "mode": "slow"}"#, "field `mode`: unknown variant `slow`, expected `fast` or `exact`"),
        (r#"{"name": "n", "mode": 1}"#, "field `mode`: invalid type: integer `1`, expected enum Mode"),
        (r#"{"name": "n", "mode": {"fast": null}}"#, "field `mode`: invalid type: map, expected enum Mode"),
        (r#"{"name": "n", "mode": null}"#, "field `mode`: invalid type: null, expected enum Mode"),
        (r#"{"name": "n", "labels": {"a": 1}}"#, "field `labels.a`: invalid type: integer `1`, expected a string"),
        (r#"{"name": "n", "labels": {"a": "1", "a": "2"}}"#, "field `labels`: duplicate field `a`"),
        (r#"{"name": "n", "rules": [{"rate": 1, "rate": 2}]}"#, "field `rules[0]`: duplicate field `rate`"),
        (r#"{"name": "n", "rules": [{"rate": 1}"#, "field `rules`: EOF while parsing a list at line 1 column 35"),
    ] {
        let got = config_err(text);
        assert!(got.starts_with(want), "{text}\n got: {got}\nwant: {want}");
    }
}

#[test]
fn paths_can_be_extended_by_the_caller() {
    let e = from_slice::<Rule>(br#"{"rate": "x"}"#).unwrap_err().at_index(3).at_key("keys");
    assert_eq!(e.path(), "keys[3].rate");
    assert_eq!(e.message(), r#"invalid type: string "x", expected u32"#);
    assert!(!e.is_syntax());
    let e: Error = parse(b"{").unwrap_err();
    assert!(e.is_syntax() && e.path().is_empty());
}

#[test]
fn strings_in_messages_are_quoted_as_debug_quotes_them() {
    // Every ASCII character, escapes, and printable non-ASCII text: exactly `{:?}`.
    let ascii: String = (0u8..128).map(char::from).collect();
    for text in [ascii.as_str(), "", "plain", "tab\there \"q\" back\\slash", "é ü 日本 🦀", "\u{85}\u{9f}\u{2028}\u{2029}x"] {
        let e = from_slice::<Rule>(serde_json::json!({ "rate": text }).to_string().as_bytes()).unwrap_err();
        assert_eq!(e.message(), format!("invalid type: string {text:?}, expected u32"), "{text:?}");
    }
}

#[test]
fn string_map_reads_as_a_btree_map_does() {
    use super::StringMap;
    let text = br#"{"b": "2", "a": "1", "c": "3"}"#;
    let map: StringMap = from_slice(text).unwrap();
    let btree: BTreeMap<String, String> = from_slice(text).unwrap();
    assert!(map.iter().eq(btree.iter()) && map.values().eq(btree.values()) && map.len() == 3);
    assert_eq!(map.get("b").map(String::as_str), Some("2"));
    assert_eq!(map.get("d"), None);
    for bad in [&b"[]"[..], br#"{"a": 1}"#, br#""x""#, br#"{"a": "1", "a": "2"}"#] {
        let mine = from_slice::<StringMap>(bad).unwrap_err().to_string();
        let theirs = from_slice::<BTreeMap<String, String>>(bad).unwrap_err().to_string();
        assert_eq!(mine, theirs);
    }
    let from: StringMap = [("z".to_owned(), "1".to_owned()), ("y".to_owned(), "2".to_owned())].into();
    assert_eq!(from.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["y", "z"]);
}
