//! wasmfilter echo upstream (container image `wasmfilter/echo`).
//!
//! Answers every request with JSON describing what it received, byte-for-byte the format of
//! `toolkit/wasmfilter/upstream.py` (Python's `json.dumps` with `ensure_ascii`):
//! `{"upstream": NAME, "method": M, "path": P, "headers": [[lowercased-name, value], ...], "body": B}`,
//! the response header `x-wasmfilter-upstream: NAME`, and `/status/NNN` answering with status NNN
//! (200..=599, else 400). Standard library only, one thread per connection, HTTP/1.1 keep-alive.
//! With answer rules (`--rules FILE` / `--rules-json TEXT`, see rules.rs) a matching request gets the rule's
//! scripted answer instead, exactly as harness/upstream.py sends it.

mod rules;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rules::Rule;

const ECHO_HEADER: &str = "x-wasmfilter-upstream";
const MAX_HEAD_BYTES: usize = 64 * 1024;

struct Request {
    method: String,
    path: String,
    version: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn keep_alive(&self) -> bool {
        let conn = self.header("connection").map(str::to_ascii_lowercase);
        match conn.as_deref() {
            Some("close") => false,
            Some("keep-alive") => true,
            _ => self.version == "HTTP/1.1",
        }
    }
}

/// Latin-1, as Python's http.client decodes header bytes.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn read_line(reader: &mut impl BufRead, budget: &mut usize) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let n = reader.take(*budget as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too large"));
    }
    *budget -= n;
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(Some(line))
}

fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut budget = MAX_HEAD_BYTES;
    let mut first = match read_line(reader, &mut budget)? {
        Some(line) => line,
        None => return Ok(None),
    };
    while first.is_empty() {
        // tolerate stray CRLF between requests
        first = match read_line(reader, &mut budget)? {
            Some(line) => line,
            None => return Ok(None),
        };
    }
    let first = latin1(&first);
    let mut parts = first.split_whitespace();
    let (method, path, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(p), Some(v)) => (m.to_string(), p.to_string(), v.to_string()),
        (Some(m), Some(p), None) => (m.to_string(), p.to_string(), "HTTP/0.9".to_string()),
        _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "bad request line")),
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader, &mut budget)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "eof in headers"))?;
        if line.is_empty() {
            break;
        }
        let text = latin1(&line);
        if let Some((name, value)) = text.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let mut req = Request { method, path, version, headers, body: Vec::new() };
    let chunked = req
        .header("transfer-encoding")
        .map(|v| v.to_ascii_lowercase().contains("chunked"))
        .unwrap_or(false);
    if chunked {
        req.body = read_chunked(reader)?;
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body)?;
        req.body = body;
    }
    Ok(Some(req))
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut budget = MAX_HEAD_BYTES;
        let line = read_line(reader, &mut budget)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "eof in chunk size"))?;
        let text = latin1(&line);
        let size_text = text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // trailers until an empty line
            loop {
                let mut budget = MAX_HEAD_BYTES;
                match read_line(reader, &mut budget)? {
                    Some(l) if !l.is_empty() => continue,
                    _ => return Ok(body),
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut budget = 2;
        read_line(reader, &mut budget)?; // the CRLF after the chunk
    }
}

/// A JSON string exactly as Python's json.dumps (ensure_ascii=True) writes it.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{:04x}", unit));
                }
            }
        }
    }
    out.push('"');
}

fn status_for(path: &str) -> u16 {
    match path.strip_prefix("/status/") {
        None => 200,
        Some(rest) => {
            let code = rest.split('/').next().unwrap_or("").split('?').next().unwrap_or("");
            match code.parse::<u16>() {
                Ok(n) if code.bytes().all(|b| b.is_ascii_digit()) && (200..=599).contains(&n) => n,
                _ => 400,
            }
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn respond(stream: &mut impl Write, name: &str, req: &Request) -> io::Result<()> {
    let mut payload = String::with_capacity(256);
    payload.push_str("{\"upstream\": ");
    json_str(&mut payload, name);
    payload.push_str(", \"method\": ");
    json_str(&mut payload, &req.method);
    payload.push_str(", \"path\": ");
    json_str(&mut payload, &req.path);
    payload.push_str(", \"headers\": [");
    for (i, (k, v)) in req.headers.iter().enumerate() {
        if i > 0 {
            payload.push_str(", ");
        }
        payload.push('[');
        json_str(&mut payload, k);
        payload.push_str(", ");
        json_str(&mut payload, v);
        payload.push(']');
    }
    payload.push_str("], \"body\": ");
    json_str(&mut payload, &String::from_utf8_lossy(&req.body));
    payload.push('}');

    let status = status_for(&req.path);
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}: {}\r\n",
        status,
        reason(status),
        payload.len(),
        ECHO_HEADER,
        name
    );
    if !req.keep_alive() {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if req.method != "HEAD" {
        out.extend_from_slice(payload.as_bytes());
    }
    stream.write_all(&out)?;
    stream.flush()
}

/// A scripted answer: status, the rule's headers, content-length, the echo header; or a TCP reset.
fn respond_scripted(stream: &mut TcpStream, name: &str, req: &Request, rule: &Rule) -> io::Result<bool> {
    if rule.delay_ms > 0 {
        thread::sleep(Duration::from_millis(rule.delay_ms)); // the scripted delay itself
    }
    if rule.reset {
        reset::linger_zero(stream);
        return Ok(false); // dropping the stream now sends the reset
    }
    let mut head = format!("HTTP/1.1 {} {}\r\n", rule.status, reason(rule.status));
    for (k, v) in &rule.answer_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n{}: {}\r\n", rule.body.len(), ECHO_HEADER, name));
    if !req.keep_alive() {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if req.method != "HEAD" {
        out.extend_from_slice(&rule.body);
    }
    stream.write_all(&out)?;
    stream.flush()?;
    Ok(true)
}

/// SO_LINGER with a zero timeout: close() then sends a TCP reset, as harness/upstream.py does.
mod reset {
    use std::os::fd::AsRawFd;

    #[repr(C)]
    struct Linger {
        onoff: i32,
        linger: i32,
    }

    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
    }

    pub fn linger_zero(stream: &std::net::TcpStream) {
        let value = Linger { onoff: 1, linger: 0 };
        // SAFETY: a valid socket fd and a pointer to a live struct linger of the size given. SOL_SOCKET = 1,
        // SO_LINGER = 13 on Linux (the image's only platform).
        unsafe {
            setsockopt(stream.as_raw_fd(), 1, 13, &value, std::mem::size_of::<Linger>() as u32);
        }
    }
}

fn serve(stream: TcpStream, name: &str, rules: &[Rule]) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader)? {
        if let Some(rule) = rules::answer_for(rules, &req.method, &req.path, &req.headers) {
            if !respond_scripted(&mut writer, name, &req, rule)? {
                break;
            }
        } else {
            respond(&mut writer, name, &req)?;
        }
        if !req.keep_alive() {
            break;
        }
    }
    Ok(())
}

/// As PID 1 in a container the kernel ignores SIGTERM unless a handler is installed: exit at once
/// (there is no state to save), so `docker stop` / `compose down` take milliseconds, not the kill timeout.
mod term {
    extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
        fn _exit(code: i32) -> !;
    }

    extern "C" fn on_term(_signum: i32) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { _exit(0) }
    }

    pub fn install() {
        // SAFETY: installing a handler that only calls _exit.
        unsafe {
            signal(15, on_term); // SIGTERM
            signal(2, on_term); // SIGINT
        }
    }
}

fn main() {
    term::install();
    let mut name = String::from("default");
    let mut host = String::from("0.0.0.0");
    let mut port: u16 = 8000;
    let mut rules_text: Option<(String, String)> = None; // (where from, JSON)
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--name", Some(v)) => name = v,
            ("--host", Some(v)) => host = v,
            ("--port", Some(v)) => match v.parse() {
                Ok(p) => port = p,
                Err(_) => {
                    eprintln!("echo: --port wants a number, got '{v}'");
                    std::process::exit(2);
                }
            },
            ("--rules", Some(v)) => match std::fs::read_to_string(&v) {
                Ok(text) => rules_text = Some((format!("'{v}'"), text)),
                Err(e) => {
                    eprintln!("echo: cannot read answer rules '{v}': {e}");
                    std::process::exit(2);
                }
            },
            ("--rules-json", Some(v)) => rules_text = Some(("given by --rules-json".to_string(), v)),
            (other, _) => {
                eprintln!(
                    "echo: unknown or incomplete argument '{other}' (use --name N --host H --port P [--rules FILE])"
                );
                std::process::exit(2);
            }
        }
    }
    let rules: Arc<Vec<Rule>> = match rules_text {
        None => Arc::new(Vec::new()),
        Some((source, text)) => match rules::parse_rules(&text) {
            Ok(r) => Arc::new(r),
            Err(e) => {
                eprintln!("echo: answer rules {source}: {e}");
                std::process::exit(2);
            }
        },
    };
    let listener = match TcpListener::bind((host.as_str(), port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo: cannot listen on {host}:{port}: {e}");
            std::process::exit(1);
        }
    };
    let bound = listener.local_addr().map(|a| a.port()).unwrap_or(port);
    // The harness waits for this line: it is printed only once the socket listens.
    println!("echo upstream '{name}' on {host}:{bound}");
    let _ = io::stdout().flush();
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let name = name.clone();
                let rules = Arc::clone(&rules);
                thread::spawn(move || {
                    let _ = serve(stream, &name, &rules);
                });
            }
            Err(e) => eprintln!("echo: accept failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_matches_python_ensure_ascii() {
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\n\u{7f}é😀");
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u007f\\u00e9\\ud83d\\ude00\"");
    }

    #[test]
    fn status_paths() {
        assert_eq!(status_for("/"), 200);
        assert_eq!(status_for("/status/418"), 418);
        assert_eq!(status_for("/status/418?x=1"), 418);
        assert_eq!(status_for("/status/99"), 400);
        assert_eq!(status_for("/status/abc"), 400);
        assert_eq!(status_for("/status/"), 400);
    }

    #[test]
    fn parses_chunked_and_keepalive() {
        let raw = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let mut reader = BufReader::new(&raw[..]);
        let req = read_request(&mut reader).unwrap().unwrap();
        assert_eq!(req.body, b"abc");
        assert_eq!(req.headers[0], ("host".to_string(), "a".to_string()));
        assert!(req.keep_alive());
    }
}
