//! Container networking: `--network none|host|bridge` and `-p [IP:]HOST:CTR[/tcp|udp]`, through
//! Debian's CNI plugins (`containernetworking-plugins`, /usr/lib/cni) instead of `ip` commands.
//!
//! # Modes
//! - `none`: the container gets its own netns with only `lo`, brought up by [`Network::loopback_up`].
//! - `host`: nothing to do here (the container shares the supervisor's netns).
//! - `bridge`: [`Network::attach`] brings `lo` up, runs a CNI `ADD` of the conflist `bridge`
//!   (the veth pair, bridge [`BRIDGE`] as gateway with hairpin, `host-local` IPAM on [`SUBNET`]),
//!   then installs forwarding, masquerade and the published ports itself ([`firewall`]: one
//!   `iptables-save` and one `iptables-restore` instead of the CNI `firewall` and `portmap`
//!   plugins' dozen `iptables` processes). [`Network::detach`] undoes both.
//!
//! # How the caller uses it
//! - Call [`Network::attach`] while the container is *created but not started* (its init is
//!   blocked before exec), with `netns = /proc/<container pid>/ns/net`, from the supervisor's own
//!   (host) network namespace. The container must have been created with its own network
//!   namespace (`CLONE_NEWNET`); attaching the supervisor's own netns is refused.
//! - Store the returned [`Attached`] in the container's state; on exit call [`Network::detach`]
//!   with it. Pass `Some(/proc/<pid>/ns/net)` if the container may still be alive, `None` once it
//!   has exited. A path whose netns is not the one recorded at attach time (pid reuse) is treated
//!   as gone, so a stale `/proc/<pid>` can never make us delete `eth0` in somebody else's netns.
//! - No bind-mounted netns file is needed: when the netns is gone, the kernel has already removed
//!   the veth pair, host-local releases the IPAM lease without a netns, and the port rules are
//!   found by their `tinyo:<id>` comment. (Records written by earlier tinyo versions, whose
//!   conflist still names `firewall`/`portmap` and the bridge's `ipMasq`, are detached the old
//!   way, plugin by plugin.)
//! - A copy of [`Attached`] is also kept under `root/net/containers/<id>.json` so a restarted
//!   supervisor can find it ([`Network::attached`]).
//!
//! # Side effects on the host (expected of bridge networking, as with docker/podman)
//! The bridge plugin sets `net.ipv4.ip_forward=1` and creates the bridge `tinyo0` (kept across
//! containers, like `docker0`); publishing a port sets `route_localnet=1` on `tinyo0` so that
//! `127.0.0.1:HOST` reaches the container. The shared chains (`TINYO-FORWARD`,
//! `TINYO-POSTROUTING`, `TINYO-HOSTPORTS`, their jumps and the localhost guard) stay; every
//! per-container rule is removed on detach.
//!
//! # State (all under `root/net/`)
//! - `ipam/` — host-local's `dataDir` (`ipam/tinyo/<ip>` lease files);
//! - `ports.json` + `ports.lock` — host-port reservations of tinyo containers, guarded by `flock`;
//! - `firewall.lock` — serialises the iptables read-modify-write of concurrent attaches;
//! - `containers/<id>.json` — the [`Attached`] record of each attached container.

// The CLI/supervisor (written separately) will use these items; until it does, they look unused.
#![allow(dead_code)]

pub mod conntrack;
pub mod firewall;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[cfg(test)]
use firewall::LOCALNET_GUARD_COMMENT;

/// CNI spec version we speak (the 1.1.1 plugins accept 0.1.0 … 1.0.0).
pub const CNI_VERSION: &str = "1.0.0";
/// CNI network name (host-local keeps leases in `dataDir/<name>/`; iptables comments name it).
pub const NETWORK_NAME: &str = "tinyo";
/// Host-side bridge.
pub const BRIDGE: &str = "tinyo0";
/// Container subnet: private and unlikely to clash (docker uses 172.17/16, podman 10.88/16).
pub const SUBNET: &str = "10.89.0.0/24";
/// The bridge's address and the containers' default gateway.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 1);
/// Interface name inside the container.
pub const CONTAINER_IFNAME: &str = "eth0";
/// Default plugin directory of Debian's `containernetworking-plugins`.
pub const DEFAULT_PLUGIN_DIR: &str = "/usr/lib/cni";
/// Plugins this module runs (records of earlier versions may also name `firewall` and `portmap`,
/// which their detach runs).
pub const REQUIRED_PLUGINS: [&str; 2] = ["bridge", "host-local"];

/// Used for the plugins' PATH (they run `iptables`) and to find `iptables` ourselves.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything that can go wrong in container networking; each message names what failed and why.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("unknown network mode `{given}` (expected none, host or bridge)")]
    BadMode { given: String },
    #[error("invalid port mapping `{spec}`: {why} (expected [IP:]HOST:CTR[/tcp|/udp])")]
    BadPort { spec: String, why: String },
    #[error("invalid container id `{id}` for networking: {why}")]
    BadId { id: String, why: &'static str },
    #[error(
        "CNI plugin `{plugin}` not found or not executable in {dir} \
         (install the Debian package containernetworking-plugins, or set CNI_PATH)"
    )]
    PluginMissing { plugin: String, dir: PathBuf },
    #[error("could not run CNI plugin {plugin} {command}: {source}")]
    PluginSpawn {
        plugin: String,
        command: &'static str,
        source: io::Error,
    },
    #[error("CNI plugin {plugin} {command} failed (code {code}): {msg}{}", details_suffix(.details))]
    Plugin {
        plugin: String,
        command: &'static str,
        code: u64,
        msg: String,
        details: String,
    },
    #[error("CNI plugin {plugin} {command} gave an unusable answer: {why}{}", stderr_suffix(.stderr))]
    PluginOutput {
        plugin: String,
        command: &'static str,
        why: String,
        stderr: String,
    },
    #[error("host port {port} is already in use by {by}")]
    PortInUse { port: u16, by: String },
    #[error("could not check whether host port {port} is free (binding {addr}): {source}")]
    PortCheck {
        port: u16,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("port mapping {map}: {why}")]
    PortUnsupported { map: String, why: &'static str },
    #[error("container network namespace {}: {why}", .path.display())]
    Netns { path: PathBuf, why: String },
    #[error(
        "{} is tinyo-shim's own network namespace: refusing to attach the bridge network to it \
         (the container needs its own netns, CLONE_NEWNET)",
        .path.display()
    )]
    HostNetns { path: PathBuf },
    #[error("container {id} is already attached to the network (detach it first)")]
    AlreadyAttached { id: String },
    #[error("network state: {action} {}: {source}", .path.display())]
    State {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("network state file {} is corrupt: {source}", .path.display())]
    StateCorrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("iptables {args}: {why}")]
    Iptables { args: String, why: String },
    #[error("forgetting the connection-tracking entries of {ip} (ctnetlink): {source}")]
    Conntrack { ip: Ipv4Addr, source: io::Error },
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}

fn stderr_suffix(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!("; stderr: {s}")
    }
}

/// `--network` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Own netns with only `lo` up.
    None,
    /// Share the host's (supervisor's) netns.
    Host,
    /// Own netns attached to the `tinyo0` bridge with NAT and published ports.
    Bridge,
}

impl FromStr for Mode {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Mode::None),
            "host" => Ok(Mode::Host),
            "bridge" => Ok(Mode::Bridge),
            _ => Err(NetError::BadMode {
                given: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::None => "none",
            Mode::Host => "host",
            Mode::Bridge => "bridge",
        })
    }
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `-p` mapping: traffic to `host_ip:host_port` (any local address if `None`) goes to the
/// container's `container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMap {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl PortMap {
    /// Do two mappings claim the same host port?
    fn clashes(&self, other: &PortMap) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && (self.host_ip.is_none() || other.host_ip.is_none() || self.host_ip == other.host_ip)
    }

    fn to_cni(self) -> Value {
        let mut v = json!({
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.proto.as_str(),
        });
        if let Some(ip) = self.host_ip {
            v["hostIP"] = Value::String(ip.to_string());
        }
        v
    }
}

impl fmt::Display for PortMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port, self.container_port, self.proto
        )
    }
}

/// Parses `HOST:CTR`, `IP:HOST:CTR` (`[IPv6]:HOST:CTR`), each optionally followed by `/tcp` or
/// `/udp` (default tcp). Ports are 1..=65535.
pub fn parse_port(spec: &str) -> Result<PortMap, NetError> {
    let bad = |why: String| NetError::BadPort {
        spec: spec.to_owned(),
        why,
    };
    let (addr, proto) = match spec.rsplit_once('/') {
        Some((a, "tcp")) => (a, Proto::Tcp),
        Some((a, "udp")) => (a, Proto::Udp),
        Some((_, p)) => return Err(bad(format!("unknown protocol `{p}` (use tcp or udp)"))),
        None => (spec, Proto::Tcp),
    };
    let (host_ip, rest) = if let Some(v6) = addr.strip_prefix('[') {
        let (ip, rest) = v6
            .split_once("]:")
            .ok_or_else(|| bad("unterminated `[IPv6]` address".into()))?;
        let ip = ip
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad(format!("`{ip}` is not an IPv6 address")))?;
        (Some(IpAddr::V6(ip)), rest)
    } else {
        match addr.split(':').collect::<Vec<_>>()[..] {
            [_] => return Err(bad("missing container port".into())),
            [_, _] => (None, addr),
            [ip, _, _] => {
                let parsed = ip
                    .parse::<Ipv4Addr>()
                    .map_err(|_| bad(format!("`{ip}` is not an IPv4 address")))?;
                (Some(IpAddr::V4(parsed)), &addr[ip.len() + 1..])
            }
            _ => return Err(bad("wrong number of `:`-separated fields".into())),
        }
    };
    let (host, ctr) = rest
        .split_once(':')
        .ok_or_else(|| bad("missing container port".into()))?;
    let port = |what: &str, s: &str| -> Result<u16, NetError> {
        match s.parse::<u16>() {
            Ok(p) if p != 0 && !s.starts_with('+') => Ok(p),
            _ => Err(bad(format!(
                "{what} port `{s}` is not a number in 1..=65535"
            ))),
        }
    };
    Ok(PortMap {
        host_ip,
        host_port: port("host", host)?,
        container_port: port("container", ctr)?,
        proto,
    })
}

/// Identity of a network namespace (device and inode of its nsfs file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

impl NetnsId {
    fn of(path: &Path) -> io::Result<NetnsId> {
        let m = fs::metadata(path)?;
        Ok(NetnsId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// What [`Network::attach`] made; the caller stores it with the container and hands it back to
/// [`Network::detach`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attached {
    /// CNI container id (the container's id).
    pub id: String,
    /// The conflist used for `ADD` (used again, unchanged, for `DEL`).
    pub conflist: Value,
    /// The chain's final CNI result (passed as `prevResult` on `DEL`).
    pub result: Value,
    /// The container netns at attach time (a later path is trusted only if it still matches).
    pub netns: NetnsId,
    /// Interface inside the container (`eth0`).
    pub ifname: String,
    /// Container address and prefix length.
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// MAC of the container's interface.
    pub mac: String,
    /// Host-side bridge and veth.
    pub bridge: String,
    pub host_veth: String,
    /// Published ports (reserved under `root/net/ports.json` until detach).
    pub ports: Vec<PortMap>,
}

/// A host-port reservation of a tinyo container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reservation {
    id: String,
    #[serde(flatten)]
    port: PortMap,
}

/// The bridge network of one tinyo-shim state root.
#[derive(Debug, Clone)]
pub struct Network {
    root: PathBuf,
    plugin_dir: PathBuf,
    /// PATH the plugins and the iptables tools run with.
    path: String,
}

impl Network {
    /// `root` is tinyo-shim's state root (e.g. /run/tinyo); state goes to `root/net/`. Plugins
    /// come from `$CNI_PATH` (first directory holding them all) or /usr/lib/cni.
    pub fn new(root: impl Into<PathBuf>) -> Result<Network, NetError> {
        let dirs: Vec<PathBuf> = match std::env::var_os("CNI_PATH") {
            Some(p) if !p.is_empty() => std::env::split_paths(&p).collect(),
            _ => vec![PathBuf::from(DEFAULT_PLUGIN_DIR)],
        };
        let root = root.into();
        let mut first_err = None;
        for dir in dirs {
            match Network::with_plugin_dir(root.clone(), dir) {
                Ok(n) => return Ok(n),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| NetError::PluginMissing {
            plugin: "bridge".into(),
            dir: PathBuf::from(DEFAULT_PLUGIN_DIR),
        }))
    }

    /// Like [`Network::new`] with an explicit plugin directory.
    pub fn with_plugin_dir(
        root: impl Into<PathBuf>,
        plugin_dir: impl Into<PathBuf>,
    ) -> Result<Network, NetError> {
        let plugin_dir = plugin_dir.into();
        for plugin in REQUIRED_PLUGINS {
            let p = plugin_dir.join(plugin);
            let ok = fs::metadata(&p)
                .map(|m| m.is_file() && m.mode() & 0o111 != 0)
                .unwrap_or(false);
            if !ok {
                return Err(NetError::PluginMissing {
                    plugin: plugin.into(),
                    dir: plugin_dir,
                });
            }
        }
        Ok(Network {
            root: root.into(),
            plugin_dir,
            path: system_path(),
        })
    }

    /// Looks tools (iptables-save, iptables-restore, iptables) up in `dir` first: a seam for
    /// tests that inject failures.
    #[cfg(test)]
    fn with_tools_first(mut self, dir: &Path) -> Network {
        self.path = format!("{}:{}", dir.display(), self.path);
        self
    }

    fn iptables_tools(&self) -> firewall::Iptables {
        firewall::Iptables {
            path: self.path.clone(),
        }
    }

    /// `root/net`.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("net")
    }

    fn ipam_dir(&self) -> PathBuf {
        self.state_dir().join("ipam")
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.state_dir()
            .join("containers")
            .join(format!("{id}.json"))
    }

    /// The record of an attached container (for a supervisor that lost its in-memory state).
    pub fn attached(&self, id: &str) -> Result<Option<Attached>, NetError> {
        check_id(id)?;
        let path = self.record_path(id);
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|source| NetError::StateCorrupt { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(NetError::State {
                action: "reading",
                path,
                source,
            }),
        }
    }

    /// Every attached container's record (to detach those whose container no longer exists
    /// after a supervisor crash).
    pub fn records(&self) -> Result<Vec<Attached>, NetError> {
        let dir = self.state_dir().join("containers");
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(NetError::State {
                    action: "listing",
                    path: dir,
                    source,
                })
            }
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|source| NetError::State {
                action: "listing",
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if check_id(id).is_ok() {
                out.extend(self.attached(id)?);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The conflist for a container: the bridge plugin only (links, address, routes); its
    /// masquerade is off because [`firewall`] installs one shared rule for the whole subnet.
    pub fn conflist(&self) -> Value {
        let plugins = vec![json!({
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": SUBNET, "gateway": GATEWAY.to_string() }]],
                "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": self.ipam_dir().to_string_lossy(),
            },
        })];
        json!({ "cniVersion": CNI_VERSION, "name": NETWORK_NAME, "plugins": plugins })
    }

    /// `--network none`: bring `lo` up in the container's netns (in process, one ioctl), nothing else.
    pub fn loopback_up(&self, netns: &Path) -> Result<(), NetError> {
        crate::network::loopback_up(netns).map_err(|e| NetError::Netns {
            path: netns.into(),
            why: format!("cannot bring lo up in it: {e}"),
        })
    }

    /// `--network bridge`: connect the container netns (`/proc/<pid>/ns/net` of the created, not
    /// yet started container) to `tinyo0` and publish `ports`. Either everything is set up or
    /// nothing is left behind.
    pub fn attach(&self, id: &str, netns: &Path, ports: &[PortMap]) -> Result<Attached, NetError> {
        check_id(id)?;
        let netns_str = netns_arg(netns)?;
        let netns_id = NetnsId::of(netns).map_err(|e| NetError::Netns {
            path: netns.into(),
            why: format!("cannot stat it: {e}"),
        })?;
        let own = Path::new("/proc/thread-self/ns/net");
        let own_id = NetnsId::of(own).map_err(|e| NetError::Netns {
            path: own.into(),
            why: format!("cannot stat it: {e}"),
        })?;
        if netns_id == own_id {
            return Err(NetError::HostNetns { path: netns.into() });
        }
        for (i, p) in ports.iter().enumerate() {
            if let Some(ip) = p.host_ip {
                if ip.is_ipv6() {
                    return Err(NetError::PortUnsupported {
                        map: p.to_string(),
                        why: "the tinyo bridge network is IPv4-only; use an IPv4 host address",
                    });
                }
            }
            if ports[..i].iter().any(|q| q.clashes(p)) {
                return Err(NetError::PortUnsupported {
                    map: p.to_string(),
                    why: "host port published twice for this container",
                });
            }
        }
        if self.record_path(id).exists() {
            return Err(NetError::AlreadyAttached { id: id.into() });
        }

        self.reserve_ports(id, ports)?;
        let conflist = self.conflist();
        let mut last_result = None;
        let outcome = self.loopback_up(netns).and_then(|()| {
            let r = self.add_chain(id, &netns_str, &conflist, ports, &mut last_result)?;
            let a = attached_from_result(id, &conflist, r, netns_id, ports)?;
            self.install_rules(&a)?;
            self.write_record(&a)?;
            Ok(a)
        });
        match outcome {
            Ok(a) => Ok(a),
            Err(e) => {
                // Undo everything (CNI: DEL the whole list after a failed ADD); the first error
                // is the one worth reporting, cleanup errors are secondary.
                if !ports.is_empty() {
                    let _ = self.remove_rules(id);
                }
                let _ = self.del_chain(id, &netns_str, &conflist, ports, last_result.as_ref());
                let _ = self.release_ports(id);
                let _ = remove_file_if_exists(&self.record_path(id));
                Err(e)
            }
        }
    }

    /// The shared rules (when missing) and the container's published ports, in one
    /// iptables-restore; `route_localnet` on the bridge when ports are published.
    fn install_rules(&self, a: &Attached) -> Result<(), NetError> {
        let _lock = self.lock("firewall.lock")?;
        let tools = self.iptables_tools();
        let mut tx = firewall::Transaction::default();
        tx.ensure_shared(&tools.save()?);
        tx.add_ports(&a.id, a.ip, &a.ports);
        tools.restore(&tx)?;
        if !a.ports.is_empty() {
            let knob = PathBuf::from(format!("/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet"));
            fs::write(&knob, "1").map_err(|source| NetError::State {
                action: "writing 1 to",
                path: knob,
                source,
            })?;
        }
        Ok(())
    }

    /// Removes container `id`'s published-port rules (whatever of them is there).
    fn remove_rules(&self, id: &str) -> Result<(), NetError> {
        let _lock = self.lock("firewall.lock")?;
        let tools = self.iptables_tools();
        let mine = tools.save()?.hostport_rules_of(id);
        let mut tx = firewall::Transaction::default();
        tx.delete_nat(&mine);
        tools.restore(&tx)
    }

    /// Undo [`Network::attach`]: CNI `DEL` in reverse order, masquerade cleanup, port release.
    /// `netns` is the container's netns if it may still exist; `None` (or a path that is gone or
    /// now names another netns) runs `DEL` with an empty `CNI_NETNS`. Idempotent.
    pub fn detach(
        &self,
        id: &str,
        netns: Option<&Path>,
        attached: &Attached,
    ) -> Result<(), NetError> {
        check_id(id)?;
        if attached.id != id {
            return Err(NetError::BadId {
                id: id.into(),
                why: "does not match the Attached record",
            });
        }
        let netns_str = match netns {
            Some(p) if NetnsId::of(p).ok() == Some(attached.netns) => netns_arg(p)?,
            _ => String::new(),
        };
        let mut first_err = None;
        if !attached.ports.is_empty() {
            first_err = self.remove_rules(id).err();
        }
        // As portmap did: a UDP client that keeps sending would keep its DNAT to this address.
        if attached.ports.iter().any(|p| p.proto == Proto::Udp) {
            if let Err(source) = conntrack::forget(attached.ip) {
                first_err.get_or_insert(NetError::Conntrack {
                    ip: attached.ip,
                    source,
                });
            }
        }
        if let Err(e) = self.del_chain(
            id,
            &netns_str,
            &attached.conflist,
            &attached.ports,
            Some(&attached.result),
        ) {
            first_err.get_or_insert(e);
        }
        if legacy_masquerade(&attached.conflist) {
            if let Err(e) = self.remove_masquerade(id) {
                first_err.get_or_insert(e);
            }
        }
        if first_err.is_none() {
            // Keep the reservations and the record while anything is left, so a retry is possible.
            self.release_ports(id)?;
            remove_file_if_exists(&self.record_path(id))?;
        }
        first_err.map_or(Ok(()), Err)
    }

    // ----- CNI execution -------------------------------------------------------------------

    /// Runs the conflist's `ADD` chain; on error `last` holds the latest result obtained.
    fn add_chain(
        &self,
        id: &str,
        netns: &str,
        conflist: &Value,
        ports: &[PortMap],
        last: &mut Option<Value>,
    ) -> Result<Value, NetError> {
        for plugin in plugins_of(conflist) {
            let conf = plugin_conf(conflist, plugin, ports, last.as_ref());
            let ty = plugin_type(plugin);
            let r = self.exec_plugin(&ty, "ADD", id, netns, CONTAINER_IFNAME, &conf)?;
            match r {
                Some(v) if v.is_object() => *last = Some(v),
                _ => {
                    return Err(NetError::PluginOutput {
                        plugin: ty,
                        command: "ADD",
                        why: "no result JSON on stdout".into(),
                        stderr: String::new(),
                    })
                }
            }
        }
        last.clone().ok_or_else(|| NetError::PluginOutput {
            plugin: "(conflist)".into(),
            command: "ADD",
            why: "the conflist has no plugins".into(),
            stderr: String::new(),
        })
    }

    /// Runs `DEL` for every plugin in reverse order, all of them even if one fails.
    fn del_chain(
        &self,
        id: &str,
        netns: &str,
        conflist: &Value,
        ports: &[PortMap],
        prev: Option<&Value>,
    ) -> Result<(), NetError> {
        let mut first_err = None;
        for plugin in plugins_of(conflist).iter().rev() {
            let conf = plugin_conf(conflist, plugin, ports, prev);
            if let Err(e) = self.exec_plugin(
                &plugin_type(plugin),
                "DEL",
                id,
                netns,
                CONTAINER_IFNAME,
                &conf,
            ) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Invokes one plugin the CNI way; returns its stdout JSON (if any) on success.
    fn exec_plugin(
        &self,
        plugin: &str,
        command: &'static str,
        id: &str,
        netns: &str,
        ifname: &str,
        conf: &Value,
    ) -> Result<Option<Value>, NetError> {
        let bin = self.plugin_dir.join(plugin);
        let spawn_err = |source| NetError::PluginSpawn {
            plugin: plugin.into(),
            command,
            source,
        };
        let mut child = Command::new(&bin)
            .env_clear()
            .env("PATH", &self.path)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.plugin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        let input = serde_json::to_vec(conf).expect("serialising a JSON value cannot fail");
        if let Some(mut stdin) = child.stdin.take() {
            // A plugin that exits early closes the pipe (EPIPE): its exit status tells why.
            let _ = stdin.write_all(&input);
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let parsed: Option<Value> = if stdout.trim().is_empty() {
            None
        } else {
            serde_json::from_str(&stdout).ok()
        };
        if out.status.success() {
            if parsed.is_none() && !stdout.trim().is_empty() {
                return Err(NetError::PluginOutput {
                    plugin: plugin.into(),
                    command,
                    why: format!("stdout is not JSON: {}", stdout.trim()),
                    stderr,
                });
            }
            return Ok(parsed);
        }
        match parsed {
            Some(v) if v.get("msg").is_some() => Err(NetError::Plugin {
                plugin: plugin.into(),
                command,
                code: v.get("code").and_then(Value::as_u64).unwrap_or(0),
                msg: v["msg"].as_str().unwrap_or_default().to_owned(),
                details: v
                    .get("details")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            }),
            _ => Err(NetError::PluginOutput {
                plugin: plugin.into(),
                command,
                why: format!(
                    "exited with {} without an error JSON (stdout: {})",
                    out.status,
                    stdout.trim()
                ),
                stderr,
            }),
        }
    }

    // ----- masquerade cleanup ----------------------------------------------------------------

    /// (Records of earlier versions, whose bridge plugin ran with `ipMasq`.) Removes the bridge
    /// plugin's per-container masquerade rule and chain (`nat POSTROUTING -s
    /// IP -j CNI-<hash>` with comment `name: "tinyo" id: "<id>"`). bridge 1.1.1 only removes them
    /// on `DEL` when it can enter the netns and find `eth0`; without a netns they would leak.
    fn remove_masquerade(&self, id: &str) -> Result<(), NetError> {
        let comment = format!("name: \"{NETWORK_NAME}\" id: \"{id}\"");
        let quoted = format!("--comment \"name: \\\"{NETWORK_NAME}\\\" id: \\\"{id}\\\"\"");
        let iptables = |args: &[&str]| iptables(&self.path, args);
        let listing = iptables(&["-t", "nat", "-S", "POSTROUTING"])?;
        for line in listing
            .lines()
            .filter(|l| l.starts_with("-A POSTROUTING ") && l.contains(&quoted))
        {
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |flag: &str| {
                words
                    .iter()
                    .position(|w| *w == flag)
                    .and_then(|i| words.get(i + 1))
            };
            let (Some(src), Some(chain)) =
                (after("-s"), words.last().filter(|_| after("-j").is_some()))
            else {
                continue;
            };
            if !chain.starts_with("CNI-")
                || !chain.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                continue;
            }
            iptables(&[
                "-t",
                "nat",
                "-D",
                "POSTROUTING",
                "-s",
                src,
                "-m",
                "comment",
                "--comment",
                &comment,
                "-j",
                chain,
            ])?;
            if iptables(&["-t", "nat", "-S", chain]).is_ok() {
                iptables(&["-t", "nat", "-F", chain])?;
                iptables(&["-t", "nat", "-X", chain])?;
            }
        }
        Ok(())
    }

    // ----- port reservations ----------------------------------------------------------------

    /// Checks `ports` against other tinyo containers' reservations and the host's sockets, then
    /// records them for `id` (all under the reservation lock).
    fn reserve_ports(&self, id: &str, ports: &[PortMap]) -> Result<(), NetError> {
        if ports.is_empty() {
            return Ok(());
        }
        let _lock = self.lock_ports()?;
        let mut all = self.read_reservations()?;
        for p in ports {
            if let Some(r) = all.iter().find(|r| r.port.clashes(p)) {
                let by = if r.id == id {
                    format!("this container ({}; detach it first)", r.port)
                } else {
                    format!("tinyo container {} ({})", r.id, r.port)
                };
                return Err(NetError::PortInUse {
                    port: p.host_port,
                    by,
                });
            }
            host_port_free(p)?;
        }
        all.extend(ports.iter().map(|&port| Reservation {
            id: id.into(),
            port,
        }));
        self.write_reservations(&all)
    }

    fn release_ports(&self, id: &str) -> Result<(), NetError> {
        let path = self.state_dir().join("ports.json");
        if !path.exists() {
            return Ok(());
        }
        let _lock = self.lock_ports()?;
        let mut all = self.read_reservations()?;
        let before = all.len();
        all.retain(|r| r.id != id);
        if all.len() != before {
            self.write_reservations(&all)?;
        }
        Ok(())
    }

    fn lock_ports(&self) -> Result<fs::File, NetError> {
        self.lock("ports.lock")
    }

    /// Takes the exclusive `flock` on `root/net/NAME` (released when the file is dropped).
    fn lock(&self, name: &str) -> Result<fs::File, NetError> {
        let dir = self.state_dir();
        fs::create_dir_all(&dir).map_err(|source| NetError::State {
            action: "creating",
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(name);
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| NetError::State {
                action: "opening",
                path: path.clone(),
                source,
            })?;
        loop {
            // SAFETY: flock on a descriptor we own (kept open by `f` for the call's duration).
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(f); // the lock is released when the file is closed
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(NetError::State {
                    action: "locking",
                    path,
                    source: e,
                });
            }
        }
    }

    fn read_reservations(&self) -> Result<Vec<Reservation>, NetError> {
        let path = self.state_dir().join("ports.json");
        match fs::read(&path) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|source| NetError::StateCorrupt { path, source })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(NetError::State {
                action: "reading",
                path,
                source,
            }),
        }
    }

    fn write_reservations(&self, all: &[Reservation]) -> Result<(), NetError> {
        let bytes = serde_json::to_vec_pretty(all).expect("serialising reservations cannot fail");
        write_atomic(&self.state_dir().join("ports.json"), &bytes)
    }

    fn write_record(&self, a: &Attached) -> Result<(), NetError> {
        let path = self.record_path(&a.id);
        let dir = path.parent().expect("record path has a parent");
        fs::create_dir_all(dir).map_err(|source| NetError::State {
            action: "creating",
            path: dir.into(),
            source,
        })?;
        let bytes = serde_json::to_vec_pretty(a).expect("serialising Attached cannot fail");
        write_atomic(&path, &bytes)
    }
}

/// Fails with `PortInUse` if something on the host (our netns) is bound to the port.
fn host_port_free(p: &PortMap) -> Result<(), NetError> {
    let ip = p.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let addr = SocketAddr::new(ip, p.host_port);
    let res = match p.proto {
        Proto::Tcp => TcpListener::bind(addr).map(drop),
        Proto::Udp => UdpSocket::bind(addr).map(drop),
    };
    match res {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => Err(NetError::PortInUse {
            port: p.host_port,
            by: format!("a socket on the host (binding {addr}/{}: {e})", p.proto),
        }),
        Err(source) => Err(NetError::PortCheck {
            port: p.host_port,
            addr,
            source,
        }),
    }
}

fn check_id(id: &str) -> Result<(), NetError> {
    let bad = |why| Err(NetError::BadId { id: id.into(), why });
    if id.is_empty() || id.len() > 128 {
        return bad("must be 1 to 128 characters");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        || !id.starts_with(|c: char| c.is_ascii_alphanumeric())
    {
        return bad(
            "only letters, digits, `_`, `.` and `-` are allowed, starting with a letter or digit",
        );
    }
    Ok(())
}

fn netns_arg(p: &Path) -> Result<String, NetError> {
    p.to_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| NetError::Netns {
            path: p.into(),
            why: "path is empty or not UTF-8".into(),
        })
}

fn plugins_of(conflist: &Value) -> Vec<&Value> {
    conflist["plugins"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn plugin_type(plugin: &Value) -> String {
    plugin["type"].as_str().unwrap_or("").to_owned()
}

/// One plugin's stdin: its conflist entry plus `cniVersion`, `name`, `prevResult` and the
/// `runtimeConfig` of the capabilities it declares.
fn plugin_conf(conflist: &Value, plugin: &Value, ports: &[PortMap], prev: Option<&Value>) -> Value {
    let mut conf = plugin.clone();
    conf["cniVersion"] = conflist["cniVersion"].clone();
    conf["name"] = conflist["name"].clone();
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    if plugin["capabilities"]["portMappings"] == Value::Bool(true) {
        conf["runtimeConfig"] =
            json!({ "portMappings": ports.iter().map(|p| p.to_cni()).collect::<Vec<_>>() });
    }
    conf
}

fn attached_from_result(
    id: &str,
    conflist: &Value,
    result: Value,
    netns: NetnsId,
    ports: &[PortMap],
) -> Result<Attached, NetError> {
    let bad = |why: String| NetError::PluginOutput {
        plugin: "bridge".into(),
        command: "ADD",
        why,
        stderr: String::new(),
    };
    let ifaces = result["interfaces"].as_array().cloned().unwrap_or_default();
    let name_of = |i: &Value| i["name"].as_str().unwrap_or("").to_owned();
    let sandboxed = |i: &Value| i["sandbox"].as_str().is_some_and(|s| !s.is_empty());
    let cidx = ifaces
        .iter()
        .position(|i| sandboxed(i) && name_of(i) == CONTAINER_IFNAME)
        .ok_or_else(|| {
            bad(format!(
                "no {CONTAINER_IFNAME} with a sandbox in the result: {result}"
            ))
        })?;
    let bridge = ifaces
        .iter()
        .find(|i| !sandboxed(i) && name_of(i) == BRIDGE)
        .map(name_of)
        .unwrap_or_default();
    let host_veth = ifaces
        .iter()
        .find(|i| !sandboxed(i) && name_of(i) != BRIDGE)
        .map(name_of)
        .unwrap_or_default();
    let mac = ifaces[cidx]["mac"].as_str().unwrap_or("").to_owned();
    let ipconf = result["ips"]
        .as_array()
        .and_then(|ips| {
            ips.iter().find(|ip| {
                ip["interface"].as_u64() == Some(cidx as u64)
                    && ip["address"].as_str().is_some_and(|a| a.contains('.'))
            })
        })
        .ok_or_else(|| {
            bad(format!(
                "no IPv4 address for {CONTAINER_IFNAME} in the result: {result}"
            ))
        })?;
    let addr = ipconf["address"].as_str().unwrap_or("");
    let (ip, prefix) = addr
        .split_once('/')
        .ok_or_else(|| bad(format!("address `{addr}` is not IP/prefix")))?;
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| bad(format!("address `{addr}` is not IPv4")))?;
    let prefix_len: u8 = prefix
        .parse()
        .map_err(|_| bad(format!("bad prefix in `{addr}`")))?;
    let gateway = match ipconf["gateway"].as_str() {
        Some(g) => g
            .parse()
            .map_err(|_| bad(format!("gateway `{g}` is not IPv4")))?,
        None => GATEWAY,
    };
    Ok(Attached {
        id: id.into(),
        conflist: conflist.clone(),
        result,
        netns,
        ifname: CONTAINER_IFNAME.into(),
        ip,
        prefix_len,
        gateway,
        mac,
        bridge,
        host_veth,
        ports: ports.to_vec(),
    })
}

fn system_path() -> String {
    match std::env::var("PATH") {
        Ok(p) if !p.is_empty() => format!("{p}:{SYSTEM_PATH}"),
        _ => SYSTEM_PATH.to_owned(),
    }
}

/// Does this (earlier versions') conflist have the bridge plugin masquerade per container?
fn legacy_masquerade(conflist: &Value) -> bool {
    plugins_of(conflist)
        .iter()
        .any(|p| plugin_type(p) == "bridge" && p["ipMasq"] == Value::Bool(true))
}

/// Runs `iptables -w ARGS` (found in `path`) and returns its stdout.
fn iptables(path: &str, args: &[&str]) -> Result<String, NetError> {
    let shown = args.join(" ");
    let out = Command::new("iptables")
        .env("PATH", path)
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetError::Iptables {
            args: shown.clone(),
            why: format!("cannot run iptables: {e}"),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetError::Iptables {
            args: shown,
            why: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NetError> {
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, bytes).map_err(|source| NetError::State {
        action: "writing",
        path: tmp.clone(),
        source,
    })?;
    fs::rename(&tmp, path).map_err(|source| NetError::State {
        action: "renaming into",
        path: path.into(),
        source,
    })
}

fn remove_file_if_exists(path: &Path) -> Result<(), NetError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetError::State {
            action: "removing",
            path: path.into(),
            source,
        }),
    }
}
