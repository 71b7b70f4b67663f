//! A minimal HTTP/1.1 server on std::net for a metrics endpoint: one request per connection
//! (`Connection: close`), requests larger than [`MAX_REQUEST`] refused, read and write
//! timeouts so that a stuck client cannot hold the exporter. Only `GET` and `HEAD` are
//! answered. The listener is non-blocking so the caller's loop can notice a stop request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Largest request head read (bytes); bigger requests get 431.
pub const MAX_REQUEST: usize = 8 * 1024;

/// Why the server could not start or serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source} (is another exporter running there? pick another with --listen)")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("accepting a connection failed: {0}")]
    Accept(#[source] std::io::Error),
}

/// What a handler answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    /// A 200 with a body.
    pub fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status: 200,
            content_type,
            body: body.into(),
        }
    }

    /// An error status with a one-line text body.
    pub fn error(status: u16, text: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{text}\n").into_bytes(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

/// The request line's method and path, from a request head.
pub fn parse_request_line(head: &[u8]) -> Option<(&str, &str)> {
    let end = head.iter().position(|&b| b == b'\r' || b == b'\n')?;
    let line = std::str::from_utf8(&head[..end]).ok()?;
    let mut it = line.split(' ');
    let method = it.next()?;
    let target = it.next()?;
    let version = it.next()?;
    if !version.starts_with("HTTP/") || it.next().is_some() {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target);
    Some((method, path))
}

/// The listening socket.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
}

impl Server {
    /// Binds `addr` (e.g. `127.0.0.1:9477`; port 0 picks a free port).
    pub fn bind(addr: &str) -> Result<Server, HttpError> {
        let listener = TcpListener::bind(addr).map_err(|source| HttpError::Bind {
            addr: addr.into(),
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| HttpError::Bind {
                addr: addr.into(),
                source,
            })?;
        Ok(Server { listener })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves the connections waiting now, one after the other; returns how many were
    /// served (0: none was waiting). `handler` gets the method and path.
    pub fn serve_pending(
        &self,
        mut handler: impl FnMut(&str, &str) -> Response,
    ) -> Result<usize, HttpError> {
        let mut n = 0;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    // A client that misbehaves only loses its own connection.
                    let _ = serve(stream, &mut handler);
                    n += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(HttpError::Accept(e)),
            }
        }
    }
}

fn serve(
    mut stream: TcpStream,
    handler: &mut impl FnMut(&str, &str) -> Response,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() > MAX_REQUEST {
            break false;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break !head.is_empty();
        }
        head.extend_from_slice(&buf[..n]);
    };
    let (resp, head_only) = if !complete {
        (Response::error(431, "request too large"), false)
    } else {
        match parse_request_line(&head) {
            None => (Response::error(400, "bad request line"), false),
            Some((m, p)) if m == "GET" || m == "HEAD" => (handler(m, p), m == "HEAD"),
            Some(_) => (Response::error(405, "only GET and HEAD"), false),
        }
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
    stream.write_all(&out)?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_request_line(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(
            parse_request_line(b"GET /metrics?x=1 HTTP/1.0\n\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(parse_request_line(b"garbage\r\n"), None);
        assert_eq!(parse_request_line(b"\xff\xfe HTTP/1.1\r\n"), None);
        assert_eq!(parse_request_line(b""), None);
    }

    #[test]
    fn serves_over_loopback() {
        let server = Server::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        });
        let mut served = 0;
        while served == 0 {
            served = server
                .serve_pending(|m, p| Response::ok("text/plain", format!("{m} {p}")))
                .unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = client.join().unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("Content-Length: 12\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nGET /metrics"), "{out}");
    }
}
