//! A real registry for tests: Debian's `docker-registry` (CNCF distribution) on a free loopback
//! port: plain HTTP; TLS (a fresh self-signed CA) with basic auth; or plain HTTP with
//! Bearer-token auth from [`crate::token::TokenServer`]. Stopped and removed on
//! drop; it also dies with the thread that started it (`PR_SET_PDEATHSIG`), so even a test
//! killed mid-way leaves no registry behind.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::host::{require_tool, run_ok};
use crate::image::{self, Descriptor};

/// User and password of the authenticated registry.
pub const USER: &str = "tinyo";
pub const PASSWORD: &str = "s3cret-test-password";

/// A running registry.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    tls: bool,
    auth: Auth,
    agent: ureq::Agent,
}

/// How the registry authenticates.
#[derive(Debug)]
enum Auth {
    None,
    Basic,
    Token(crate::token::TokenServer),
}

/// A response as tests look at it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Registry {
    /// Plain HTTP, anonymous access.
    pub fn plain() -> Self {
        Self::start(false, Auth::None)
    }

    /// Plain HTTP with Bearer-token auth: the token server hands out tokens for
    /// [`USER`] / [`PASSWORD`] only.
    pub fn token_auth() -> Self {
        Self::start(
            false,
            Auth::Token(crate::token::TokenServer::start(&format!(
                "{USER}:{PASSWORD}"
            ))),
        )
    }

    /// The token server, for a token-auth registry.
    pub fn token_server(&self) -> Option<&crate::token::TokenServer> {
        match &self.auth {
            Auth::Token(t) => Some(t),
            _ => None,
        }
    }

    /// TLS with a fresh self-signed CA, and basic auth ([`USER`] / [`PASSWORD`]).
    pub fn tls_auth() -> Self {
        Self::start(true, Auth::Basic)
    }

    fn start(tls: bool, auth: Auth) -> Self {
        let bin = require_tool("docker-registry", "docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("tinyo-registry-")
            .tempdir()
            .expect("registry temp dir");
        fs::create_dir_all(dir.path().join("storage")).expect("storage dir");
        if tls {
            make_certs(dir.path());
        }
        if matches!(auth, Auth::Basic) {
            let htpasswd = require_tool("htpasswd", "apache2-utils");
            let line = run_ok(Command::new(htpasswd).args(["-Bbn", USER, PASSWORD]));
            fs::write(dir.path().join("htpasswd"), line.trim()).expect("write htpasswd");
        }
        let agent = make_agent(tls.then(|| dir.path().join("certs/ca.crt")).as_deref());
        // The port is free when we look; another process may take it before the registry binds,
        // so a failed start is retried on a new port.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            write_config(dir.path(), port, tls, &auth);
            let log = fs::File::create(dir.path().join("registry.log")).expect("registry log");
            let mut cmd = Command::new(&bin);
            cmd.arg("serve")
                .arg(dir.path().join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log);
            crate::host::die_with_parent(&mut cmd);
            let mut child = cmd.spawn().expect("spawn docker-registry");
            let scheme = if tls { "https" } else { "http" };
            match wait_ready(
                &mut child,
                &agent,
                &format!("{scheme}://127.0.0.1:{port}/v2/"),
                dir.path(),
            ) {
                Ok(()) => {
                    return Registry {
                        child,
                        dir,
                        port,
                        tls,
                        auth,
                        agent,
                    }
                }
                Err(log) => {
                    last_log = log;
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        panic!("docker-registry did not start; its log:\n{last_log}");
    }

    /// The registry's own log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `127.0.0.1:PORT`: the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The registry's private directory (config, storage, certificates); removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// A directory holding `ca.crt`, the CA that signed the registry's certificate (TLS only),
    /// laid out as `--cert-dir` and `certs.d/<host>/` expect.
    pub fn cert_dir(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join("certs"))
    }

    /// `user:password` when the registry needs auth.
    pub fn creds(&self) -> Option<String> {
        (!matches!(self.auth, Auth::None)).then(|| format!("{USER}:{PASSWORD}"))
    }

    /// The base URL (`http://…` or `https://…`).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.host())
    }

    /// Options that let skopeo reach this registry. `prefix` is `""` for `skopeo inspect`,
    /// `"src-"` or `"dest-"` for `skopeo copy`.
    pub fn skopeo_args(&self, prefix: &str) -> Vec<String> {
        let mut v = vec![];
        match self.cert_dir() {
            Some(d) => v.push(format!("--{prefix}cert-dir={}", d.display())),
            None => v.push(format!("--{prefix}tls-verify=false")),
        }
        if let Some(c) = self.creds() {
            v.push(format!("--{prefix}creds={c}"));
        }
        v
    }

    /// Copies `repo:tag` out of this registry with skopeo into the OCI layout `dest` (tagged
    /// `tag`), converted to OCI media types and gzip layers: the form umoci 0.4.7 reads (it
    /// reads neither zstd nor Docker media types). `home` isolates skopeo's configuration.
    pub fn skopeo_copy_to_oci(&self, repo_tag: &str, dest: &Path, tag: &str, home: &Path) {
        let skopeo = require_tool("skopeo", "skopeo");
        run_ok(
            Command::new(skopeo)
                .args([
                    "copy",
                    "--insecure-policy",
                    "--dest-compress-format",
                    "gzip",
                    "--format",
                    "oci",
                ])
                .args(self.skopeo_args("src-"))
                .arg(format!("docker://{}/{repo_tag}", self.host()))
                .arg(format!("oci:{}:{tag}", dest.display()))
                .env("HOME", home),
        );
    }

    /// One HTTP request. `path` is absolute (`/v2/…`) or a full URL; credentials are sent when
    /// `authenticate` and the registry has auth.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
        authenticate: bool,
    ) -> Result<Response, ureq::Error> {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            self.url(path)
        };
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        match (&self.auth, authenticate) {
            (Auth::Basic, true) => {
                let c = format!("{USER}:{PASSWORD}");
                req = req.header("Authorization", format!("Basic {}", base64(c.as_bytes())));
            }
            (Auth::Token(t), true) => {
                if let Some(repo) = repo_of(&url) {
                    req = req.header("Authorization", format!("Bearer {}", t.mint(&repo)));
                }
            }
            _ => {}
        }
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        req = req.header("Accept", ACCEPT);
        let req = req.body(body.to_vec()).expect("build request");
        let resp = self.agent.run(req)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let mut body = Vec::new();
        resp.into_body()
            .into_reader()
            .read_to_end(&mut body)
            .map_err(ureq::Error::Io)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// GET with credentials; panics on transport errors.
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None, &[], true)
            .unwrap_or_else(|e| panic!("GET {path}: {e}\nregistry log:\n{}", self.log()))
    }

    /// Pushes the image or index `root` from the OCI layout at `layout` as `repo:tag`, through
    /// the registry's HTTP API (blobs first, then child manifests, then the root).
    pub fn push(&self, layout: &Path, root: &Descriptor, repo: &str, tag: &str) {
        self.push_manifest(layout, root, repo, tag);
    }

    fn push_manifest(&self, layout: &Path, desc: &Descriptor, repo: &str, reference: &str) {
        let bytes = image::read_blob(layout, &desc.digest);
        let json: Value = serde_json::from_slice(&bytes).expect("manifest json");
        for child in children(&json) {
            self.push_manifest(layout, &child, repo, &child.digest.clone());
        }
        for blob in blobs(&json) {
            self.push_blob(layout, &blob, repo);
        }
        let r = self.put_manifest(repo, reference, &desc.media_type, &bytes);
        assert_eq!(
            r.status,
            201,
            "PUT manifest {repo}:{reference}: {}\n{}",
            String::from_utf8_lossy(&r.body),
            self.log()
        );
    }

    /// PUTs manifest bytes as they are; returns the registry's answer.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Response {
        self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            Some(media_type),
            bytes,
            true,
        )
        .expect("PUT manifest")
    }

    fn push_blob(&self, layout: &Path, desc: &Descriptor, repo: &str) {
        let head = self
            .request(
                "HEAD",
                &format!("/v2/{repo}/blobs/{}", desc.digest),
                None,
                &[],
                true,
            )
            .expect("HEAD blob");
        if head.status == 200 {
            return;
        }
        let data = image::read_blob(layout, &desc.digest);
        let start = self
            .request(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/"),
                None,
                &[],
                true,
            )
            .expect("POST upload");
        assert_eq!(
            start.status,
            202,
            "start upload in {repo}: {}",
            String::from_utf8_lossy(&start.body)
        );
        let location = start
            .header("Location")
            .expect("upload Location")
            .to_string();
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = self
            .request(
                "PUT",
                &format!("{location}{sep}digest={}", desc.digest),
                Some("application/octet-stream"),
                &data,
                true,
            )
            .expect("PUT blob");
        assert_eq!(
            put.status,
            201,
            "upload {} to {repo}: {}",
            desc.digest,
            String::from_utf8_lossy(&put.body)
        );
    }

    /// Writes the image `root` from `layout` straight into the registry's storage as
    /// `repo:tag`, trusting the layout's blob names and skipping blobs that are absent. This
    /// is how hostile images (wrong digests, missing blobs) get served: the HTTP API would
    /// refuse them on push, but serves what its storage holds.
    pub fn plant(&self, layout: &Path, root: &Descriptor, repo: &str, tag: &str) {
        let v2 = self.dir.path().join("storage/docker/registry/v2");
        let repo_dir = v2.join("repositories").join(repo);
        let put_blob = |digest: &str| {
            let hex = digest.trim_start_matches("sha256:");
            let src = image::blob_path(layout, digest);
            if src.is_file() {
                let dst = v2.join("blobs/sha256").join(&hex[..2]).join(hex);
                fs::create_dir_all(&dst).expect("blob dir");
                fs::copy(&src, dst.join("data")).expect("copy blob");
            }
        };
        let link = |rel: PathBuf, digest: &str| {
            fs::create_dir_all(&rel).expect("link dir");
            fs::write(rel.join("link"), digest).expect("write link");
        };
        let mut stack = vec![root.clone()];
        while let Some(desc) = stack.pop() {
            put_blob(&desc.digest);
            link(
                repo_dir
                    .join("_manifests/revisions/sha256")
                    .join(desc.hex()),
                &desc.digest,
            );
            let Ok(bytes) = fs::read(image::blob_path(layout, &desc.digest)) else {
                continue;
            };
            let json: Value = serde_json::from_slice(&bytes).expect("manifest json");
            stack.extend(children(&json));
            for b in blobs(&json) {
                put_blob(&b.digest);
                link(repo_dir.join("_layers/sha256").join(b.hex()), &b.digest);
            }
        }
        link(
            repo_dir.join("_manifests/tags").join(tag).join("current"),
            &root.digest,
        );
        link(
            repo_dir
                .join("_manifests/tags")
                .join(tag)
                .join("index/sha256")
                .join(root.hex()),
            &root.digest,
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every media type a manifest fetch should accept.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

fn desc_of(v: &Value) -> Descriptor {
    Descriptor {
        media_type: v["mediaType"].as_str().unwrap_or_default().into(),
        digest: v["digest"].as_str().unwrap_or_default().into(),
        size: v["size"].as_u64().unwrap_or_default(),
    }
}

/// Child manifests of an index / manifest list.
pub fn children(manifest: &Value) -> Vec<Descriptor> {
    manifest["manifests"]
        .as_array()
        .map(|a| a.iter().map(desc_of).collect())
        .unwrap_or_default()
}

/// Config and layer blobs of an image manifest.
pub fn blobs(manifest: &Value) -> Vec<Descriptor> {
    let mut v: Vec<Descriptor> = manifest["config"]
        .is_object()
        .then(|| desc_of(&manifest["config"]))
        .into_iter()
        .collect();
    if let Some(layers) = manifest["layers"].as_array() {
        v.extend(layers.iter().map(desc_of));
    }
    v
}

fn wait_ready(child: &mut Child, agent: &ureq::Agent, url: &str, dir: &Path) -> Result<(), String> {
    let log = || fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}:\n{}", log()));
        }
        if let Ok(r) = agent.get(url).call() {
            if matches!(r.status().as_u16(), 200 | 401) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("not ready after 20 s:\n{}", log()));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// The repository a `/v2/<repo>/(blobs|manifests)/…` URL is about.
fn repo_of(url: &str) -> Option<String> {
    let path = url.split_once("/v2/")?.1;
    let end = ["/blobs/", "/manifests/"]
        .iter()
        .filter_map(|m| path.find(m))
        .min()?;
    Some(path[..end].to_string())
}

fn write_config(dir: &Path, port: u16, tls: bool, auth: &Auth) {
    let mut y = format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
http:\n  addr: 127.0.0.1:{port}\n  secret: tinyo-test-secret\n",
        dir.join("storage").display()
    );
    if tls {
        y += &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            dir.join("server.crt").display(),
            dir.join("server.key").display()
        );
    }
    match auth {
        Auth::None => {}
        Auth::Basic => {
            y += &format!(
                "auth:\n  htpasswd:\n    realm: tinyo-test\n    path: {}\n",
                dir.join("htpasswd").display()
            )
        }
        Auth::Token(t) => {
            y += &format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                t.realm(),
                crate::token::SERVICE,
                crate::token::ISSUER,
                t.cert().display()
            )
        }
    }
    fs::write(dir.join("config.yml"), y).expect("write registry config");
}

/// A fresh CA and a server certificate for 127.0.0.1 / localhost, made with openssl.
fn make_certs(dir: &Path) {
    let openssl = require_tool("openssl", "openssl");
    let d = |f: &str| dir.join(f);
    fs::create_dir_all(d("certs")).expect("certs dir");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run_ok(
        Command::new(&openssl)
            .args(["req", "-x509"])
            .args(ec)
            .args(["-days", "2", "-subj", "/CN=tinyo test CA"])
            .arg("-keyout")
            .arg(d("ca.key"))
            .arg("-out")
            .arg(d("certs/ca.crt")),
    );
    run_ok(
        Command::new(&openssl)
            .arg("req")
            .args(ec)
            .args(["-subj", "/CN=127.0.0.1"])
            .arg("-keyout")
            .arg(d("server.key"))
            .arg("-out")
            .arg(d("server.csr")),
    );
    fs::write(d("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        .expect("write ext");
    run_ok(
        Command::new(&openssl)
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(d("server.csr"))
            .arg("-CA")
            .arg(d("certs/ca.crt"))
            .arg("-CAkey")
            .arg(d("ca.key"))
            .arg("-extfile")
            .arg(d("ext.cnf"))
            .arg("-out")
            .arg(d("server.crt")),
    );
}

fn make_agent(ca: Option<&Path>) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let mut tls = TlsConfig::builder();
    if let Some(ca) = ca {
        let pem = fs::read(ca).expect("read CA");
        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        assert!(!certs.is_empty(), "no certificate in {}", ca.display());
        tls = tls.root_certs(RootCerts::Specific(Arc::new(certs)));
    }
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .tls_config(tls.build())
        .build()
        .into()
}

/// Standard base64 (with padding), for the Basic auth header.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }
}
