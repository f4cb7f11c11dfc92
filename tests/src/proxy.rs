//! A misbehaving front for a registry, to test what real networks and registries do to a
//! client: it can demand Basic auth itself, answer `429 Too Many Requests` with `Retry-After`,
//! cut blob downloads part-way, and redirect blob requests to a second listener (another
//! "host") that records whether credentials followed. Everything else is relayed to the
//! upstream registry, one request per connection. Loopback only; stopped on drop.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What to do wrong.
#[derive(Debug, Clone, Default)]
pub struct Quirks {
    /// Demand these Basic credentials (`user:password`) on the main listener.
    pub basic_auth: Option<String>,
    /// Answer this many manifest requests with 429 and `Retry-After: 1` first.
    pub too_many_requests: usize,
    /// Cut this many blob responses after this many body bytes.
    pub cut_blobs: usize,
    pub cut_after: u64,
    /// Redirect blob requests to the second listener.
    pub redirect_blobs: bool,
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// "main" or "redirect".
    pub listener: &'static str,
    pub path: String,
    pub authorization: Option<String>,
    pub range: Option<String>,
    /// What the proxy did: "relayed", "cut", "429", "401", "redirect".
    pub action: &'static str,
}

#[derive(Debug)]
struct Shared {
    upstream: String,
    quirks: Quirks,
    throttled: AtomicUsize,
    cut: AtomicUsize,
    redirect_port: u16,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
}

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy in front of the plain-HTTP registry at `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str, quirks: Quirks) -> Self {
        let main = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let redirect = TcpListener::bind("127.0.0.1:0").expect("bind redirect listener");
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            quirks,
            throttled: AtomicUsize::new(0),
            cut: AtomicUsize::new(0),
            redirect_port: redirect.local_addr().unwrap().port(),
            seen: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let port = main.local_addr().unwrap().port();
        let threads = [(main, "main"), (redirect, "redirect")]
            .into_iter()
            .map(|(l, name)| {
                let shared = shared.clone();
                std::thread::spawn(move || accept_loop(&l, name, &shared))
            })
            .collect();
        Self {
            port,
            shared,
            threads,
        }
    }

    /// `127.0.0.1:PORT` of the main listener.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loops.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        let _ = TcpStream::connect(("127.0.0.1", self.shared.redirect_port));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn accept_loop(l: &TcpListener, name: &'static str, shared: &Arc<Shared>) {
    for conn in l.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else { continue };
        let shared = shared.clone();
        std::thread::spawn(move || {
            let _ = handle(conn, name, &shared);
        });
    }
}

/// Reads up to the end of the header block.
fn read_head(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 || head.len() > 64 * 1024 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
    }
    Ok(head)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn respond(s: &mut TcpStream, status: &str, extra: &str) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

fn handle(mut client: TcpStream, listener: &'static str, shared: &Shared) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = read_head(&mut client)?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut parts = text.lines().next().unwrap_or_default().split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    );
    let authorization = header(&text, "Authorization").map(str::to_string);
    let range = header(&text, "Range").map(str::to_string);
    let q = &shared.quirks;
    let is_blob = path.contains("/blobs/sha256:");
    let record = |action| {
        shared.seen.lock().unwrap().push(Seen {
            listener,
            path: path.clone(),
            authorization: authorization.clone(),
            range: range.clone(),
            action,
        });
    };
    if listener == "main" {
        if let Some(creds) = &q.basic_auth {
            let want = format!("Basic {}", crate::registry::base64(creds.as_bytes()));
            if authorization.as_deref() != Some(want.as_str()) {
                record("401");
                return respond(
                    &mut client,
                    "401 Unauthorized",
                    "WWW-Authenticate: Basic realm=\"tinyo-proxy\"\r\n",
                );
            }
        }
        if path.contains("/manifests/")
            && shared.throttled.fetch_add(1, Ordering::SeqCst) < q.too_many_requests
        {
            record("429");
            return respond(&mut client, "429 Too Many Requests", "Retry-After: 1\r\n");
        }
        if is_blob && q.redirect_blobs {
            record("redirect");
            let loc = format!(
                "Location: http://127.0.0.1:{}{path}\r\n",
                shared.redirect_port
            );
            return respond(&mut client, "307 Temporary Redirect", &loc);
        }
    }
    // Relay, one request per connection.
    let mut up = TcpStream::connect(&shared.upstream)?;
    let mut fwd = format!("{method} {path} HTTP/1.1\r\n");
    for l in text.lines().skip(1) {
        let lower = l.to_ascii_lowercase();
        if l.is_empty()
            || lower.starts_with("connection:")
            || lower.starts_with("authorization:")
            || lower.starts_with("host:")
        {
            continue;
        }
        fwd += l;
        fwd += "\r\n";
    }
    fwd += &format!("Host: {}\r\nConnection: close\r\n\r\n", shared.upstream);
    up.write_all(fwd.as_bytes())?;
    let resp_head = read_head(&mut up)?;
    client.write_all(&resp_head)?;
    let status_ok = resp_head.starts_with(b"HTTP/1.1 20");
    let cut = is_blob
        && method == "GET"
        && status_ok
        && q.cut_blobs > 0
        && shared.cut.fetch_add(1, Ordering::SeqCst) < q.cut_blobs;
    if cut {
        record("cut");
        let mut body = (&mut up).take(q.cut_after);
        std::io::copy(&mut body, &mut client)?;
        // An abrupt end: the client sees a connection closed before Content-Length bytes.
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }
    record("relayed");
    std::io::copy(&mut up, &mut client)?;
    Ok(())
}
