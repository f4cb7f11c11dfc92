//! A blocking client for the OCI distribution API (registry v2): manifests and blobs, with
//! anonymous, Basic and Bearer-token auth, TLS with extra CAs, plain HTTP for insecure
//! registries, manual redirects that never carry credentials to another host, retries with
//! backoff (429 / `Retry-After`, 5xx, connection errors) and ranged blob requests for resuming.
//!
//! Blocking on purpose: a pull runs a few downloads at once, each on its own thread, streaming
//! into the layer applier; an async runtime would buy nothing here and cost size and memory.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

/// The largest manifest or index accepted (the distribution spec's own limit is 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// Media types a manifest request accepts.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Why a request failed. Every variant names the URL.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}")]
    Transport {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("{url}: HTTP {status}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url}: authentication required{}", if *had_creds { " and the credentials were refused" } else { " and no credentials are configured for this registry" })]
    Unauthorized { url: String, had_creds: bool },
    #[error("{url}: {what}")]
    Protocol { url: String, what: String },
    #[error("{url}: reading the response")]
    Body {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// Whether another registry (a mirror, the next search registry) might do better.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Status { status: 404, .. })
    }
}

/// Where and how to reach one registry.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    /// Plain HTTP allowed / TLS verification off (registries.conf `insecure`, `--tls-verify=false`).
    pub insecure: bool,
    /// Directories with extra CA certificates (`*.crt`), as `certs.d/<host>/` holds them.
    pub cert_dirs: Vec<PathBuf>,
}

impl Endpoint {
    /// The loopback registries are insecure by default, as Docker treats them.
    pub fn new(host: &str) -> Self {
        let name =
            host.rsplit_once(':').map_or(
                host,
                |(h, p)| if p.parse::<u16>().is_ok() { h } else { host },
            );
        let loopback = name == "localhost" || name.starts_with("127.") || name == "[::1]";
        let mut cert_dirs = vec![];
        for base in ["/etc/containers/certs.d", "/etc/docker/certs.d"] {
            let d = Path::new(base).join(host);
            if d.is_dir() {
                cert_dirs.push(d);
            }
        }
        Self {
            host: host.to_string(),
            insecure: loopback,
            cert_dirs,
        }
    }
}

/// Credentials for one registry.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A client for one registry endpoint.
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    host: String,
    creds: Option<Credentials>,
    /// The current Authorization header (Basic or a Bearer token), learnt from challenges.
    auth: Mutex<Option<String>>,
    retries: u32,
}

/// A streaming blob body.
pub struct Body {
    reader: Box<dyn Read + Send>,
    /// Whether the server honoured the range request (206).
    pub partial: bool,
    /// Content-Length, if the server sent one.
    pub length: Option<u64>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("partial", &self.partial)
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Client {
    /// Connects to `endpoint`: HTTPS, or plain HTTP when the endpoint is insecure and does not
    /// speak TLS.
    pub fn new(endpoint: &Endpoint, creds: Option<Credentials>) -> Result<Self, ClientError> {
        let make = |tls: bool| -> Self {
            let scheme = if tls { "https" } else { "http" };
            Self {
                agent: agent(endpoint),
                base: format!("{scheme}://{}", endpoint.host),
                host: endpoint.host.clone(),
                creds: creds.clone(),
                auth: Mutex::new(None),
                retries: 4,
            }
        };
        let https = make(true);
        if !endpoint.insecure {
            return Ok(https);
        }
        // Insecure: use HTTPS (unverified) if the registry speaks it, else plain HTTP. A plain
        // server may never answer a TLS hello, so the probe gets a short deadline.
        let probe = https
            .agent
            .get(format!("{}/v2/", https.base))
            .config()
            .timeout_global(Some(Duration::from_secs(3)))
            .build();
        match probe.call() {
            Ok(_) => Ok(https),
            Err(_) => Ok(make(false)),
        }
    }

    /// The base URL in use (`https://host` or `http://host`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Fetches a manifest (or index) by tag or digest. Returns the body and its media type.
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<(Vec<u8>, String), ClientError> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let resp = self.send(&url, &[("Accept", ACCEPT)], repo)?;
        let media_type = header(&resp, "Content-Type").unwrap_or_default();
        let media_type = media_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let mut body = Vec::new();
        resp.into_body()
            .into_reader()
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut body)
            .map_err(|source| ClientError::Body {
                url: url.clone(),
                source,
            })?;
        if body.len() as u64 > MAX_MANIFEST {
            return Err(ClientError::Protocol {
                url,
                what: format!("manifest larger than {MAX_MANIFEST} bytes"),
            });
        }
        Ok((body, media_type))
    }

    /// Opens a blob for streaming, from byte `offset` on (a `Range` request when non-zero).
    pub fn blob(&self, repo: &str, digest: &str, offset: u64) -> Result<Body, ClientError> {
        self.blob_at(
            &format!("{}/v2/{repo}/blobs/{digest}", self.base),
            repo,
            offset,
        )
    }

    /// Opens a blob from one of a non-distributable layer's `urls` (http or https only; the
    /// registry's credentials are never sent there).
    pub fn foreign_blob(&self, url: &str, offset: u64) -> Result<Body, ClientError> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ClientError::Protocol {
                url: url.into(),
                what: "only http and https layer URLs are fetched".into(),
            });
        }
        self.blob_at(url, "", offset)
    }

    fn blob_at(&self, url: &str, repo: &str, offset: u64) -> Result<Body, ClientError> {
        let url = url.to_string();
        let range = format!("bytes={offset}-");
        let headers: Vec<(&str, &str)> = if offset > 0 {
            vec![("Range", &range)]
        } else {
            vec![]
        };
        let resp = self.send(&url, &headers, repo)?;
        let partial = resp.status().as_u16() == 206;
        let length = header(&resp, "Content-Length").and_then(|l| l.parse().ok());
        Ok(Body {
            reader: Box::new(resp.into_body().into_reader()),
            partial,
            length,
        })
    }

    /// GET with auth negotiation, manual redirects and retries.
    fn send(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        repo: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        let mut attempt = 0;
        let mut authed_after_challenge = false;
        loop {
            let mut target = url.to_string();
            let mut hops = 0;
            let resp = loop {
                let same_host = host_of(&target) == host_of(&self.base);
                let mut req = self.agent.get(&target);
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                // Credentials go to the registry only, never to a host it redirects to.
                if same_host {
                    if let Some(a) = self.auth.lock().expect("auth lock").clone() {
                        req = req.header("Authorization", a);
                    }
                }
                let r = req.call();
                match r {
                    Ok(resp) if resp.status().is_redirection() => {
                        let Some(loc) = header(&resp, "Location") else {
                            return Err(ClientError::Protocol {
                                url: target,
                                what: "redirect without Location".into(),
                            });
                        };
                        hops += 1;
                        if hops > 10 {
                            return Err(ClientError::Protocol {
                                url: url.into(),
                                what: "too many redirects".into(),
                            });
                        }
                        target = resolve_location(&target, &loc);
                    }
                    other => break other,
                }
            };
            let retry_after = match resp {
                Err(e) => {
                    if attempt >= self.retries {
                        return Err(ClientError::Transport {
                            url: target,
                            source: Box::new(e),
                        });
                    }
                    None
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match status {
                        200..=299 => return Ok(resp),
                        401 if !authed_after_challenge => {
                            let challenge = header(&resp, "WWW-Authenticate").unwrap_or_default();
                            self.answer_challenge(url, &challenge, repo)?;
                            authed_after_challenge = true;
                            continue;
                        }
                        401 | 403 if self.creds.is_some() || authed_after_challenge => {
                            return Err(ClientError::Unauthorized {
                                url: url.into(),
                                had_creds: self.creds.is_some(),
                            })
                        }
                        429 | 500 | 502 | 503 | 504 if attempt < self.retries => {
                            header(&resp, "Retry-After").and_then(|s| s.trim().parse::<u64>().ok())
                        }
                        _ => {
                            let mut detail = String::new();
                            let _ = resp
                                .into_body()
                                .into_reader()
                                .take(512)
                                .read_to_string(&mut detail);
                            return Err(ClientError::Status {
                                url: target,
                                status,
                                detail: detail.trim().to_string(),
                            });
                        }
                    }
                }
            };
            attempt += 1;
            let wait = retry_after.map_or(Duration::from_millis(200 << attempt), |s| {
                Duration::from_secs(s.min(30))
            });
            std::thread::sleep(wait);
        }
    }

    /// Learns how to authenticate from a 401's `WWW-Authenticate`.
    fn answer_challenge(&self, url: &str, challenge: &str, repo: &str) -> Result<(), ClientError> {
        let (scheme, params) = parse_challenge(challenge);
        let header = if scheme.eq_ignore_ascii_case("basic") {
            let Some(c) = &self.creds else {
                return Err(ClientError::Unauthorized {
                    url: url.into(),
                    had_creds: false,
                });
            };
            basic(c)
        } else if scheme.eq_ignore_ascii_case("bearer") {
            let realm = params
                .iter()
                .find(|(k, _)| k == "realm")
                .map(|(_, v)| v.clone())
                .ok_or_else(|| ClientError::Protocol {
                    url: url.into(),
                    what: "Bearer challenge without a realm".into(),
                })?;
            let mut token_url = realm.clone();
            let mut sep = if realm.contains('?') { '&' } else { '?' };
            if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
                token_url += &format!("{sep}service={}", encode(service));
                sep = '&';
            }
            let scope = params
                .iter()
                .find(|(k, _)| k == "scope")
                .map_or_else(|| format!("repository:{repo}:pull"), |(_, v)| v.clone());
            token_url += &format!("{sep}scope={}", encode(&scope));
            let mut req = self.agent.get(&token_url);
            if let Some(c) = &self.creds {
                req = req.header("Authorization", basic(c));
            }
            let resp = req.call().map_err(|e| ClientError::Transport {
                url: token_url.clone(),
                source: Box::new(e),
            })?;
            let status = resp.status().as_u16();
            if status == 401 || status == 403 {
                return Err(ClientError::Unauthorized {
                    url: token_url,
                    had_creds: self.creds.is_some(),
                });
            }
            if status != 200 {
                return Err(ClientError::Status {
                    url: token_url,
                    status,
                    detail: "token request failed".into(),
                });
            }
            let mut body = Vec::new();
            resp.into_body()
                .into_reader()
                .take(1 << 20)
                .read_to_end(&mut body)
                .map_err(|source| ClientError::Body {
                    url: token_url.clone(),
                    source,
                })?;
            let v: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| ClientError::Protocol {
                    url: token_url.clone(),
                    what: format!("token response is not JSON: {e}"),
                })?;
            let token = v["token"]
                .as_str()
                .or(v["access_token"].as_str())
                .ok_or_else(|| ClientError::Protocol {
                    url: token_url.clone(),
                    what: "token response has no token".into(),
                })?;
            format!("Bearer {token}")
        } else {
            return Err(ClientError::Protocol {
                url: url.into(),
                what: format!("unsupported auth challenge {challenge:?}"),
            });
        };
        *self.auth.lock().expect("auth lock") = Some(header);
        Ok(())
    }

    /// The registry host this client talks to.
    pub fn host(&self) -> &str {
        &self.host
    }
}

fn basic(c: &Credentials) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password))
    )
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `scheme://host[:port]` of a URL.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or_default()
}

fn resolve_location(current: &str, loc: &str) -> String {
    if loc.contains("://") {
        return loc.to_string();
    }
    let scheme = current.split_once("://").map_or("https", |(s, _)| s);
    if loc.starts_with('/') {
        format!("{scheme}://{}{loc}", host_of(current))
    } else {
        let base = current.rsplit_once('/').map_or(current, |(b, _)| b);
        format!("{base}/{loc}")
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Splits `Bearer realm="x",service="y",scope="a,b"` into the scheme and its parameters.
pub fn parse_challenge(h: &str) -> (String, Vec<(String, String)>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (q[..end].to_string(), q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.push((key, value));
        rest = remaining.trim_start_matches([',', ' ']);
    }
    (scheme.to_string(), params)
}

fn agent(endpoint: &Endpoint) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let mut tls = TlsConfig::builder();
    if endpoint.insecure {
        tls = tls.disable_verification(true);
    } else {
        let mut roots: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs()
            .certs
            .iter()
            .map(|der| Certificate::from_der(der).to_owned())
            .collect();
        for dir in &endpoint.cert_dirs {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "crt") {
                    if let Ok(pem) = std::fs::read(&p) {
                        roots.extend(ureq::tls::parse_pem(&pem).filter_map(|i| match i {
                            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                            _ => None,
                        }));
                    }
                }
            }
        }
        if !roots.is_empty() {
            tls = tls.root_certs(RootCerts::Specific(Arc::new(roots)));
        }
    }
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_recv_body(None)
        .tls_config(tls.build())
        .user_agent(concat!("tinyo-pull/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_quoted_commas() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://auth.example/token".into()),
                ("service".into(), "registry.example".into()),
                ("scope".into(), "repository:a/b:pull,push".into())
            ]
        );
        let (s, p) = parse_challenge(r#"Basic realm="tinyo-test""#);
        assert_eq!((s.as_str(), p.len()), ("Basic", 1));
    }

    #[test]
    fn redirects_resolve_and_hosts_compare() {
        assert_eq!(
            resolve_location("https://r.io/v2/x/blobs/d", "/cdn/1"),
            "https://r.io/cdn/1"
        );
        assert_eq!(
            resolve_location("https://r.io/v2/x/blobs/d", "https://cdn.io/1"),
            "https://cdn.io/1"
        );
        assert_eq!(host_of("https://r.io:5000/v2/"), "r.io:5000");
        assert_eq!(encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
    }

    #[test]
    fn loopback_endpoints_are_insecure_by_default() {
        assert!(Endpoint::new("127.0.0.1:5000").insecure);
        assert!(Endpoint::new("localhost:5000").insecure);
        assert!(!Endpoint::new("registry-1.docker.io").insecure);
    }

    #[test]
    fn credentials_never_print_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
