//! Just enough HTTP/1.1 to talk to a metadata service on the local link: one request per
//! connection (`Connection: close`), plain TCP (the services are `http://` on link-local
//! addresses), an answer's status line, headers and body, the body framed by
//! `Content-Length`, by `Transfer-Encoding: chunked`, or by the end of the connection.
//! Every request has a connect timeout and an overall deadline, and bodies are limited in
//! size, so a service that stalls or floods cannot hold up the boot.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The largest body read: what a metadata service sends is small; user data is limited to
/// 16 KiB on EC2 and 256 KiB on GCE.
pub const MAX_BODY: usize = 16 << 20;
/// The longest status or header line, and the most header lines, accepted.
const MAX_LINE: u64 = 16 << 10;
const MAX_HEADERS: usize = 200;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Nothing accepted the connection (refused, unreachable, or no answer in time).
    #[error("connecting to {addr}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// What the connect said.
        #[source]
        source: io::Error,
    },
    /// The connection failed or timed out after it was made.
    #[error("talking to {addr}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The answer is not HTTP/1.x as this client reads it.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The body is larger than [`MAX_BODY`].
    #[error("body larger than {MAX_BODY} bytes")]
    TooLarge,
}

impl HttpError {
    /// Whether the service was not there at all (as opposed to answering badly).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, HttpError::Connect { .. })
    }
}

/// How long requests may take.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// For the TCP connection to be made.
    pub connect: Duration,
    /// For the whole exchange, connection included.
    pub total: Duration,
}

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request {
    method: &'static str,
    addr: SocketAddr,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    /// A GET of `path` (with its query) from `addr`.
    pub fn get(addr: SocketAddr, path: &str) -> Request {
        Request::new("GET", addr, path)
    }

    /// A request with another method.
    pub fn new(method: &'static str, addr: SocketAddr, path: &str) -> Request {
        Request {
            method,
            addr,
            path: path.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Set the body (sent with its `Content-Length`).
    pub fn body(mut self, body: Vec<u8>) -> Request {
        self.body = body;
        self
    }

    /// `METHOD http://addr/path`, for messages.
    pub fn describe(&self) -> String {
        format!("{} http://{}{}", self.method, self.addr, self.path)
    }

    /// The bytes sent.
    fn encode(&self) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.method,
            self.path,
            self.addr.ip()
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.body.is_empty() || matches!(self.method, "POST" | "PUT") {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, transfer coding removed.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, surrounding white space dropped.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_string()
    }
}

impl Client {
    /// Send `request` and read the answer.
    pub fn send(&self, request: &Request) -> Result<Response, HttpError> {
        let addr = request.addr;
        let deadline = Instant::now() + self.total;
        let stream = TcpStream::connect_timeout(&addr, self.connect.min(self.total))
            .map_err(|source| HttpError::Connect { addr, source })?;
        let io = |source| HttpError::Io { addr, source };
        let mut stream = Deadline { stream, deadline };
        stream.write_all(&request.encode()).map_err(io)?;
        stream.flush().map_err(io)?;
        read_response(&mut BufReader::new(stream), request.method == "HEAD").map_err(|e| match e {
            HttpError::Io { source, .. } => io(source),
            e => e,
        })
    }
}

/// A connection that fails with `TimedOut` once its deadline has passed.
struct Deadline {
    stream: TcpStream,
    deadline: Instant,
}

impl Deadline {
    fn remaining(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"))
        } else {
            Ok(left)
        }
    }
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.remaining()?;
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

impl Write for Deadline {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.remaining()?;
        self.stream.set_write_timeout(Some(left))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

fn malformed(what: impl Into<String>) -> HttpError {
    HttpError::Malformed(what.into())
}

/// An I/O error with no address yet ([`Client::send`] adds it).
fn io_error(source: io::Error) -> HttpError {
    HttpError::Io {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    }
}

/// One line without its CRLF (or LF); `None` at the end of the stream.
fn read_line<R: BufRead>(r: &mut R) -> Result<Option<String>, HttpError> {
    let mut line = Vec::new();
    r.by_ref()
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)
        .map_err(io_error)?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(malformed(if line.len() as u64 >= MAX_LINE {
            "line too long"
        } else {
            "connection closed in the middle of a line"
        }));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| malformed("line is not UTF-8"))
}

/// Read an answer: status line, headers, body. `head` says the request was HEAD (no body).
pub fn read_response<R: BufRead>(r: &mut R, head: bool) -> Result<Response, HttpError> {
    loop {
        let line = read_line(r)?.ok_or_else(|| malformed("no status line"))?;
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let code = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(malformed(format!("status line {line:?}")));
        }
        let status: u16 = code
            .parse()
            .ok()
            .filter(|s| (100..=999).contains(s) && code.len() == 3)
            .ok_or_else(|| malformed(format!("status line {line:?}")))?;
        let headers = read_headers(r)?;
        // An interim answer (100 Continue): the real one follows.
        if (100..200).contains(&status) {
            continue;
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head || status == 204 || status == 304 {
            return Ok(response);
        }
        response.body = read_body(r, &response)?;
        return Ok(response);
    }
}

fn read_headers<R: BufRead>(r: &mut R) -> Result<Vec<(String, String)>, HttpError> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?.ok_or_else(|| malformed("connection closed in the headers"))?;
        if line.is_empty() {
            return Ok(headers);
        }
        if headers.len() == MAX_HEADERS {
            return Err(malformed("too many headers"));
        }
        let (name, value) = line
            .split_once(':')
            .filter(|(n, _)| !n.is_empty() && !n.contains([' ', '\t']))
            .ok_or_else(|| malformed(format!("header line {line:?}")))?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
}

fn read_body<R: BufRead>(r: &mut R, response: &Response) -> Result<Vec<u8>, HttpError> {
    let chunked = response
        .header("Transfer-Encoding")
        .and_then(|te| te.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
    if chunked {
        return read_chunked(r);
    }
    let lengths: Vec<&str> = response
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .collect();
    if let Some(first) = lengths.first() {
        if lengths.iter().any(|l| l != first) {
            return Err(malformed("conflicting Content-Length headers"));
        }
        let len: u64 = first
            .parse()
            .map_err(|_| malformed(format!("Content-Length {first:?}")))?;
        if len > MAX_BODY as u64 {
            return Err(HttpError::TooLarge);
        }
        let mut body = vec![0u8; len as usize];
        r.read_exact(&mut body).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                malformed("connection closed before the end of the body")
            } else {
                io_error(e)
            }
        })?;
        return Ok(body);
    }
    // Neither: the body runs to the end of the connection.
    let mut body = Vec::new();
    r.take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
        .map_err(io_error)?;
    if body.len() > MAX_BODY {
        return Err(HttpError::TooLarge);
    }
    Ok(body)
}

fn read_chunked<R: BufRead>(r: &mut R) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?.ok_or_else(|| malformed("connection closed in a chunked body"))?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size, 16)
            .ok()
            .filter(|_| !size.is_empty() && size.len() <= 16)
            .ok_or_else(|| malformed(format!("chunk size {line:?}")))?;
        if size == 0 {
            // Trailer fields, then the empty line.
            read_headers(r)?;
            return Ok(body);
        }
        if body.len() as u64 + size > MAX_BODY as u64 {
            return Err(HttpError::TooLarge);
        }
        let at = body.len();
        body.resize(at + size as usize, 0);
        r.read_exact(&mut body[at..])
            .map_err(|_| malformed("connection closed in a chunk"))?;
        match read_line(r)? {
            Some(l) if l.is_empty() => {}
            _ => return Err(malformed("chunk not followed by CRLF")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn parse(bytes: &[u8]) -> Result<Response, HttpError> {
        read_response(&mut &bytes[..], false)
    }

    #[test]
    fn content_length_bodies() {
        let r =
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b c \r\n\r\nhelloEXTRA").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello");
        assert_eq!(r.header("x-a"), Some("b c"));
        assert_eq!(r.header("missing"), None);
        let e = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello").unwrap_err();
        assert!(e.to_string().contains("before the end of the body"), "{e}");
        let e = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
            .unwrap_err();
        assert!(e.to_string().contains("conflicting"), "{e}");
        // The same length twice is allowed.
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nab").unwrap();
        assert_eq!(r.body, b"ab");
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers() {
        let r = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;name=x\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: y\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"hello, world");
        for bad in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(HttpError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn bodies_to_the_end_of_the_connection_and_without_bodies() {
        let r = parse(b"HTTP/1.0 404 Not Found\r\n\r\nnothing here").unwrap();
        assert_eq!((r.status, &r.body[..]), (404, &b"nothing here"[..]));
        let r = parse(b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n").unwrap();
        assert!(r.body.is_empty());
        let r = read_response(
            &mut &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"[..],
            true,
        )
        .unwrap();
        assert!(r.body.is_empty());
        let r = parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n\r\n").unwrap();
        assert_eq!(r.status, 201);
    }

    #[test]
    fn bad_status_lines_and_headers_are_refused() {
        for bad in [
            &b""[..],
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: b",
        ] {
            assert!(
                matches!(parse(bad), Err(HttpError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("HTTP/1.1 200 OK\r\nA: {}\r\n\r\n", "x".repeat(20_000));
        assert!(parse(long.as_bytes()).is_err());
    }

    #[test]
    fn bodies_over_the_limit_are_refused() {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(parse(head.as_bytes()), Err(HttpError::TooLarge)));
        let chunk = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(parse(chunk.as_bytes()), Err(HttpError::TooLarge)));
        let mut unframed = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        unframed.resize(unframed.len() + MAX_BODY + 1, b'x');
        assert!(matches!(parse(&unframed), Err(HttpError::TooLarge)));
    }

    #[test]
    fn requests_carry_host_headers_and_body_length() {
        let addr: SocketAddr = "169.254.169.254:80".parse().unwrap();
        let put = Request::new("PUT", addr, "/latest/api/token")
            .header("X-aws-ec2-metadata-token-ttl-seconds", "21600")
            .encode();
        assert_eq!(
            String::from_utf8(put).unwrap(),
            "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\
             X-aws-ec2-metadata-token-ttl-seconds: 21600\r\nContent-Length: 0\r\n\r\n"
        );
        let get = String::from_utf8(Request::get(addr, "/x").encode()).unwrap();
        assert!(!get.contains("Content-Length"), "{get}");
        let post = Request::new("POST", addr, "/p")
            .body(b"abc".to_vec())
            .encode();
        assert!(post.ends_with(b"Content-Length: 3\r\n\r\nabc"));
    }

    /// A server on 127.0.0.1 that reads one request and answers `answer`, then stalls for
    /// `stall` before closing.
    fn serve(answer: &'static [u8], stall: Duration) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(answer);
            std::thread::sleep(stall);
        });
        addr
    }

    #[test]
    fn a_round_trip_over_tcp() {
        let addr = serve(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            Duration::ZERO,
        );
        let client = Client {
            connect: Duration::from_secs(2),
            total: Duration::from_secs(5),
        };
        let r = client.send(&Request::get(addr, "/")).unwrap();
        assert_eq!(r.text(), "ok");
    }

    #[test]
    fn a_stalling_server_runs_into_the_deadline() {
        let addr = serve(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            Duration::from_secs(5),
        );
        let client = Client {
            connect: Duration::from_secs(1),
            total: Duration::from_millis(300),
        };
        let start = Instant::now();
        let e = client.send(&Request::get(addr, "/")).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(matches!(e, HttpError::Io { .. }), "{e:?}");
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
    }

    #[test]
    fn nothing_listening_is_unreachable() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = Client {
            connect: Duration::from_secs(1),
            total: Duration::from_secs(1),
        };
        let e = client.send(&Request::get(addr, "/")).unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
    }
}
