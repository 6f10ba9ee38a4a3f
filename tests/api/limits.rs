//! Bounded request bodies (issue 9): a body that does not arrive in time is answered
//! 408 and its connection closed; a `Content-Length` over the limit is refused before a
//! byte of the body is read. Spoken over a raw socket, since an HTTP client would not
//! send half a body.

use std::time::Duration;

use rentabot::api::RequestPolicy;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::helpers::*;

/// The safety net around every read: far longer than any timeout the tests set.
const PATIENCE: Duration = Duration::from_secs(10);

/// A service whose request bodies must arrive within 200 ms.
async fn impatient_app() -> TestApp {
    spawn_app_with_requests(RequestPolicy {
        body_timeout: Duration::from_millis(200),
        ..RequestPolicy::default()
    })
    .await
}

/// Sends `head` (and whatever part of a body follows it), then reads until the server
/// closes the connection. Panics if it does not within [`PATIENCE`].
async fn send_and_read_to_close(app: &TestApp, head: &str) -> String {
    let address = app.address.trim_start_matches("http://");
    let mut socket = TcpStream::connect(address).await.expect("connects");
    socket.write_all(head.as_bytes()).await.expect("sends");
    let mut answer = Vec::new();
    timeout(PATIENCE, socket.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes the connection")
        .expect("reads");
    String::from_utf8(answer).expect("text")
}

/// The status line, the headers (lower-cased names) and the JSON body of `answer`.
fn parse(answer: &str) -> (String, Vec<(String, String)>, Value) {
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .map(|l| {
            let (name, value) = l.split_once(':').unwrap();
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON ({e}): {body}"));
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_a_json_408_and_the_connection_closes() {
    let app = impatient_app().await;
    let cases = [
        ("/api/v1/resources/1/lock", "", "lock, half a body"),
        ("/api/v1/reservations", "", "reservation"),
        (
            "/api/v1/resources/1/lock",
            "Idempotency-Key: k-1\r\n",
            "read by the Idempotency-Key middleware first",
        ),
    ];
    for (path, extra, why) in cases {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}Content-Length: 40\r\n\r\n{{\"ttl\":"
        );

        let answer = send_and_read_to_close(&app, &head).await;

        let (status, headers, body) = parse(&answer);
        assert!(status.starts_with("HTTP/1.1 408"), "{why}: {answer}");
        assert_eq!(header(&headers, "connection"), Some("close"), "{why}");
        assert_eq!(body["code"], "body_timeout", "{why}");
    }
    assert_eq!(
        app.resource(COFFEE).await["lock-token"],
        "",
        "nothing locked"
    );
}

#[tokio::test]
async fn a_content_length_over_the_limit_is_refused_before_the_body_is_read() {
    // Bodies may take an hour: only refusing before reading answers this in time.
    let app = spawn_app_with_requests(RequestPolicy {
        body_timeout: Duration::from_secs(3600),
        ..RequestPolicy::default()
    })
    .await;
    for path in ["/api/v1/resources/1/lock", "/api/v1/resources"] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
        );

        let answer = send_and_read_to_close(&app, &head).await;

        let (status, headers, body) = parse(&answer);
        assert!(status.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert_eq!(header(&headers, "connection"), Some("close"), "{path}");
        assert_eq!(body["code"], "body_too_large", "{path}");
        assert_eq!(body["limit"], 262_144, "{path}");
    }
}

#[tokio::test]
async fn a_body_that_arrives_in_pieces_within_the_timeout_is_read() {
    let app = spawn_app().await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut socket = TcpStream::connect(address).await.expect("connects");
    let body = br#"{"ttl": 60}"#;

    socket
        .write_all(
            format!(
                "POST /api/v1/resources/1/lock HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    for piece in body.chunks(3) {
        socket.write_all(piece).await.unwrap();
        socket.flush().await.unwrap();
    }
    let mut answer = Vec::new();
    timeout(PATIENCE, socket.read_to_end(&mut answer))
        .await
        .expect("answered")
        .unwrap();

    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("2026-01-15T10:01:00.000Z"), "{answer}");
}
