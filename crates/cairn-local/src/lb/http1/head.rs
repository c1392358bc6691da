//! Request and response heads: parsed with `httparse` into a stack array of
//! headers, checked for framing a second party could read differently, and
//! written again into the proxy's reusable output buffer with the headers
//! that describe one connection (hop-by-hop) left out.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use httparse::{EMPTY_HEADER, Header, Status};

/// How a message's body is delimited (RFC 9112 §6), as its head says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::lb) enum Framing {
    /// No body: a request without `Content-Length` or `Transfer-Encoding`,
    /// the answer to `HEAD`, 1xx, 204, 304.
    Empty,
    Length(u64),
    Chunked,
    /// A response without length: it ends when the backend closes.
    UntilClose,
}

/// The largest head accepted from a client or a backend.
pub(in crate::lb) const MAX_HEAD: usize = 64 * 1024;
/// As hyper's server: more headers than this is a too large head.
const MAX_HEADERS: usize = 100;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(in crate::lb) enum HeadError {
    #[error("head too large (over {MAX_HEAD} bytes or {MAX_HEADERS} headers)")]
    TooLarge,
    #[error("invalid head: {0}")]
    Invalid(&'static str),
    #[error("method not implemented: {0}")]
    NotImplemented(&'static str),
}

impl HeadError {
    /// The status the balancer answers a client's request with.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Self::TooLarge => (431, "Request Header Fields Too Large"),
            Self::Invalid(_) => (400, "Bad Request"),
            Self::NotImplemented(_) => (501, "Not Implemented"),
        }
    }
}

/// What the proxy needs of a client's request once its head is written
/// out (nothing borrowed: the input buffer moves on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::lb) struct RequestHead {
    /// Bytes of the head in the input.
    pub len: usize,
    /// HTTP/1.`minor`.
    pub minor: u8,
    pub is_head: bool,
    /// GET, HEAD or OPTIONS: safe to send again with its (small) body.
    pub idempotent: bool,
    /// `Empty`, `Length` or `Chunked` (a request is never `UntilClose`).
    pub framing: Framing,
    /// What the client asked of the connection (HTTP/1.0: close unless it
    /// asked to keep it; HTTP/1.1: keep unless it asked to close).
    pub keep_alive: bool,
    /// `Expect: 100-continue` from an HTTP/1.1 client: the balancer answers
    /// `100 Continue` itself before it reads the body.
    pub expect_continue: bool,
    /// Without one, each attempt adds the backend's address.
    pub has_host: bool,
}

/// The length of a head `httparse` read from `available` bytes, `None`
/// while it is not all there; too large past [`MAX_HEAD`] bytes or
/// [`MAX_HEADERS`] headers, whether complete or not.
fn head_len(
    parsed: Result<Status<usize>, httparse::Error>,
    available: usize,
) -> Result<Option<usize>, HeadError> {
    match parsed {
        Ok(Status::Complete(n)) if n <= MAX_HEAD => Ok(Some(n)),
        Ok(Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Ok(Status::Partial) if available >= MAX_HEAD => Err(HeadError::TooLarge),
        Ok(Status::Partial) => Ok(None),
        Err(e) => Err(HeadError::Invalid(parse_error(e))),
    }
}

/// Parses a request head at the start of `input` and writes it into `out`
/// as it goes to a backend, up to but without the `Host` it may need and the
/// empty line that ends it (see `finish_request`). `None`: the head is not
/// all there yet.
pub(in crate::lb) fn parse_request(
    input: &[u8],
    client_ip: &[u8],
    out: &mut Vec<u8>,
) -> Result<Option<RequestHead>, HeadError> {
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Some(len) = head_len(req.parse(input), input.len())? else {
        return Ok(None);
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Invalid("incomplete request line"));
    };
    if method == "CONNECT" {
        return Err(HeadError::NotImplemented("CONNECT"));
    }
    let headers = &*req.headers;
    let conn = Connection::of(headers);
    let framing = request_framing(headers, minor)?;
    let mut hosts = 0;
    let (mut has_proto, mut expect_continue) = (false, false);
    for h in headers {
        if is(h.name, "host") {
            hosts += 1;
        } else if is(h.name, "x-forwarded-proto") {
            has_proto = true;
        } else if is(h.name, "expect") {
            expect_continue |= h.value.eq_ignore_ascii_case(b"100-continue");
        }
    }
    if hosts > 1 {
        // Two hosts: which one a backend routes by is anyone's guess.
        return Err(HeadError::Invalid("more than one Host"));
    }

    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(origin_form(target)?.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut prior_xff = false;
    for h in headers {
        if is(h.name, "x-forwarded-for") {
            prior_xff = true;
            continue;
        }
        if is(h.name, "content-length") || is(h.name, "expect") || conn.drops(h.name, headers) {
            continue;
        }
        header(out, h.name.as_bytes(), h.value);
    }
    write_framing(out, framing, headers);
    // One X-Forwarded-For: what the client had, joined, then its address.
    out.extend_from_slice(b"x-forwarded-for: ");
    if prior_xff {
        for h in headers.iter().filter(|h| is(h.name, "x-forwarded-for")) {
            out.extend_from_slice(h.value);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(client_ip);
    out.extend_from_slice(b"\r\n");
    if !has_proto {
        out.extend_from_slice(b"x-forwarded-proto: http\r\n");
    }
    Ok(Some(RequestHead {
        len,
        minor,
        is_head: method == "HEAD",
        idempotent: matches!(method, "GET" | "HEAD" | "OPTIONS"),
        framing,
        keep_alive: conn.keep_alive(minor),
        expect_continue: expect_continue && minor == 1,
        has_host: hosts == 1,
    }))
}

/// The HTTP/1.`minor` of the request line at the start of `input` when that
/// line is whole and well formed, whatever follows it: the version the
/// balancer answers a head it refuses in. `None` when the line is not.
pub(in crate::lb) fn request_minor(input: &[u8]) -> Option<u8> {
    let line = &input[..=input.iter().position(|&b| b == b'\n')?];
    // The line alone, no room for headers: a well formed one parses up to
    // where the headers would start and stops there, wanting more.
    let mut req = httparse::Request::new(&mut []);
    req.parse(line).ok().and(req.version)
}

/// Ends a request head `parse_request` wrote (truncated back to `base`
/// bytes first, so that every attempt starts from the same head): the
/// backend's address as `Host` when the client gave none, and the empty line.
pub(in crate::lb) fn finish_request(out: &mut Vec<u8>, base: usize, host: Option<&[u8]>) {
    out.truncate(base);
    if let Some(host) = host {
        header(out, b"host", host);
    }
    out.extend_from_slice(b"\r\n");
}

/// How a request's body is framed; anything two parties could read
/// differently is refused (RFC 9112 §6.1, §6.3).
fn request_framing(headers: &[Header<'_>], minor: u8) -> Result<Framing, HeadError> {
    let length = content_length(headers)?;
    if !has_transfer_encoding(headers) {
        return Ok(length.map_or(Framing::Empty, Framing::Length));
    }
    if minor == 0 {
        return Err(HeadError::Invalid(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    if length.is_some() {
        return Err(HeadError::Invalid(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    chunked_last(headers)?;
    Ok(Framing::Chunked)
}

/// The parts of a request a response head is written for.
#[derive(Debug, Clone, Copy)]
pub(in crate::lb) struct ResponsePlan {
    /// The client's HTTP/1.`minor`: the answer's version.
    pub minor: u8,
    /// A response to `HEAD` has no body whatever its head says.
    pub is_head: bool,
    /// Whether the balancer means to keep the client's connection.
    pub keep_alive: bool,
}

/// What the proxy needs of a backend's response once its head is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::lb) struct ResponseHead {
    /// Bytes of the head in the input.
    pub len: usize,
    pub status: u16,
    /// 1xx other than 101: nothing written; the final answer follows.
    pub informational: bool,
    /// The backend's body framing.
    pub framing: Framing,
    /// Chunked for an HTTP/1.0 client: relay the data alone, then close.
    pub dechunk: bool,
    /// Whether the client's connection stays open after this answer.
    pub keep_alive: bool,
    /// Whether the backend's connection may carry another request after
    /// this answer's body (it did not ask to close it).
    pub reusable: bool,
}

/// Parses a backend's response head at the start of `input` and writes it
/// for the client into `out` (whole, empty line included). `None`: not all
/// there yet.
pub(in crate::lb) fn parse_response(
    input: &[u8],
    plan: ResponsePlan,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let Some(len) = head_len(resp.parse(input), input.len())? else {
        return Ok(None);
    };
    let (Some(status), Some(minor)) = (resp.code, resp.version) else {
        return Err(HeadError::Invalid("incomplete status line"));
    };
    let headers = &*resp.headers;
    if status == 101 {
        // The balancer never forwards `Upgrade`, so nothing was asked.
        return Err(HeadError::Invalid(
            "101 Switching Protocols nobody asked for",
        ));
    }
    let conn = Connection::of(headers);
    if (100..200).contains(&status) {
        return Ok(Some(ResponseHead {
            len,
            status,
            informational: true,
            framing: Framing::Empty,
            dechunk: false,
            keep_alive: plan.keep_alive,
            reusable: true,
        }));
    }
    let length = content_length(headers)?;
    let mut framing = if has_transfer_encoding(headers) {
        if length.is_some() {
            return Err(HeadError::Invalid(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        chunked_last(headers)?;
        Framing::Chunked
    } else {
        length.map_or(Framing::UntilClose, Framing::Length)
    };
    if plan.is_head || status == 204 || status == 304 {
        framing = Framing::Empty;
    }
    let dechunk = framing == Framing::Chunked && plan.minor == 0;
    // An answer that ends only when the connection does ends the client's
    // connection too; so does a chunked one for an HTTP/1.0 client, which
    // gets the data alone.
    let keep_alive = plan.keep_alive && framing != Framing::UntilClose && !dechunk;
    let reusable = conn.keep_alive(minor) && framing != Framing::UntilClose;

    out.clear();
    out.extend_from_slice(if plan.minor == 0 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_date = false;
    for h in headers {
        if is(h.name, "content-length") || conn.drops(h.name, headers) {
            continue;
        }
        has_date |= is(h.name, "date");
        header(out, h.name.as_bytes(), h.value);
    }
    if !has_date {
        date_header(out);
    }
    match framing {
        Framing::Empty => {
            // The length a HEAD or 304 answer announces is the resource's.
            if let Some(n) = length {
                length_header(out, n);
            }
        }
        Framing::Chunked if dechunk => {}
        _ => write_framing(out, framing, headers),
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if plan.minor == 0 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(ResponseHead {
        len,
        status,
        informational: false,
        framing,
        dechunk,
        keep_alive,
        reusable,
    }))
}

/// Writes one of the balancer's own answers (a short text) into `out`.
pub(in crate::lb) fn write_local(
    out: &mut Vec<u8>,
    minor: u8,
    (status, reason): (u16, &str),
    text: &str,
    keep_alive: bool,
) {
    out.clear();
    out.extend_from_slice(if minor == 0 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\n");
    date_header(out);
    length_header(out, text.len() as u64);
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if minor == 0 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(text.as_bytes());
}

/// `date: <IMF-fixdate>`, which hyper's server added to every answer without
/// one, as a proxy should (RFC 9110 §6.6.1). Formatted once a second per
/// thread, not per answer.
fn date_header(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let text = DATE.with(|date| {
        let (at, mut text) = date.get();
        if at != secs {
            let formatted = httpdate::fmt_http_date(now);
            if formatted.len() == text.len() {
                text.copy_from_slice(formatted.as_bytes());
                date.set((secs, text));
            }
        }
        text
    });
    if text[0] != 0 {
        header(out, b"date", &text);
    }
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn length_header(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The framing header for a body relayed as it came: the codings of a
/// chunked one as they were (chunked last), or its one length.
fn write_framing(out: &mut Vec<u8>, framing: Framing, headers: &[Header<'_>]) {
    match framing {
        Framing::Length(n) => length_header(out, n),
        Framing::Chunked => {
            out.extend_from_slice(b"transfer-encoding: ");
            let mut first = true;
            for h in headers.iter().filter(|h| is(h.name, "transfer-encoding")) {
                if !first {
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(h.value);
                first = false;
            }
            out.extend_from_slice(b"\r\n");
        }
        Framing::Empty | Framing::UntilClose => {}
    }
}

/// The target as a backend expects it: `/path?query` (an absolute URI loses
/// its scheme and authority), or `*`.
fn origin_form(target: &str) -> Result<&str, HeadError> {
    if target.starts_with('/') || target == "*" {
        return Ok(target);
    }
    let lower = |n: usize| target.get(..n).map(str::to_ascii_lowercase);
    let rest = if lower(7).as_deref() == Some("http://") {
        &target[7..]
    } else if lower(8).as_deref() == Some("https://") {
        &target[8..]
    } else {
        return Err(HeadError::Invalid(
            "request target not in origin or absolute form",
        ));
    };
    Ok(match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
        // `http://host?q` has an empty path: `/?q` would need a new string;
        // such targets are rare enough to send as `/`.
        _ => "/",
    })
}

/// Every `Content-Length` (repeated headers and comma lists alike) must be
/// the same number of digits.
fn content_length(headers: &[Header<'_>]) -> Result<Option<u64>, HeadError> {
    let mut found = None;
    for h in headers.iter().filter(|h| is(h.name, "content-length")) {
        for part in h.value.split(|&b| b == b',') {
            let digits = part.trim_ascii();
            // 19 digits always fit a u64.
            if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::Invalid("invalid Content-Length"));
            }
            let n = digits
                .iter()
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            if found.is_some_and(|f| f != n) {
                return Err(HeadError::Invalid("conflicting Content-Length values"));
            }
            found = Some(n);
        }
    }
    Ok(found)
}

fn has_transfer_encoding(headers: &[Header<'_>]) -> bool {
    headers.iter().any(|h| is(h.name, "transfer-encoding"))
}

/// A body with transfer codings can only be delimited when `chunked` is the
/// last of them, and applied once.
fn chunked_last(headers: &[Header<'_>]) -> Result<(), HeadError> {
    let codings = headers
        .iter()
        .filter(|h| is(h.name, "transfer-encoding"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    let (mut chunked, mut last_chunked) = (0, false);
    for c in codings {
        last_chunked = c.eq_ignore_ascii_case(b"chunked");
        chunked += usize::from(last_chunked);
    }
    if !last_chunked || chunked != 1 {
        return Err(HeadError::Invalid(
            "Transfer-Encoding without chunked as its last coding",
        ));
    }
    Ok(())
}

/// What a message's `Connection` headers say.
struct Connection {
    close: bool,
    keep_alive: bool,
    /// It names other headers, which go no further than this hop.
    names_others: bool,
}

impl Connection {
    fn of(headers: &[Header<'_>]) -> Self {
        let mut c = Self {
            close: false,
            keep_alive: false,
            names_others: false,
        };
        for token in connection_tokens(headers) {
            if token.eq_ignore_ascii_case(b"close") {
                c.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                c.keep_alive = true;
            } else {
                c.names_others = true;
            }
        }
        c
    }

    /// Whether the peer keeps the connection after this message.
    fn keep_alive(&self, minor: u8) -> bool {
        !self.close && (minor == 1 || self.keep_alive)
    }

    /// Whether header `name` stays on this hop: the standard hop-by-hop
    /// set, the framing the proxy writes itself, and what `Connection` names.
    fn drops(&self, name: &str, headers: &[Header<'_>]) -> bool {
        let standard = match name.len() {
            2 => is(name, "te"),
            7 => is(name, "trailer") || is(name, "upgrade"),
            10 => is(name, "connection") || is(name, "keep-alive"),
            16 => is(name, "proxy-connection"),
            17 => is(name, "transfer-encoding"),
            _ => false,
        };
        standard
            || (self.names_others
                && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(name.as_bytes())))
    }
}

fn connection_tokens<'a>(headers: &'a [Header<'a>]) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(|h| is(h.name, "connection"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

fn is(name: &str, lowercase: &str) -> bool {
    name.eq_ignore_ascii_case(lowercase)
}

fn parse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::Version => "invalid HTTP version",
        httparse::Error::TooManyHeaders => "too many headers",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(input: &str) -> Result<(RequestHead, String), HeadError> {
        let mut out = Vec::new();
        let head = parse_request(input.as_bytes(), b"10.0.0.9", &mut out)?.expect("complete");
        let base = out.len();
        finish_request(
            &mut out,
            base,
            (!head.has_host).then_some(b"10.1.1.1:80".as_slice()),
        );
        Ok((head, String::from_utf8(out).unwrap()))
    }

    fn response(input: &str, plan: ResponsePlan) -> Result<(ResponseHead, String), HeadError> {
        let mut out = Vec::new();
        let head = parse_response(input.as_bytes(), plan, &mut out)?.expect("complete");
        Ok((head, undated(&String::from_utf8(out).unwrap())))
    }

    /// `text` without the `date` line the balancer adds.
    fn undated(text: &str) -> String {
        match text.find("\r\ndate: ") {
            Some(i) => {
                let end = i + 2 + text[i + 2..].find("\r\n").unwrap();
                format!("{}{}", &text[..i], &text[end..])
            }
            None => text.to_string(),
        }
    }

    #[test]
    fn answers_get_a_date_unless_they_have_one() {
        let mut out = Vec::new();
        parse_response(
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            PLAN,
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let date = text
            .split("\r\n")
            .find_map(|l| l.strip_prefix("date: "))
            .expect(&text);
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
        let mut out = Vec::new();
        let had =
            "HTTP/1.1 200 OK\r\nDate: Sun, 06 Dec 2026 03:00:00 GMT\r\ncontent-length: 0\r\n\r\n";
        parse_response(had.as_bytes(), PLAN, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text.to_ascii_lowercase().matches("\r\ndate: ").count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("Date: Sun, 06 Dec 2026 03:00:00 GMT"),
            "{text}"
        );
    }

    const PLAN: ResponsePlan = ResponsePlan {
        minor: 1,
        is_head: false,
        keep_alive: true,
    };

    #[test]
    fn a_request_head_is_rewritten_for_the_backend() {
        let input = "POST http://example.com/a/b?c=1 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Secret\r\n\
             X-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nExpect: 100-continue\r\n\
             X-Forwarded-For: 1.2.3.4\r\nx-forwarded-for: 5.6.7.8\r\nContent-Length: 5, 5\r\nAccept: */*\r\n\r\nhello";
        let (head, out) = request(input).unwrap();
        assert_eq!(
            out,
            "POST /a/b?c=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\ncontent-length: 5\r\n\
             x-forwarded-for: 1.2.3.4, 5.6.7.8, 10.0.0.9\r\nx-forwarded-proto: http\r\n\r\n"
        );
        assert_eq!(head.len, input.len() - "hello".len());
        assert_eq!(
            (
                head.framing,
                head.keep_alive,
                head.expect_continue,
                head.idempotent
            ),
            (Framing::Length(5), true, true, false)
        );

        let (head, out) = request("GET / HTTP/1.0\r\nX-Forwarded-Proto: https\r\n\r\n").unwrap();
        assert_eq!(
            out,
            "GET / HTTP/1.1\r\nX-Forwarded-Proto: https\r\nx-forwarded-for: 10.0.0.9\r\nhost: 10.1.1.1:80\r\n\r\n"
        );
        assert!(!head.keep_alive && !head.has_host && head.idempotent);
        let (head, _) = request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        assert!(head.keep_alive);
        let (head, _) = request("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!head.keep_alive);
        let (head, out) = request(
            "PUT /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        assert!(
            out.contains("\r\ntransfer-encoding: gzip, chunked\r\n"),
            "{out}"
        );
        let (_, out) = request("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        assert!(out.starts_with("OPTIONS * HTTP/1.1\r\n"));
        let (_, out) = request("GET HTTP://h?x HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        assert!(out.starts_with("GET / HTTP/1.1\r\n"));
        // Not all there yet.
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost:", b"x", &mut Vec::new()),
            Ok(None)
        );
    }

    #[test]
    fn requests_that_could_be_smuggled_are_refused() {
        for (bad, why) in [
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                "both Content-Length and Transfer-Encoding",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                "conflicting Content-Length values",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
                "conflicting Content-Length values",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
                "invalid Content-Length",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                "Transfer-Encoding without chunked as its last coding",
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                "Transfer-Encoding without chunked as its last coding",
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
                "Transfer-Encoding without chunked as its last coding",
            ),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                "Transfer-Encoding in an HTTP/1.0 request",
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                "more than one Host",
            ),
            (
                "GET / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
                "invalid header name",
            ),
            (
                "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
                "invalid header name",
            ),
            (
                "GET example.com HTTP/1.1\r\n\r\n",
                "request target not in origin or absolute form",
            ),
            ("GET / HTTP/2.0\r\n\r\n", "invalid HTTP version"),
        ] {
            assert_eq!(
                request(bad).unwrap_err(),
                HeadError::Invalid(why),
                "{bad:?}"
            );
            assert_eq!(HeadError::Invalid(why).status().0, 400);
        }
        assert_eq!(
            request("CONNECT a:443 HTTP/1.1\r\n\r\n").unwrap_err(),
            HeadError::NotImplemented("CONNECT")
        );
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "a: b\r\n".repeat(101));
        assert_eq!(request(&many).unwrap_err(), HeadError::TooLarge);
        let long = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(MAX_HEAD));
        assert_eq!(request(&long).unwrap_err(), HeadError::TooLarge);
        assert_eq!(HeadError::TooLarge.status().0, 431);
    }

    #[test]
    fn a_refused_heads_version_is_read_from_its_request_line_alone() {
        for (input, minor) in [
            ("GET / HTTP/1.0\r\nhost: a\r\nhost: b\r\n\r\n", Some(0)),
            ("GET / HTTP/1.0\nbad header", Some(0)),
            ("CONNECT a:443 HTTP/1.1\r\n", Some(1)),
            ("GET / HTTP/1.0", None),
            ("GET / HTTP/1.0\r", None),
            ("GET / HTTP/1.0x\r\n", None),
            ("GET / HTTP/2.0\r\n\r\n", None),
            ("GET /\r\n\r\n", None),
            ("", None),
        ] {
            assert_eq!(request_minor(input.as_bytes()), minor, "{input:?}");
        }
    }

    #[test]
    fn a_response_head_is_rewritten_for_the_client() {
        let (head, out) = response(
            "HTTP/1.1 200 Fine\r\nContent-Length: 3\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nServer: s\r\n\r\n",
            PLAN,
        )
        .unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 200 Fine\r\nServer: s\r\ncontent-length: 3\r\n\r\n"
        );
        assert_eq!(
            (head.framing, head.keep_alive, head.reusable),
            (Framing::Length(3), true, false)
        );

        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n";
        let (head, out) = response(chunked, PLAN).unwrap();
        assert_eq!(out, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
        assert!(!head.dechunk && head.keep_alive && head.reusable);
        let old = ResponsePlan {
            minor: 0,
            keep_alive: true,
            ..PLAN
        };
        let (head, out) = response(chunked, old).unwrap();
        assert_eq!(out, "HTTP/1.0 200 OK\r\nconnection: close\r\n\r\n");
        assert!(head.dechunk && !head.keep_alive && head.reusable);
        let (head, out) = response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", old).unwrap();
        assert_eq!(
            out,
            "HTTP/1.0 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n"
        );
        assert!(head.keep_alive);

        // Read until the backend closes: the client's connection ends too.
        let (head, out) = response("HTTP/1.0 200 OK\r\n\r\n", PLAN).unwrap();
        assert_eq!(out, "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");
        assert_eq!(
            (head.framing, head.keep_alive, head.reusable),
            (Framing::UntilClose, false, false)
        );
        let (head, _) = response(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            PLAN,
        )
        .unwrap();
        assert!(head.reusable);

        // No body, whatever the head says.
        let head_plan = ResponsePlan {
            is_head: true,
            ..PLAN
        };
        let (head, out) =
            response("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", head_plan).unwrap();
        assert_eq!(out, "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n");
        assert_eq!(head.framing, Framing::Empty);
        for status in ["204 No Content", "304 Not Modified"] {
            let (head, _) = response(
                &format!("HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\n\r\n"),
                PLAN,
            )
            .unwrap();
            assert_eq!((head.framing, head.keep_alive), (Framing::Empty, true));
        }
        let (head, out) = response("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", PLAN).unwrap();
        assert!(head.informational && out.is_empty());
        let closing = ResponsePlan {
            keep_alive: false,
            ..PLAN
        };
        let (_, out) = response(
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            closing,
        )
        .unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn responses_that_could_be_misread_are_refused() {
        for (bad, why) in [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                "both Content-Length and Transfer-Encoding",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "conflicting Content-Length values",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                "Transfer-Encoding without chunked as its last coding",
            ),
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
                "101 Switching Protocols nobody asked for",
            ),
            ("HTTP/1.1 2000 OK\r\n\r\n", "invalid status"),
        ] {
            assert_eq!(
                response(bad, PLAN).unwrap_err(),
                HeadError::Invalid(why),
                "{bad:?}"
            );
        }
        let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "a: b\r\n".repeat(101));
        assert_eq!(response(&many, PLAN).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn local_answers() {
        let mut out = Vec::new();
        write_local(&mut out, 0, (503, "Service Unavailable"), "none\n", false);
        assert_eq!(
            undated(&String::from_utf8(out).unwrap()),
            "HTTP/1.0 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
             content-length: 5\r\nconnection: close\r\n\r\nnone\n"
        );
    }
}
