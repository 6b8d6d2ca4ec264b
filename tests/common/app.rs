//! A small HTTP application on loopback, for a custom origin to be: it
//! keeps every request head it reads.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A small HTTP/1.1 application that keeps every request head it reads.
pub struct App {
    pub address: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    pages: Arc<AtomicU64>,
}

impl App {
    pub fn start() -> App {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let app = App {
            address: listener.local_addr().unwrap(),
            heads: Arc::default(),
            pages: Arc::default(),
        };
        let (heads, pages) = (app.heads.clone(), app.pages.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (heads, pages) = (heads.clone(), pages.clone());
                std::thread::spawn(move || serve_connection(stream, &heads, &pages));
            }
        });
        app
    }

    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// A request target's path, without its query.
fn route_of(target: &str) -> &str {
    target.split('?').next().unwrap_or_default()
}

/// Answers the requests of one connection until it closes: `/site/echo/*`
/// with what it was sent (target, `Accept-Language`, `X-Tenant`, `Cookie`,
/// `Authorization`) and a count of the echoes, cacheable; any `page.html`
/// with a length and an ETag; `/site/missing.json` a JSON 404,
/// `/site/forbidden` a 403 with a text body, `/site/huge-error` a 500 of
/// 100 KiB; any `.json` chunked, with no length and no
/// validator, counting the GETs it answers; `/site/big` chunked and
/// longer than a slice; `/site/trickle` 64 KiB of `t` whose first 1,000
/// bytes come at once and the rest 1.5 s later; anything else 404.
fn serve_connection(stream: TcpStream, heads: &Mutex<Vec<String>>, pages: &AtomicU64) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        heads.lock().unwrap().push(head.clone());
        let (method, path) = {
            let mut words = head.split_whitespace();
            (words.next().unwrap().to_owned(), words.next().unwrap().to_owned())
        };
        let body_of = |text: &[u8]| if method == "HEAD" { Vec::new() } else { text.to_vec() };
        let header = |name: &str| {
            head.lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(found, _)| found.eq_ignore_ascii_case(name))
                .map_or("-", |(_, value)| value.trim())
        };
        if route_of(&path) == "/site/trickle" {
            let body = vec![b't'; 64 << 10];
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: \"t1\"\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&[head.as_bytes(), &body[..1000]].concat());
            std::thread::sleep(std::time::Duration::from_millis(1500));
            let _ = stream.write_all(&body[1000..]);
            continue;
        }
        let answer = match route_of(&path) {
            _ if path.starts_with("/site/echo/") => {
                let echo = format!(
                    "{path} lang={} tenant={} cookie={} authorization={} n={}",
                    header("accept-language"),
                    header("x-tenant"),
                    header("cookie"),
                    header("authorization"),
                    pages.fetch_add(1, Ordering::SeqCst) + 1
                );
                let mut answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=60\r\nContent-Length: {}\r\n\r\n",
                    echo.len()
                )
                .into_bytes();
                answer.extend(body_of(echo.as_bytes()));
                answer
            }
            "/site/missing.json" | "/site/forbidden" | "/site/huge-error" => {
                let (status, kind, body) = match route_of(&path) {
                    "/site/missing.json" => ("404 Not Found", "application/json", "{\"error\":\"no such thing\"}".to_owned()),
                    "/site/forbidden" => ("403 Forbidden", "text/plain", "forbidden by the application".to_owned()),
                    _ => ("500 Internal Server Error", "text/plain", "e".repeat(100 << 10)),
                };
                let mut answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                answer.extend(body_of(body.as_bytes()));
                answer
            }
            route if route.ends_with("/page.html") => {
                let page = b"<h1>a page of the application</h1>";
                let mut answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nETag: \"v1\"\r\nCache-Control: max-age=60\r\nContent-Length: {}\r\n\r\n",
                    page.len()
                )
                .into_bytes();
                answer.extend(body_of(page));
                answer
            }
            route if route.ends_with(".json") || route == "/site/big" => {
                let text = match path.as_str() {
                    "/site/big" => "x".repeat(3 << 20),
                    _ if method == "GET" => format!("{{\"count\":{}}}", pages.fetch_add(1, Ordering::SeqCst) + 1),
                    _ => String::new(),
                };
                let mut answer =
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\n"
                        .to_vec();
                if method == "GET" {
                    for chunk in text.as_bytes().chunks(7000) {
                        answer.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
                        answer.extend(chunk);
                        answer.extend(b"\r\n");
                    }
                    answer.extend(b"0\r\n\r\n");
                }
                answer
            }
            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        };
        if stream.write_all(&answer).is_err() {
            return;
        }
    }
}
