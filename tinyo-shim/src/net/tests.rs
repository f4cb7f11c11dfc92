//! Tests for the networking module. Everything that touches networking runs inside a network
//! namespace the test creates ([`in_test_netns`]: a fresh thread that `unshare(CLONE_NEWNET)`s,
//! the "host" of the test), with "containers" that are `unshare --net sleep` children of it. The
//! bridge, veths, iptables rules and sysctls therefore exist only there and vanish with it; the
//! IPAM/port state lives in a per-test temporary root.

use super::*;

use std::io::Read;
use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Child;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);

// ----- namespace helpers ----------------------------------------------------------------------

fn own_netns() -> NetnsId {
    NetnsId::of(Path::new("/proc/thread-self/ns/net")).expect("stat own netns")
}

/// Runs `f` on a new thread inside a new, private network namespace (with `lo` up).
fn in_test_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let h = std::thread::spawn(move || {
        let before = own_netns();
        // SAFETY: unshare(CLONE_NEWNET) only moves this thread into a new network namespace.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {}",
            io::Error::last_os_error()
        );
        assert_ne!(
            before,
            own_netns(),
            "still in the original network namespace"
        );
        sh("ip", &["link", "set", "lo", "up"]);
        f()
    });
    h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Runs `f` on a scoped thread that has entered the netns at `path`.
fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = fs::File::open(path).expect("open netns");
            // SAFETY: setns on a descriptor we own; affects only this scoped thread.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "setns({}): {}",
                path.display(),
                io::Error::last_os_error()
            );
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// A "container": a process in its own netns, killed on drop.
struct Ctr {
    child: Child,
    netns: PathBuf,
}

impl Ctr {
    fn new() -> Ctr {
        let outer = own_netns();
        let child = Command::new("unshare")
            .args(["--net", "sleep", "600"])
            .spawn()
            .expect("spawn unshare");
        let netns = PathBuf::from(format!("/proc/{}/ns/net", child.id()));
        let c = Ctr { child, netns };
        for _ in 0..500 {
            if NetnsId::of(&c.netns).is_ok_and(|id| id != outer) {
                return c;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("container process never got its own netns");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        self.kill();
    }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `ip -j ARGS`, in the container netns if given, else in the test (outer) netns.
fn ip_json(netns: Option<&Path>, args: &[&str]) -> Value {
    let out = match netns {
        Some(p) => {
            let mut a = vec![
                "--net=".to_owned() + p.to_str().unwrap(),
                "ip".into(),
                "-j".into(),
            ];
            a.extend(args.iter().map(|s| s.to_string()));
            sh("nsenter", &a.iter().map(String::as_str).collect::<Vec<_>>())
        }
        None => sh("ip", &[&["-j"], args].concat()),
    };
    if out.trim().is_empty() {
        return json!([]);
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip -j {args:?}: {e}: {out}"))
}

/// Does link `name` exist (in the container netns if given, else in the test netns)?
fn has_link(netns: Option<&Path>, name: &str) -> bool {
    let mut cmd = match netns {
        Some(p) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", p.display())).arg("ip");
            c
        }
        None => Command::new("ip"),
    };
    let out = cmd
        .args(["link", "show", "dev", name])
        .output()
        .expect("run ip");
    out.status.success()
}

fn veth_count() -> usize {
    ip_json(None, &["link", "show", "type", "veth"])
        .as_array()
        .unwrap()
        .len()
}

/// iptables-save of the test netns with packet counters removed.
fn rules() -> String {
    sh("iptables-save", &[])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.find(" [") {
            Some(i) if l.starts_with(':') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Lines of iptables-save/nft that belong to this container (its IP or its id).
fn rules_of(ip: Ipv4Addr, id: &str) -> Vec<String> {
    let nft = sh("nft", &["list", "ruleset"]);
    let ipt = rules();
    let needles = [
        format!("{ip}/"),
        format!("{ip}:"),
        format!("{ip} "),
        format!("id: \\\"{id}\\\""),
        format!("\"tinyo:{id}\""),
    ];
    ipt.lines()
        .chain(nft.lines())
        .filter(|l| needles.iter().any(|n| l.contains(n.as_str())) || l.ends_with(&ip.to_string()))
        .map(str::to_owned)
        .collect()
}

fn leases(net: &Network) -> Vec<String> {
    let dir = net.state_dir().join("ipam").join(NETWORK_NAME);
    let mut v: Vec<String> = match fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.parse::<Ipv4Addr>().is_ok())
            .collect(),
        Err(_) => vec![],
    };
    v.sort();
    v
}

fn net_in(dir: &tempfile::TempDir) -> Network {
    Network::with_plugin_dir(dir.path(), DEFAULT_PLUGIN_DIR).expect("CNI plugins installed")
}

fn tcp_roundtrip(listener: &TcpListener, connect_from: Option<&Path>, to: SocketAddr) {
    let mut conn = match connect_from {
        Some(ns) => in_netns(ns, || TcpStream::connect_timeout(&to, TIMEOUT)),
        None => TcpStream::connect_timeout(&to, TIMEOUT),
    }
    .unwrap_or_else(|e| panic!("connect {to}: {e}"));
    conn.write_all(b"ping").unwrap();
    listener.set_nonblocking(false).unwrap();
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping", "data through {to}");
}

fn listen_in(ns: &Path, port: u16) -> TcpListener {
    in_netns(ns, || {
        TcpListener::bind(("0.0.0.0", port)).expect("listen in container")
    })
}

// ----- pure tests ----------------------------------------------------------------------------

#[test]
fn net_mode_from_str() {
    assert_eq!("none".parse::<Mode>().unwrap(), Mode::None);
    assert_eq!("host".parse::<Mode>().unwrap(), Mode::Host);
    assert_eq!("bridge".parse::<Mode>().unwrap(), Mode::Bridge);
    let e = "Bridge".parse::<Mode>().unwrap_err().to_string();
    assert!(
        e.contains("`Bridge`") && e.contains("none, host or bridge"),
        "{e}"
    );
}

#[test]
fn net_parse_port_cases() {
    let p = parse_port("8080:80").unwrap();
    assert_eq!(
        p,
        PortMap {
            host_ip: None,
            host_port: 8080,
            container_port: 80,
            proto: Proto::Tcp
        }
    );
    let p = parse_port("127.0.0.1:8080:80").unwrap();
    assert_eq!(p.host_ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(
        (p.host_port, p.container_port, p.proto),
        (8080, 80, Proto::Tcp)
    );
    let p = parse_port("5353:53/udp").unwrap();
    assert_eq!(
        (p.host_ip, p.host_port, p.container_port, p.proto),
        (None, 5353, 53, Proto::Udp)
    );
    assert_eq!(parse_port("1:65535/tcp").unwrap().container_port, 65535);
    let p = parse_port("[::1]:80:8080/udp").unwrap();
    assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
    assert_eq!(p.to_string(), "[::1]:80:8080/udp");
    assert_eq!(
        parse_port("10.0.0.1:1:2").unwrap().to_string(),
        "10.0.0.1:1:2/tcp"
    );

    for (bad, why) in [
        ("80", "missing container port"),
        ("0:80", "host port `0`"),
        ("80:0", "container port `0`"),
        ("65536:80", "host port `65536`"),
        ("80:x", "container port `x`"),
        ("80:80/sctp", "unknown protocol `sctp`"),
        ("foo:80:80", "`foo` is not an IPv4 address"),
        ("1.2.3.4:5:6:7", "wrong number"),
        (":80", "host port ``"),
        ("+80:80", "host port `+80`"),
        ("[::1:80:80", "unterminated"),
        ("", "missing container port"),
    ] {
        let e = parse_port(bad).unwrap_err().to_string();
        assert!(e.contains(why), "{bad:?}: {e}");
        assert!(
            e.contains(&format!("`{bad}`")) && !e.contains('\n'),
            "{bad:?}: {e}"
        );
    }
}

#[test]
fn net_missing_plugin_names_package() {
    let dir = tempfile::tempdir().unwrap();
    let e = Network::with_plugin_dir(dir.path(), dir.path()).unwrap_err();
    assert!(matches!(e, NetError::PluginMissing { .. }), "{e:?}");
    let s = e.to_string();
    assert!(
        s.contains("`bridge`") && s.contains("containernetworking-plugins"),
        "{s}"
    );
}

#[test]
fn net_bad_container_id_refused() {
    let dir = tempfile::tempdir().unwrap();
    let net = net_in(&dir);
    for id in ["", "../x", "a b", "-x"] {
        assert!(
            matches!(net.attached(id), Err(NetError::BadId { .. })),
            "{id:?}"
        );
    }
}

// ----- namespace tests -----------------------------------------------------------------------

#[test]
fn net_loopback_up_only() {
    in_test_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        let net = net_in(&dir);
        let c = Ctr::new();
        let lo = &ip_json(Some(&c.netns), &["link", "show", "lo"])[0];
        assert!(
            !lo["flags"].as_array().unwrap().contains(&json!("UP")),
            "lo starts down"
        );
        net.loopback_up(&c.netns).unwrap();
        let links = ip_json(Some(&c.netns), &["link", "show"]);
        assert_eq!(links.as_array().unwrap().len(), 1, "only lo: {links}");
        assert!(
            links[0]["flags"].as_array().unwrap().contains(&json!("UP")),
            "{links}"
        );
        // It is usable: a TCP round trip over 127.0.0.1 inside the container.
        let l = listen_in(&c.netns, 9000);
        tcp_roundtrip(&l, Some(&c.netns), "127.0.0.1:9000".parse().unwrap());
        assert_eq!(veth_count(), 0);
    });
}

#[test]
fn net_attach_refuses_own_netns() {
    in_test_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        let net = net_in(&dir);
        let e = net
            .attach("selfie", Path::new("/proc/thread-self/ns/net"), &[])
            .unwrap_err();
        assert!(matches!(e, NetError::HostNetns { .. }), "{e:?}");
        assert_eq!(veth_count(), 0);
        assert!(!has_link(None, BRIDGE));
    });
}

#[test]
fn net_attach_gives_address_route_lo_and_gateway() {
    in_test_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        let net = net_in(&dir);
        let c = Ctr::new();
        let a = net.attach("c1", &c.netns, &[]).unwrap();
        assert_eq!(
            (a.prefix_len, a.gateway, a.ifname.as_str()),
            (24, GATEWAY, "eth0")
        );
        assert_eq!(&a.ip.octets()[..3], &[10, 89, 0], "{}", a.ip);
        assert_eq!(a.bridge, BRIDGE);
        assert!(a.host_veth.starts_with("veth"), "{}", a.host_veth);

        let eth0 = &ip_json(Some(&c.netns), &["addr", "show", "dev", "eth0"])[0];
        assert_eq!(eth0["address"], json!(a.mac));
        let inet: Vec<&Value> = eth0["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["family"] == "inet")
            .collect();
        assert_eq!(inet.len(), 1, "{eth0}");
        assert_eq!(inet[0]["local"], json!(a.ip.to_string()));
        assert_eq!(inet[0]["prefixlen"], json!(24));
        let def = ip_json(Some(&c.netns), &["route", "show", "default"]);
        assert_eq!(def[0]["gateway"], json!("10.89.0.1"), "{def}");
        assert_eq!(def[0]["dev"], json!("eth0"), "{def}");
        let lo = &ip_json(Some(&c.netns), &["link", "show", "lo"])[0];
        assert!(
            lo["flags"].as_array().unwrap().contains(&json!("UP")),
            "{lo}"
        );

        // The gateway answers (container → host), and the host reaches the container.
        let gw = TcpListener::bind((GATEWAY, 7001)).expect("bind on the gateway address");
        tcp_roundtrip(&gw, Some(&c.netns), SocketAddr::from((GATEWAY, 7001)));
        let inside = listen_in(&c.netns, 7002);
        tcp_roundtrip(&inside, None, SocketAddr::from((a.ip, 7002)));

        // State: lease and record.
        assert_eq!(leases(&net), vec![a.ip.to_string()]);
        assert_eq!(net.attached("c1").unwrap().as_ref(), Some(&a));
        assert!(matches!(
            net.attach("c1", &c.netns, &[]),
            Err(NetError::AlreadyAttached { .. })
        ));
        net.detach("c1", Some(&c.netns), &a).unwrap();
    });
}

#[test]
fn net_two_containers_reach_each_other() {
    in_test_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        let net = net_in(&dir);
        let (c1, c2) = (Ctr::new(), Ctr::new());
        let a1 = net.attach("one", &c1.netns, &[]).unwrap();
        let a2 = net.attach("two", &c2.netns, &[]).unwrap();
        let ids: Vec<String> = net.records().unwrap().into_iter().map(|a| a.id).collect();
        assert_eq!(ids, ["one", "two"]);
        assert_ne!(a1.ip, a2.ip);
        assert_ne!(a1.mac, a2.mac);
        assert_eq!(veth_count(), 2);
        let l2 = listen_in(&c2.netns, 7100);
        tcp_roundtrip(&l2, Some(&c1.netns), SocketAddr::from((a2.ip, 7100)));
        let l1 = listen_in(&c1.netns, 7101);
        tcp_roundtrip(&l1, Some(&c2.netns), SocketAddr::from((a1.ip, 7101)));
        net.detach("one", Some(&c1.netns), &a1).unwrap();
        net.detach("two", Some(&c2.netns), &a2).unwrap();
        assert_eq!(veth_count(), 0);
        assert!(leases(&net).is_empty());
    });
}

#[test]
fn net_published_ports_work() {
    in_test_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        let net = net_in(&dir);
        // A host whose firewall drops forwarded traffic by default: tinyo's own FORWARD rules
        // must let the hairpin below through.
        sh("iptables", &["-w", "-P", "FORWARD", "DROP"]);
        let c = Ctr::new();
        let ports = [
            parse_port("18080:80").unwrap(),
            parse_port("15353:53/udp").unwrap(),
            parse_port("127.0.0.1:18081:80").unwrap(),
        ];
        let a = net.attach("web", &c.netns, &ports).unwrap();
        assert_eq!(a.ports, ports);
        let l = listen_in(&c.netns, 80);
        // Host → gateway address:HOST → container:CTR.
        tcp_roundtrip(&l, None, SocketAddr::from((GATEWAY, 18080)));
        // Host → 127.0.0.1:HOST (route_localnet on the bridge + masquerade of local sources).
        tcp_roundtrip(&l, None, "127.0.0.1:18080".parse().unwrap());
        // A mapping bound to 127.0.0.1 answers there only.
        tcp_roundtrip(&l, None, "127.0.0.1:18081".parse().unwrap());
        assert!(
            TcpStream::connect_timeout(&SocketAddr::from((GATEWAY, 18081)), TIMEOUT).is_err(),
            "a 127.0.0.1-only mapping answered on the gateway address"
        );
        let rl =
            fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet")).unwrap();
        assert_eq!(rl.trim(), "1");
        // Another container → gateway:HOST (hairpin through the host).
        let c2 = Ctr::new();
        let a2 = net.attach("client", &c2.netns, &[]).unwrap();
        tcp_roundtrip(&l, Some(&c2.netns), SocketAddr::from((GATEWAY, 18080)));
        // UDP.
        let u = in_netns(&c.netns, || UdpSocket::bind("0.0.0.0:53").unwrap());
        u.set_read_timeout(Some(TIMEOUT)).unwrap();
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(b"dns?", (GATEWAY, 15353)).unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = u
            .recv_from(&mut buf)
            .expect("UDP datagram through the published port");
        assert_eq!(&buf[..n], b"dns?");
        assert!(
            conntrack::count(a.ip).unwrap() > 0,
            "the flows to {} are tracked",
            a.ip
        );

        // The reservation is recorded, with the owner.
        let res = fs::read_to_string(net.state_dir().join("ports.json")).unwrap();
        assert!(res.contains("\"web\"") && res.contains("18080"), "{res}");
        net.detach("client", Some(&c2.netns), &a2).unwrap();
        net.detach("web", Some(&c.netns), &a).unwrap();
        // The detached address has no conntrack entries left (a UDP sender would otherwise
        // keep its DNAT to it).
        assert_eq!(conntrack::count(a.ip).unwrap(), 0);
        // Unpublished: nothing answers on the host port any more.
        assert!(TcpStream::connect_timeout(&SocketAddr::from((GATEWAY, 18080)), TIMEOUT).is_err());
        assert_eq!(
            fs::read_to_string(net.state_dir().join("ports.json"))
                .unwrap()
                .trim(),
            "[]"
        );
    });
}

/// Asserts that nothing of container `id` exists (no veth beyond `veths`, no lease, no rules,
/// no reservation, no record).
fn assert_nothing_of(
    net: &Network,
    id: &str,
    veths: usize,
    leases_before: &[String],
    rules_before: &str,
) {
    assert_eq!(veth_count(), veths, "leftover veth of {id}");
    assert_eq!(leases(net), leases_before, "leftover lease of {id}");
    assert_eq!(rules(), rules_before, "leftover iptables rules of {id}");
    assert!(
        net.attached(id).unwrap().is_none(),
        "leftover record of {id}"
    );
    let res = fs::read_to_string(net.state_dir().join("ports.json")).unwrap_or_default();
    assert!(
        !res.contains(&format!("\"{id}\"")),
        "leftover reservation of {id}: {res}"
    );
}

#[test]
fn net_port_in_use_refused_without_leftovers() {
    in_test_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        let net = net_in(&dir);
        let (c1, c2) = (Ctr::new(), Ctr::new());
        let a1 = net
            .attach("first", &c1.netns, &[parse_port("18080:80").unwrap()])
            .unwrap();
        let (leases0, rules0) = (leases(&net), rules());

        // Same host port, another tinyo container (even with a specific host IP).
        for spec in ["18080:81", "127.0.0.1:18080:80"] {
            let e = net
                .attach("second", &c2.netns, &[parse_port(spec).unwrap()])
                .unwrap_err();
            match &e {
                NetError::PortInUse { port: 18080, by } => assert!(by.contains("first"), "{e}"),
                _ => panic!("{spec}: expected PortInUse, got {e:?}"),
            }
            assert_nothing_of(&net, "second", 1, &leases0, &rules0);
        }
        // Same number, other protocol: fine.
        let a2 = net
            .attach("second", &c2.netns, &[parse_port("18080:80/udp").unwrap()])
            .unwrap();
        net.detach("second", Some(&c2.netns), &a2).unwrap();

        // A listener of the host on 0.0.0.0 and on 127.0.0.1.
        let _h1 = TcpListener::bind("0.0.0.0:18081").unwrap();
        let _h2 = TcpListener::bind("127.0.0.1:18082").unwrap();
        let _h3 = UdpSocket::bind("0.0.0.0:18083").unwrap();
        let (leases0, rules0) = (leases(&net), rules());
        for (spec, port) in [
            ("18081:80", 18081),
            ("18082:80", 18082),
            ("18083:53/udp", 18083),
        ] {
            let ports = [parse_port("18090:90").unwrap(), parse_port(spec).unwrap()];
            let e = net.attach("second", &c2.netns, &ports).unwrap_err();
            match &e {
                NetError::PortInUse { port: p, by } if *p == port => {
                    assert!(by.contains("socket on the host"), "{e}")
                }
                _ => panic!("{spec}: expected PortInUse, got {e:?}"),
            }
            assert!(e.to_string().contains(&port.to_string()), "{e}");
            assert_nothing_of(&net, "second", 1, &leases0, &rules0);
        }
        net.detach("first", Some(&c1.netns), &a1).unwrap();
    });
}

#[test]
fn net_failure_midway_is_rolled_back() {
    in_test_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        // Real plugins and iptables-save, but an iptables-restore that fails after the bridge
        // plugin made the veth and took a lease.
        let tools = dir.path().join("tools");
        fs::create_dir(&tools).unwrap();
        let fake = tools.join("iptables-restore");
        fs::write(
            &fake,
            "#!/bin/sh\ncat >/dev/null\necho 'iptables-restore: injected failure by the test' >&2\nexit 4\n",
        )
        .unwrap();
        fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let net = Network::with_plugin_dir(dir.path().join("root"), DEFAULT_PLUGIN_DIR)
            .unwrap()
            .with_tools_first(&tools);
        let c = Ctr::new();
        let rules0 = rules();
        let e = net
            .attach("half", &c.netns, &[parse_port("18080:80").unwrap()])
            .unwrap_err();
        assert!(matches!(e, NetError::Iptables { .. }), "{e:?}");
        let s = e.to_string();
        assert!(
            s.contains("iptables-restore")
                && s.contains("injected failure by the test")
                && s.contains("TINYO-HOSTPORTS"),
            "names the tool, its message and the input: {s}"
        );
        // The bridge plugin's part was undone: no veth, no eth0, no lease, no rules.
        assert_nothing_of(&net, "half", 0, &[], &rules_after_shared(&rules0));
        assert!(!has_link(Some(&c.netns), "eth0"));
        assert!(leases(&net).is_empty());
    });
}

/// The shared chains and rules (TINYO-*, the localhost guard) stay once created; the expected
/// ruleset after a rollback is the original one plus those.
fn rules_after_shared(before: &str) -> String {
    let now = rules();
    for l in now.lines() {
        let shared =
            l.contains(LOCALNET_GUARD_COMMENT) || (l.contains("TINYO-") && !l.contains("\"tinyo:"));
        let frame =
            l.starts_with('*') || l == "COMMIT" || (l.starts_with(':') && l.ends_with("ACCEPT"));
        if frame {
            continue;
        }
        assert!(
            before.contains(l) || shared,
            "unexpected rule left: {l}\nall:\n{now}"
        );
    }
    now
}

#[test]
fn net_detach_removes_everything_and_is_idempotent() {
    in_test_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        let net = net_in(&dir);
        // A first container establishes the shared chains; its presence is the baseline.
        let c0 = Ctr::new();
        let a0 = net
            .attach("base", &c0.netns, &[parse_port("18000:80").unwrap()])
            .unwrap();
        let (rules0, leases0) = (rules(), leases(&net));

        let c = Ctr::new();
        let a = net
            .attach("gone", &c.netns, &[parse_port("18080:80").unwrap()])
            .unwrap();
        let during = rules_of(a.ip, "gone");
        assert!(
            during.iter().any(|l| l.contains(&format!("{}:80", a.ip))
                && l.contains("\"tinyo:gone\"")
                && l.contains("--dport 18080")),
            "no DNAT rule: {during:?}"
        );
        assert!(leases(&net).contains(&a.ip.to_string()));
        assert_eq!(veth_count(), 2);

        net.detach("gone", Some(&c.netns), &a).unwrap();
        assert!(
            rules_of(a.ip, "gone").is_empty(),
            "{:?}",
            rules_of(a.ip, "gone")
        );
        assert_nothing_of(&net, "gone", 1, &leases0, &rules0);
        assert!(!has_link(Some(&c.netns), "eth0"));
        // Twice is fine.
        net.detach("gone", Some(&c.netns), &a).unwrap();
        net.detach("gone", None, &a).unwrap();
        assert_nothing_of(&net, "gone", 1, &leases0, &rules0);
        // The port is free again for another container.
        let a2 = net
            .attach("again", &c.netns, &[parse_port("18080:80").unwrap()])
            .unwrap();
        net.detach("again", Some(&c.netns), &a2).unwrap();
        assert_nothing_of(&net, "again", 1, &leases0, &rules0);
        net.detach("base", Some(&c0.netns), &a0).unwrap();
        assert!(rules_of(a0.ip, "base").is_empty());
        assert!(leases(&net).is_empty());
    });
}

#[test]
fn net_detach_after_container_netns_is_gone() {
    in_test_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        let net = net_in(&dir);
        let rules_empty = rules();
        let mut c = Ctr::new();
        let a = net
            .attach("exited", &c.netns, &[parse_port("18080:80").unwrap()])
            .unwrap();
        assert!(!rules_of(a.ip, "exited").is_empty());
        let path = c.netns.clone();
        c.kill(); // the container exits: its netns and the veth pair disappear
        assert!(!path.exists());
        // The kernel dismantles a dead netns (and with it the veth pair) asynchronously.
        for _ in 0..500 {
            if veth_count() == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(veth_count(), 0);
        // Lease and rules are still there until detach.
        assert_eq!(leases(&net), vec![a.ip.to_string()]);
        assert!(!rules_of(a.ip, "exited").is_empty());

        net.detach("exited", Some(&path), &a).unwrap();
        assert!(
            rules_of(a.ip, "exited").is_empty(),
            "{:?}",
            rules_of(a.ip, "exited")
        );
        assert!(leases(&net).is_empty());
        // Only shared chains (no per-container chain) remain.
        let frame = |l: &str| l.starts_with('*') || l == "COMMIT" || l.starts_with(':');
        for l in rules()
            .lines()
            .filter(|l| !rules_empty.contains(*l) && !frame(l))
        {
            assert!(
                ["TINYO-", LOCALNET_GUARD_COMMENT]
                    .iter()
                    .any(|s| l.contains(s))
                    && (!l.contains("\"tinyo:") || l.contains(LOCALNET_GUARD_COMMENT)),
                "per-container leftover: {l}"
            );
        }
        net.detach("exited", None, &a).unwrap();
        assert!(net.attached("exited").unwrap().is_none());
    });
}

#[test]
fn net_detach_ignores_a_reused_netns_path() {
    in_test_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        let net = net_in(&dir);
        let (mut c1, c2) = (Ctr::new(), Ctr::new());
        let a1 = net.attach("old", &c1.netns, &[]).unwrap();
        let a2 = net.attach("new", &c2.netns, &[]).unwrap();
        c1.kill();
        // As if /proc/<pid> of the exited container now belonged to another process: detach must
        // not touch that netns's eth0.
        net.detach("old", Some(&c2.netns), &a1).unwrap();
        let eth0 = ip_json(Some(&c2.netns), &["addr", "show", "dev", "eth0"]);
        assert_eq!(
            eth0[0]["addr_info"][0]["local"],
            json!(a2.ip.to_string()),
            "{eth0}"
        );
        assert_eq!(leases(&net), vec![a2.ip.to_string()]);
        net.detach("new", Some(&c2.netns), &a2).unwrap();
    });
}

#[test]
fn net_containers_cannot_reach_host_localhost() {
    in_test_netns(|| {
        let dir = tempfile::tempdir().unwrap();
        let net = net_in(&dir);
        let c = Ctr::new();
        // Publishing a port sets route_localnet=1 on the bridge.
        let a = net
            .attach("sneaky", &c.netns, &[parse_port("18080:80").unwrap()])
            .unwrap();
        let secret = TcpListener::bind("127.0.0.1:7777").unwrap(); // a localhost-only host service
        secret.set_nonblocking(true).unwrap();
        // The container routes 127.0.0.1 to the host through eth0 (what a raw-socket attacker
        // could do without any route; here root in the test sets it up).
        let ns = format!("--net={}", c.netns.display());
        sh("nsenter", &[&ns, "ip", "addr", "flush", "dev", "lo"]);
        sh(
            "nsenter",
            &[&ns, "sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1"],
        );
        sh(
            "nsenter",
            &[
                &ns,
                "ip",
                "route",
                "add",
                "127.0.0.1/32",
                "via",
                "10.89.0.1",
                "dev",
                "eth0",
            ],
        );
        let got = in_netns(&c.netns, || {
            TcpStream::connect_timeout(&"127.0.0.1:7777".parse().unwrap(), Duration::from_secs(1))
        });
        assert!(
            got.is_err(),
            "a container reached the host's 127.0.0.1:7777"
        );
        assert!(
            secret.accept().is_err(),
            "the localhost-only service accepted a container"
        );
        // Published ports on 127.0.0.1 still work from the host.
        let l = listen_in(&c.netns, 80);
        tcp_roundtrip(&l, None, "127.0.0.1:18080".parse().unwrap());
        net.detach("sneaky", Some(&c.netns), &a).unwrap();
    });
}
