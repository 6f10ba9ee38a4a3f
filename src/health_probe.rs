//! `rentabot health`: asks a running service's `/health` whether it answers, for a
//! container's health check (the image has no shell, no curl: README § The container
//! image).
//!
//! A raw HTTP/1.1 `GET` over [`TcpStream`], no HTTP client: the probe needs the status
//! line and nothing else, and must not depend on the service's async stack. Everything
//! is bounded: one deadline covers connecting, sending and reading, and at most
//! [`MAX_STATUS_LINE`] bytes are read. Name resolution is the exception (the system
//! resolver has no timeout): a numeric address, as the default is, resolves nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

/// The longest status line read: `HTTP/1.1 200 OK` is 15 bytes; anything that has not
/// ended its first line by then is not an HTTP server we know.
pub const MAX_STATUS_LINE: usize = 256;

/// Where `/health` is asked: `http://host[:port][/prefix]`, the service's base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host[:port]` as given: the `Host` header.
    authority: String,
    /// `host:port`, port 80 when none was given: what is resolved.
    address: String,
    /// The request target: the prefix, then `/health`.
    path: String,
}

impl Target {
    /// Parses the base URL of a service (the client's `--url`); `/health` is appended
    /// to its path.
    ///
    /// # Errors
    /// Not `http://`, no host, a user name, a query or a fragment.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("HTTP://"))
            .ok_or_else(|| {
                anyhow!(
                    "`{url}`: give an http:// URL such as http://127.0.0.1:8000 \
                     (rentabot serves plain HTTP; probe it where it listens)"
                )
            })?;
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() {
            bail!("`{url}` has no host: give one, such as http://127.0.0.1:8000");
        }
        if authority.contains('@') || prefix.contains(['?', '#']) {
            bail!("`{url}`: give the service's base URL, without a user, query or fragment");
        }
        let has_port = match authority.strip_prefix('[') {
            Some(v6) => v6.contains("]:"),
            None => authority.contains(':'),
        };
        let address = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Target {
            authority: authority.to_owned(),
            address,
            path: format!("{}/health", prefix.trim_end_matches('/')),
        })
    }

    /// `http://authority/path`, as probed.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }
}

/// Sends `GET /health` and reads the status line, all within `timeout`.
///
/// # Errors
/// The host does not resolve, nothing accepts the connection, the answer is late or is
/// not HTTP, or its status is not 200.
pub fn probe(target: &Target, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let addresses: Vec<SocketAddr> = target
        .address
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", target.address))?
        .collect();
    let mut stream = connect(&addresses, deadline)
        .with_context(|| format!("connecting to {}", target.authority))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rentabot-health/{}\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        target.path,
        target.authority,
        env!("CARGO_PKG_VERSION")
    );
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    stream
        .write_all(request.as_bytes())
        .context("sending the request")?;
    let line = read_status_line(&mut stream, deadline).context("reading the answer")?;
    match status_of(&line) {
        Some(200) => Ok(()),
        Some(status) => bail!("{} answered {status}", target.url()),
        None => bail!("{} answered something that is not HTTP", target.url()),
    }
}

/// The first address that accepts, each tried with what is left of the time.
fn connect(addresses: &[SocketAddr], deadline: Instant) -> anyhow::Result<TcpStream> {
    let mut last = None;
    for address in addresses {
        match TcpStream::connect_timeout(address, remaining(deadline)?) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| anyhow!("the name has no address"), Into::into))
}

/// Time left before `deadline`, or an error once it has passed (a zero timeout would
/// mean "no timeout" to the socket).
fn remaining(deadline: Instant) -> anyhow::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        bail!("no answer within the timeout");
    }
    Ok(left)
}

/// Reads until the first CRLF, at most [`MAX_STATUS_LINE`] bytes, by the deadline.
fn read_status_line(stream: &mut TcpStream, deadline: Instant) -> anyhow::Result<String> {
    let mut line = Vec::with_capacity(64);
    let mut chunk = [0u8; 64];
    loop {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => bail!("no answer within the timeout"),
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            bail!("the connection closed before a status line");
        }
        line.extend_from_slice(&chunk[..n]);
        if let Some(end) = line.windows(2).position(|w| w == b"\r\n") {
            line.truncate(end);
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        if line.len() > MAX_STATUS_LINE {
            bail!("the status line is longer than {MAX_STATUS_LINE} bytes");
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// The status of `HTTP/1.x NNN reason`.
fn status_of(line: &str) -> Option<u16> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gets_health_appended_and_port_80_when_it_names_none() {
        let cases = [
            ("http://127.0.0.1:8000", "127.0.0.1:8000", "/health"),
            ("http://127.0.0.1:8000/", "127.0.0.1:8000", "/health"),
            ("http://rentabot.lab", "rentabot.lab:80", "/health"),
            ("http://[::1]:9000/rb/", "[::1]:9000", "/rb/health"),
            ("http://[::1]", "[::1]:80", "/health"),
            ("HTTP://lab:8000/a/b", "lab:8000", "/a/b/health"),
        ];
        for (url, address, path) in cases {
            let target = Target::parse(url).unwrap();
            assert_eq!(
                (target.address.as_str(), target.path.as_str()),
                (address, path),
                "{url}"
            );
        }
        assert_eq!(
            Target::parse("http://[::1]:9000/rb").unwrap().url(),
            "http://[::1]:9000/rb/health"
        );
    }

    #[test]
    fn urls_that_are_not_a_plain_http_base_are_refused_saying_what_to_give() {
        let cases = [
            ("https://127.0.0.1:8000", "http://"),
            ("127.0.0.1:8000", "http://"),
            ("http://", "no host"),
            ("http:///health", "no host"),
            ("http://user@host:8000", "without a user"),
            ("http://host:8000/?x=1", "query"),
            ("http://host:8000/#top", "fragment"),
        ];
        for (url, says) in cases {
            let e = Target::parse(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn only_an_http_1_status_line_with_a_three_digit_code_has_a_status() {
        let cases = [
            ("HTTP/1.1 200 OK", Some(200)),
            ("HTTP/1.0 200", Some(200)),
            ("HTTP/1.1 503 Service Unavailable", Some(503)),
            ("HTTP/2 200", None),
            ("SSH-2.0-OpenSSH_9.2", None),
            ("HTTP/1.1 2000 OK", None),
            ("HTTP/1.1 abc OK", None),
            ("", None),
        ];
        for (line, status) in cases {
            assert_eq!(status_of(line), status, "{line:?}");
        }
    }
}
