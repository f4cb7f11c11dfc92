//! A token server for the registry's Bearer-token auth, as Docker Hub and most cloud
//! registries use: `GET /token?service=…&scope=repository:NAME:pull` with Basic credentials
//! answers a JWT (ES256, signed with a key whose self-signed certificate the registry trusts
//! through `rootcertbundle`, carried in the token's `x5c` header). Wrong or missing
//! credentials get 401. Loopback only; stopped on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use crate::host::{require_tool, run_ok};

pub const ISSUER: &str = "tinyo-test-issuer";
pub const SERVICE: &str = "tinyo-registry";

#[derive(Debug)]
struct Inner {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    creds: String,
    issued: AtomicUsize,
    stop: AtomicBool,
}

/// A running token server.
#[derive(Debug)]
pub struct TokenServer {
    port: u16,
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
    cert: PathBuf,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    /// Makes a key and certificate and starts serving tokens for `user:password`.
    pub fn start(creds: &str) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("tinyo-token-")
            .tempdir()
            .expect("token dir");
        let dir: &Path = tmp.path();
        let openssl = require_tool("openssl", "openssl");
        let d = |f: &str| dir.join(f);
        run_ok(
            Command::new(&openssl)
                .args([
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                ])
                .arg(d("token.key")),
        );
        run_ok(
            Command::new(&openssl)
                .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"])
                .arg(d("token.key"))
                .arg("-out")
                .arg(d("token.p8")),
        );
        run_ok(
            Command::new(&openssl)
                .args([
                    "req",
                    "-x509",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=tinyo token signer",
                    "-key",
                ])
                .arg(d("token.key"))
                .arg("-out")
                .arg(d("token.crt")),
        );
        run_ok(
            Command::new(&openssl)
                .args(["x509", "-outform", "DER", "-in"])
                .arg(d("token.crt"))
                .arg("-out")
                .arg(d("token.der")),
        );
        let p8 = std::fs::read(d("token.p8")).expect("read key");
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &p8, &SystemRandom::new())
                .expect("load P-256 key");
        let cert_der = std::fs::read(d("token.der")).expect("read cert");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let port = listener.local_addr().unwrap().port();
        let inner = Arc::new(Inner {
            key,
            cert_der,
            creds: creds.into(),
            issued: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let i = inner.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if i.stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(c) = conn {
                    let _ = serve(c, &i);
                }
            }
        });
        Self {
            port,
            inner,
            thread: Some(thread),
            cert: d("token.crt"),
            _dir: tmp,
        }
    }

    /// The realm URL registries send clients to.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The certificate the registry must trust (`rootcertbundle`).
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// How many tokens were handed out over HTTP.
    pub fn issued(&self) -> usize {
        self.inner.issued.load(Ordering::SeqCst)
    }

    /// A token granting pull and push on `repo`, minted directly (for the fixture's own pushes).
    pub fn mint(&self, repo: &str) -> String {
        mint(
            &self.inner,
            "fixture",
            &[(repo.to_string(), vec!["pull".into(), "push".into()])],
        )
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn b64url(data: &[u8]) -> String {
    crate::registry::base64(data)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

fn mint(inner: &Inner, sub: &str, access: &[(String, Vec<String>)]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "x5c": [crate::registry::base64(&inner.cert_der)]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": sub, "aud": SERVICE, "exp": now + 600, "nbf": now - 10, "iat": now - 10,
        "jti": crate::host::unique("jti"),
        "access": access.iter().map(|(name, actions)| serde_json::json!({"type": "repository", "name": name, "actions": actions})).collect::<Vec<_>>(),
    });
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = inner
        .key
        .sign(&SystemRandom::new(), input.as_bytes())
        .expect("sign token");
    format!("{input}.{}", b64url(sig.as_ref()))
}

fn serve(mut c: TcpStream, inner: &Inner) -> std::io::Result<()> {
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        if c.read(&mut b)? == 0 {
            break;
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let target = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    let auth = text.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.trim().to_string())
    });
    let want = format!("Basic {}", crate::registry::base64(inner.creds.as_bytes()));
    if auth.as_deref() != Some(want.as_str()) {
        return write!(
            c,
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut access = Vec::new();
    for kv in query.split('&') {
        if let Some(scope) = kv.strip_prefix("scope=") {
            let scope = decode(scope);
            // repository:NAME:ACTIONS — NAME may contain ':' only in a port, which repos lack.
            let mut parts = scope.splitn(3, ':');
            if let (Some("repository"), Some(name), Some(actions)) =
                (parts.next(), parts.next(), parts.next())
            {
                access.push((
                    name.to_string(),
                    actions.split(',').map(str::to_string).collect(),
                ));
            }
        }
    }
    let token = mint(inner, "tinyo", &access);
    inner.issued.fetch_add(1, Ordering::SeqCst);
    let body =
        serde_json::json!({"token": token, "access_token": token, "expires_in": 600}).to_string();
    write!(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
