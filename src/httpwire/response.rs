//! Incremental HTTP/1.1 response parsing (RFC 9112): the head with `httparse`, then the body
//! framed by Content-Length, chunked transfer coding, or the connection closing.

use super::HttpError;
use crate::acme::Response;

/// Most header fields accepted in one response head (or chunked trailer section).
pub const MAX_HEADERS: usize = 128;

/// Longest chunk-size line (size plus extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// What [`ResponseParser::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The response is not complete yet: read more, or call `eof` if the peer closed.
    NeedMore,
    /// The response is complete.
    Complete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading the status line and headers (possibly of interim 1xx responses).
    Head,
    /// Body framed by Content-Length: bytes still to read.
    Fixed(u64),
    /// Chunked: expecting a chunk-size line.
    ChunkSize,
    /// Chunked: bytes of chunk data still to read.
    ChunkData(u64),
    /// Chunked: expecting the CRLF after chunk data.
    ChunkDataEnd,
    /// Chunked: reading the trailer section after the last chunk.
    Trailers,
    /// Body delimited by the connection closing (RFC 9112 section 6.3, rule 8).
    UntilClose,
    Done,
    Failed(HttpError),
}

/// An incremental HTTP/1.1 response parser: feed it the bytes read from the connection.
#[derive(Debug)]
pub struct ResponseParser {
    is_head: bool,
    max_body: usize,
    max_header_bytes: usize,
    /// Bytes received and not consumed yet start at `buf[pos]`.
    buf: Vec<u8>,
    pos: usize,
    /// Head bytes consumed so far (interim responses included).
    head_bytes: usize,
    state: State,
    /// Minor version of the final response (`1` for HTTP/1.1).
    minor_version: u8,
    /// Whether the framing lets the connection carry another request.
    reusable: bool,
    /// Whether any byte was received.
    seen_bytes: bool,
    /// Whether `eof` was called.
    closed: bool,
    resp: Response,
}

impl ResponseParser {
    /// `is_head_request`: the request was HEAD, so the response has no body whatever its
    /// headers say (RFC 9110 section 9.3.2). `max_body` and `max_header_bytes` bound memory.
    pub fn new(is_head_request: bool, max_body: usize, max_header_bytes: usize) -> Self {
        ResponseParser {
            is_head: is_head_request,
            max_body,
            max_header_bytes,
            buf: Vec::new(),
            pos: 0,
            head_bytes: 0,
            state: State::Head,
            minor_version: 0,
            reusable: true,
            seen_bytes: false,
            closed: false,
            resp: Response::default(),
        }
    }

    /// Feeds bytes read from the connection.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Progress, HttpError> {
        match &self.state {
            State::Failed(e) => return Err(e.clone()),
            State::Done => {
                // Bytes after a complete response: we never pipeline, so the stream is out of
                // step and the connection must not be reused.
                if !bytes.is_empty() {
                    self.reusable = false;
                }
                return Ok(Progress::Complete);
            }
            _ => {}
        }
        if !bytes.is_empty() {
            self.seen_bytes = true;
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
        match self.advance() {
            Ok(p) => Ok(p),
            Err(e) => {
                self.state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// The peer closed the connection. Completes a close-delimited body; anywhere else before
    /// the end of the response it is an error.
    pub fn eof(&mut self) -> Result<(), HttpError> {
        self.closed = true;
        let err = match &self.state {
            State::Done => return Ok(()),
            State::UntilClose => {
                self.state = State::Done;
                return Ok(());
            }
            State::Failed(e) => return Err(e.clone()),
            State::Head if !self.seen_bytes => "before any response bytes".to_string(),
            State::Head => "inside the response header section".to_string(),
            State::Fixed(left) => {
                let got = self.resp.body.len() as u64;
                format!("after {got} of {} body bytes", got + left)
            }
            State::ChunkSize | State::ChunkData(_) | State::ChunkDataEnd | State::Trailers => {
                "inside the chunked body".to_string()
            }
        };
        let e = HttpError::Truncated(err);
        self.state = State::Failed(e.clone());
        Err(e)
    }

    /// Whether the response is complete.
    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    /// The response, once complete.
    pub fn response(&self) -> Option<&Response> {
        self.is_complete().then_some(&self.resp)
    }

    /// Takes the complete response.
    pub fn finish(self) -> Result<Response, HttpError> {
        match self.state {
            State::Done => Ok(self.resp),
            State::Failed(e) => Err(e),
            _ => Err(HttpError::Incomplete),
        }
    }

    /// Whether the connection may carry another request: the response is complete, HTTP/1.1,
    /// without `Connection: close`, its body was framed by length or chunking (not by the
    /// close), and nothing followed it.
    pub fn keepalive_ok(&self) -> bool {
        self.is_complete()
            && !self.closed
            && self.reusable
            && self.minor_version == 1
            && self.pos == self.buf.len()
    }

    fn available(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Moves body bytes (at most `limit`) from the buffer into the body.
    fn take_body(&mut self, limit: u64) -> u64 {
        let n = (self.available() as u64).min(limit) as usize;
        self.resp
            .body
            .extend_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        n as u64
    }

    fn check_body_room(&self, extra: u64) -> Result<(), HttpError> {
        if self.resp.body.len() as u64 + extra > self.max_body as u64 {
            return Err(HttpError::BodyTooLarge(self.max_body));
        }
        Ok(())
    }

    fn advance(&mut self) -> Result<Progress, HttpError> {
        loop {
            match self.state {
                State::Head => {
                    if !self.parse_head()? {
                        return Ok(Progress::NeedMore);
                    }
                }
                State::Fixed(left) => {
                    let n = self.take_body(left);
                    if n == left {
                        self.state = State::Done;
                    } else {
                        self.state = State::Fixed(left - n);
                        return Ok(Progress::NeedMore);
                    }
                }
                State::ChunkSize => match httparse::parse_chunk_size(&self.buf[self.pos..]) {
                    Ok(httparse::Status::Complete((n, size))) => {
                        self.pos += n;
                        if size == 0 {
                            self.state = State::Trailers;
                        } else {
                            self.check_body_room(size)?;
                            self.state = State::ChunkData(size);
                        }
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.available() > MAX_CHUNK_LINE {
                            return Err(HttpError::MalformedResponse(format!(
                                "chunk size line longer than {MAX_CHUNK_LINE} bytes"
                            )));
                        }
                        return Ok(Progress::NeedMore);
                    }
                    Err(_) => {
                        return Err(HttpError::MalformedResponse(
                            "invalid chunk size line".into(),
                        ))
                    }
                },
                State::ChunkData(left) => {
                    let n = self.take_body(left);
                    if n == left {
                        self.state = State::ChunkDataEnd;
                    } else {
                        self.state = State::ChunkData(left - n);
                        return Ok(Progress::NeedMore);
                    }
                }
                State::ChunkDataEnd => {
                    // RFC 9112 section 7.1: chunk-data is followed by CRLF.
                    let rest = &self.buf[self.pos..];
                    match rest {
                        [b'\r', b'\n', ..] => {
                            self.pos += 2;
                            self.state = State::ChunkSize;
                        }
                        [] | [b'\r'] => return Ok(Progress::NeedMore),
                        _ => {
                            return Err(HttpError::MalformedResponse(
                                "missing crlf after chunk data".into(),
                            ))
                        }
                    }
                }
                State::Trailers => {
                    // RFC 9112 section 7.1.2: trailer fields are parsed and ignored.
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    match httparse::parse_headers(&self.buf[self.pos..], &mut headers) {
                        Ok(httparse::Status::Complete((n, _))) => {
                            self.pos += n;
                            self.state = State::Done;
                        }
                        Ok(httparse::Status::Partial) => {
                            if self.available() > self.max_header_bytes {
                                return Err(HttpError::HeadersTooLarge(self.max_header_bytes));
                            }
                            return Ok(Progress::NeedMore);
                        }
                        Err(httparse::Error::TooManyHeaders) => {
                            return Err(HttpError::TooManyHeaders(MAX_HEADERS))
                        }
                        Err(e) => {
                            return Err(HttpError::MalformedResponse(format!(
                                "invalid chunked trailer section: {e}"
                            )))
                        }
                    }
                }
                State::UntilClose => {
                    let n = self.available() as u64;
                    self.check_body_room(n)?;
                    self.take_body(n);
                    return Ok(Progress::NeedMore);
                }
                State::Done => {
                    if self.pos != self.buf.len() {
                        self.reusable = false;
                    }
                    return Ok(Progress::Complete);
                }
                State::Failed(ref e) => return Err(e.clone()),
            }
        }
    }

    /// Tries to parse one response head. Returns false when more bytes are needed.
    fn parse_head(&mut self) -> Result<bool, HttpError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut head = httparse::Response::new(&mut headers);
        let room = self.max_header_bytes.saturating_sub(self.head_bytes);
        let n = match head.parse(&self.buf[self.pos..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if self.available() > room {
                    return Err(HttpError::HeadersTooLarge(self.max_header_bytes));
                }
                return Ok(false);
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HttpError::TooManyHeaders(MAX_HEADERS))
            }
            Err(e) => return Err(HttpError::MalformedResponse(format!("{e}"))),
        };
        if n > room {
            return Err(HttpError::HeadersTooLarge(self.max_header_bytes));
        }
        let status = head.code.unwrap_or(0);
        let minor = head.version.unwrap_or(0);
        let fields: Vec<(String, String)> = head
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value)
                        .trim_matches([' ', '\t'])
                        .to_string(),
                )
            })
            .collect();
        self.pos += n;
        self.head_bytes += n;
        if !(100..=999).contains(&status) {
            return Err(HttpError::MalformedResponse(format!(
                "invalid status code {status}"
            )));
        }
        if status == 101 {
            // We never ask for an upgrade (RFC 9110 section 15.2.2).
            return Err(HttpError::MalformedResponse(
                "unexpected 101 switching protocols".into(),
            ));
        }
        if status < 200 {
            // RFC 9110 section 15.2: interim responses (100 Continue, 103 Early Hints) precede
            // the final one; skip them.
            return Ok(true);
        }
        self.minor_version = minor;
        self.resp.status = status;
        self.resp.headers = fields;
        self.state = self.framing()?;
        Ok(true)
    }

    /// Picks the body framing of the final response (RFC 9112 section 6.3).
    fn framing(&mut self) -> Result<State, HttpError> {
        let list = |resp: &Response, name: &str| -> Vec<String> {
            resp.header_all(name)
                .iter()
                .flat_map(|v| v.split(','))
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .collect()
        };
        // RFC 9112 section 9.6: `Connection: close` ends the connection after this response.
        if list(&self.resp, "connection").iter().any(|t| t == "close") {
            self.reusable = false;
        }
        // Rule 1: HEAD responses, 1xx, 204 and 304 never have content.
        let status = self.resp.status;
        if self.is_head || status == 204 || status == 304 {
            return Ok(State::Done);
        }
        let te = list(&self.resp, "transfer-encoding");
        let has_length = self.resp.header("content-length").is_some();
        if !te.is_empty() {
            // Rule 3: Transfer-Encoding overrides Content-Length; a message with both may be an
            // attempt at request smuggling, so the connection is not reused.
            if has_length || self.minor_version == 0 {
                self.reusable = false;
            }
            if te.last().map(String::as_str) == Some("chunked") {
                return Ok(State::ChunkSize);
            }
            // Chunked not final: the body runs until the connection closes.
            self.reusable = false;
            return Ok(State::UntilClose);
        }
        if has_length {
            // Rule 5: repeated or list-valued Content-Length must all agree.
            let mut length: Option<u64> = None;
            for v in self.resp.header_all("content-length") {
                for part in v.split(',') {
                    let part = part.trim();
                    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(HttpError::MalformedResponse(format!(
                            "invalid content-length {v:?}"
                        )));
                    }
                    let n: u64 = part.parse().map_err(|_| {
                        HttpError::MalformedResponse(format!("invalid content-length {v:?}"))
                    })?;
                    match length {
                        Some(m) if m != n => return Err(HttpError::ConflictingContentLength),
                        _ => length = Some(n),
                    }
                }
            }
            let n = length.unwrap_or(0);
            self.check_body_room(n)?;
            return Ok(if n == 0 { State::Done } else { State::Fixed(n) });
        }
        // Rule 8: no framing, the body ends when the server closes the connection.
        self.reusable = false;
        Ok(State::UntilClose)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_BODY: usize = 1 << 20;
    const MAX_HEAD: usize = 16 * 1024;

    /// Feeds `input` in pieces of the given sizes (cycled), then calls `eof` if `close`.
    fn run_chunked(
        input: &[u8],
        sizes: &[usize],
        is_head: bool,
        close: bool,
    ) -> Result<(Response, bool), HttpError> {
        let mut p = ResponseParser::new(is_head, MAX_BODY, MAX_HEAD);
        let mut rest = input;
        let mut i = 0;
        let mut done = false;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].clamp(1, rest.len());
            i += 1;
            let (piece, tail) = rest.split_at(n);
            rest = tail;
            done = p.feed(piece)? == Progress::Complete;
        }
        if close {
            p.eof()?;
        } else if !done {
            return Err(HttpError::Incomplete);
        }
        let keep = p.keepalive_ok();
        Ok((p.finish()?, keep))
    }

    fn run(input: &[u8]) -> Result<(Response, bool), HttpError> {
        run_chunked(input, &[input.len().max(1)], false, false)
    }

    /// A tiny deterministic generator for split sizes (xorshift).
    fn sizes(seed: u64, n: usize) -> Vec<usize> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 23 + 1) as usize
            })
            .collect()
    }

    /// Checks that every way of splitting `input` gives the same result as one feed: one byte
    /// at a time, every single split point, and random chunkings.
    fn assert_split_invariant(input: &[u8], is_head: bool, close: bool) -> (Response, bool) {
        let whole = run_chunked(input, &[input.len().max(1)], is_head, close).unwrap();
        assert_eq!(
            run_chunked(input, &[1], is_head, close).unwrap(),
            whole,
            "byte at a time"
        );
        for cut in 1..input.len() {
            let mut p = ResponseParser::new(is_head, MAX_BODY, MAX_HEAD);
            let first = p.feed(&input[..cut]).unwrap();
            let second = p.feed(&input[cut..]).unwrap();
            if !close {
                assert_eq!(second, Progress::Complete, "cut at {cut}");
                // Completion must not be reported before the last byte arrives.
                assert_eq!(first, Progress::NeedMore, "early completion at {cut}");
            } else {
                p.eof().unwrap();
            }
            let keep = p.keepalive_ok();
            assert_eq!((p.finish().unwrap(), keep), whole, "cut at {cut}");
        }
        for seed in 1..40u64 {
            assert_eq!(
                run_chunked(input, &sizes(seed, 64), is_head, close).unwrap(),
                whole,
                "seed {seed}"
            );
        }
        whole
    }

    #[test]
    fn content_length_split_everywhere() {
        let input = b"HTTP/1.1 201 Created\r\nReplay-Nonce: abc\r\nLocation: https://ca/acct/1\r\n\
                      Content-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"status\":\"ok\"}\r\n";
        let (r, keep) = assert_split_invariant(input, false, false);
        assert_eq!(r.status, 201);
        assert_eq!(r.header("replay-nonce"), Some("abc"));
        assert_eq!(r.header("LOCATION"), Some("https://ca/acct/1"));
        assert_eq!(r.body, b"{\"status\":\"ok\"}\r\n");
        assert!(keep);
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                      5;name=value\r\nhello\r\n1 ; ext\r\n \r\nA\r\n0123456789\r\n\
                      0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n";
        let (r, keep) = assert_split_invariant(input, false, false);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello 0123456789");
        assert!(keep);
        // Trailers are ignored, not merged into the headers.
        assert_eq!(r.header("x-trailer"), None);
    }

    #[test]
    fn chunked_no_trailers() {
        let input = b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let (r, keep) = assert_split_invariant(input, false, false);
        assert_eq!(r.body, b"abc");
        assert!(keep);
    }

    #[test]
    fn chunked_bad_crlf_and_size() {
        let e = run(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n")
            .unwrap_err();
        assert!(
            e.to_string().contains("missing crlf after chunk data"),
            "{e}"
        );
        let e =
            run(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n").unwrap_err();
        assert!(e.to_string().contains("invalid chunk size line"), "{e}");
    }

    #[test]
    fn chunked_oversize() {
        let mut p = ResponseParser::new(false, 10, MAX_HEAD);
        p.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n")
            .unwrap();
        let e = p.feed(b"8\r\n").unwrap_err();
        assert_eq!(e.to_string(), "response body exceeds 10 bytes");
        // The parser stays failed.
        assert_eq!(p.feed(b"x").unwrap_err(), e);
    }

    #[test]
    fn transfer_encoding_overrides_content_length_and_disables_reuse() {
        let input =
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        let (r, keep) = run(input).unwrap();
        assert_eq!(r.body, b"ok");
        assert!(!keep);
    }

    #[test]
    fn content_length_zero() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let (r, keep) = assert_split_invariant(input, false, false);
        assert!(r.body.is_empty());
        assert!(keep);
    }

    #[test]
    fn head_with_content_length() {
        let input = b"HTTP/1.1 200 OK\r\nReplay-Nonce: n1\r\nContent-Length: 1234\r\n\r\n";
        let (r, keep) = assert_split_invariant(input, true, false);
        assert_eq!(r.header("replay-nonce"), Some("n1"));
        assert!(r.body.is_empty());
        assert!(keep);
    }

    #[test]
    fn no_body_statuses() {
        for status in ["204 No Content", "304 Not Modified"] {
            let input = format!("HTTP/1.1 {status}\r\nContent-Length: 50\r\n\r\n");
            let (r, keep) = assert_split_invariant(input.as_bytes(), false, false);
            assert!(r.body.is_empty());
            assert!(keep);
        }
    }

    #[test]
    fn close_delimited() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this until close";
        let (r, keep) = assert_split_invariant(input, false, true);
        assert_eq!(r.body, b"all of this until close");
        assert!(!keep);
        // Without the close it never completes.
        let mut p = ResponseParser::new(false, MAX_BODY, MAX_HEAD);
        assert_eq!(p.feed(input).unwrap(), Progress::NeedMore);
        assert!(p.response().is_none());
        assert!(p.eof().is_ok());
        assert!(p.response().is_some());
    }

    #[test]
    fn close_delimited_oversize() {
        let mut p = ResponseParser::new(false, 5, MAX_HEAD);
        p.feed(b"HTTP/1.0 200 OK\r\n\r\n12345").unwrap();
        let e = p.feed(b"6").unwrap_err();
        assert_eq!(e, HttpError::BodyTooLarge(5));
        assert_eq!(p.eof().unwrap_err(), e);
    }

    #[test]
    fn content_length_oversize_fails_at_head() {
        let mut p = ResponseParser::new(false, 100, MAX_HEAD);
        let e = p
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n")
            .unwrap_err();
        assert_eq!(e.to_string(), "response body exceeds 100 bytes");
        // Exactly the limit is fine.
        let mut p = ResponseParser::new(false, 3, MAX_HEAD);
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
            .unwrap();
        assert!(p.is_complete());
    }

    #[test]
    fn interim_100_continue_skipped() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n\
                      HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        let (r, keep) = assert_split_invariant(input, false, false);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hi");
        assert_eq!(r.header("link"), None);
        assert!(keep);
    }

    #[test]
    fn switching_protocols_refused() {
        let e = run(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").unwrap_err();
        assert!(e.to_string().contains("101"), "{e}");
    }

    #[test]
    fn conflicting_content_length() {
        let e = run(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc")
            .unwrap_err();
        assert_eq!(e, HttpError::ConflictingContentLength);
        assert!(e.to_string().contains("conflicting content-length"));
        let e = run(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nabc").unwrap_err();
        assert_eq!(e, HttpError::ConflictingContentLength);
        // Identical duplicates are allowed (RFC 9110 section 8.6).
        let (r, _) =
            run(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nab").unwrap();
        assert_eq!(r.body, b"ab");
    }

    #[test]
    fn invalid_content_length() {
        for v in ["-1", "abc", "1e3", "+5", "", "99999999999999999999999"] {
            let input = format!("HTTP/1.1 200 OK\r\nContent-Length: {v}\r\n\r\n");
            let e = run(input.as_bytes()).unwrap_err();
            assert!(
                matches!(e, HttpError::MalformedResponse(_)),
                "{v:?} gave {e}"
            );
        }
    }

    #[test]
    fn malformed_status_line() {
        for input in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 2x0 OK\r\n\r\n",
            b"ICY 200 OK\r\n\r\n",
            b"HTTP/1.1200 OK\r\n\r\n",
            b"<html>hello</html>\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
        ] {
            let e = run(input).unwrap_err();
            assert!(
                matches!(e, HttpError::MalformedResponse(_)),
                "{:?} gave {e}",
                String::from_utf8_lossy(input)
            );
            assert!(e.to_string().starts_with("malformed response: "));
        }
    }

    #[test]
    fn header_section_too_large() {
        let mut p = ResponseParser::new(false, MAX_BODY, 64);
        let e = p
            .feed(b"HTTP/1.1 200 OK\r\nX-Long: 0123456789012345678901234567890123456789\r\n")
            .unwrap_err();
        assert_eq!(e.to_string(), "response header section exceeds 64 bytes");
        // A complete head over the limit in one piece is refused too.
        let mut p = ResponseParser::new(false, MAX_BODY, 40);
        let e = p
            .feed(b"HTTP/1.1 200 OK\r\nX-Long: 01234567890123456789\r\n\r\n")
            .unwrap_err();
        assert_eq!(e, HttpError::HeadersTooLarge(40));
        // Interim responses count towards the limit.
        let mut p = ResponseParser::new(false, MAX_BODY, 60);
        let e = p
            .feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n")
            .unwrap_err();
        assert_eq!(e, HttpError::HeadersTooLarge(60));
    }

    #[test]
    fn too_many_headers() {
        let mut input = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            input.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        input.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let mut p = ResponseParser::new(false, MAX_BODY, 1 << 20);
        assert_eq!(
            p.feed(&input).unwrap_err(),
            HttpError::TooManyHeaders(MAX_HEADERS)
        );
    }

    #[test]
    fn truncated_responses() {
        let mut p = ResponseParser::new(false, MAX_BODY, MAX_HEAD);
        assert_eq!(
            p.eof().unwrap_err().to_string(),
            "connection closed before any response bytes"
        );
        let mut p = ResponseParser::new(false, MAX_BODY, MAX_HEAD);
        p.feed(b"HTTP/1.1 200 OK\r\nContent-").unwrap();
        assert_eq!(
            p.eof().unwrap_err().to_string(),
            "connection closed inside the response header section"
        );
        let mut p = ResponseParser::new(false, MAX_BODY, MAX_HEAD);
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .unwrap();
        assert_eq!(
            p.eof().unwrap_err().to_string(),
            "connection closed after 3 of 10 body bytes"
        );
        let mut p = ResponseParser::new(false, MAX_BODY, MAX_HEAD);
        p.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab")
            .unwrap();
        assert_eq!(
            p.eof().unwrap_err().to_string(),
            "connection closed inside the chunked body"
        );
        assert_eq!(
            p.finish().unwrap_err(),
            HttpError::Truncated("inside the chunked body".into())
        );
    }

    #[test]
    fn keepalive_rules() {
        let ok = |input: &[u8]| run(input).unwrap().1;
        assert!(ok(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!ok(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!ok(
            b"HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(ok(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
        ));
        // HTTP/1.0 connections are not reused.
        assert!(!ok(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        // Trailing bytes after the response.
        assert!(!ok(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab"));
        let mut p = ResponseParser::new(false, MAX_BODY, MAX_HEAD);
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
            .unwrap();
        assert!(p.keepalive_ok());
        assert_eq!(p.feed(b"junk").unwrap(), Progress::Complete);
        assert!(!p.keepalive_ok());
        // Incomplete responses are not reusable.
        let mut p = ResponseParser::new(false, MAX_BODY, MAX_HEAD);
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\na")
            .unwrap();
        assert!(!p.keepalive_ok());
        assert_eq!(p.finish().unwrap_err(), HttpError::Incomplete);
    }

    #[test]
    fn repeated_headers_kept_in_order() {
        let (r, _) = run(
            b"HTTP/1.1 200 OK\r\nLink: <a>;rel=\"up\"\r\nlink: <b>;rel=\"index\"\r\n\
                           Content-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            r.header_all("LINK"),
            vec!["<a>;rel=\"up\"", "<b>;rel=\"index\""]
        );
        assert_eq!(r.headers[0].0, "Link");
        assert_eq!(r.headers[1].0, "link");
    }

    #[test]
    fn empty_reason_and_lf_only_lines() {
        let (r, _) = run(b"HTTP/1.1 404\r\nContent-Length: 1\r\n\r\nx").unwrap();
        assert_eq!(r.status, 404);
        let (r, _) = run(b"HTTP/1.1 200 OK\nContent-Length: 1\n\nx").unwrap();
        assert_eq!(r.body, b"x");
    }

    #[test]
    fn large_body_random_chunks() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut input =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        input.extend_from_slice(&body);
        let (r, keep) = run_chunked(&input, &[65536, 1, 4093, 17], false, false).unwrap();
        assert_eq!(r.body, body);
        assert!(keep);
        // The same body chunked in uneven chunks.
        let mut input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in body.chunks(7777) {
            input.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            input.extend_from_slice(piece);
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b"0\r\n\r\n");
        for seed in 1..5 {
            let (r, keep) = run_chunked(&input, &sizes(seed, 100), false, false).unwrap();
            assert_eq!(r.body, body);
            assert!(keep);
        }
    }
}
