//! Packet filtering and NAT of the bridge network, done by tinyo itself in one
//! `iptables-restore --noflush` transaction instead of the CNI `firewall` and `portmap` plugins
//! and the bridge plugin's masquerade (which together ran about a dozen `iptables` processes
//! per container, ≈ 45 ms of a pod's start on a 2-core host).
//!
//! # Rules
//! Shared by every container of the bridge, installed once and kept (like `docker0`'s rules):
//! - `filter FORWARD` → `TINYO-FORWARD`: accept what leaves the bridge's containers and what
//!   reaches them as a reply or through a published port (conntrack `DNAT`), which matters on
//!   hosts whose `FORWARD` policy is `DROP`.
//! - `filter INPUT`: the localhost guard ([`LOCALNET_GUARD_COMMENT`], see below).
//! - `nat POSTROUTING` → `TINYO-POSTROUTING`: masquerade the subnet's traffic leaving through
//!   another interface; masquerade host-local sources (`127.0.0.1:HOST`) entering the bridge;
//!   masquerade DNAT'd traffic between the bridge's own addresses (hairpin: a container
//!   reaching a published port, its own included, through the host).
//! - `nat PREROUTING`/`OUTPUT` (destination type `LOCAL`) → `TINYO-HOSTPORTS`.
//!
//! Per container, only its published ports: one `DNAT` rule per port in `TINYO-HOSTPORTS`,
//! commented `tinyo:<id>` so detach finds exactly them.
//!
//! # Why the localhost guard
//! Reaching a container through `127.0.0.1:HOST` needs `route_localnet=1` on the bridge, so the
//! host would also accept packets that a container (CAP_NET_RAW is in the default set) addresses
//! to 127.0.0.0/8 through its veth, reaching services bound to localhost only (the
//! CVE-2020-8558 class). Like kube-proxy, new such connections from the bridge are dropped;
//! replies of the host's own connections to published ports are ESTABLISHED and pass.
//!
//! # Cost
//! Attach: one `iptables-save` (what is already there) and, when anything is missing or ports
//! are published, one `iptables-restore`. Detach: nothing without ports; else save + restore.
//! All of it under `root/net/firewall.lock` so concurrent attaches never insert a shared rule
//! twice.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};

use super::{NetError, PortMap, BRIDGE, SUBNET};

/// Comment of the localhost guard rule (see the module docs).
pub const LOCALNET_GUARD_COMMENT: &str = "tinyo: block containers from host 127.0.0.0/8";
/// Chain of the containers' forwarding rules (filter table).
pub const CHAIN_FORWARD: &str = "TINYO-FORWARD";
/// Chain of the source NAT rules (nat table).
pub const CHAIN_POSTROUTING: &str = "TINYO-POSTROUTING";
/// Chain of the published ports' DNAT rules (nat table).
pub const CHAIN_HOSTPORTS: &str = "TINYO-HOSTPORTS";

/// The rules of a shared chain, in `iptables-save`'s canonical form (so presence is an exact
/// line match).
fn forward_rules() -> Vec<String> {
    vec![
        format!(
            "-A {CHAIN_FORWARD} -o {BRIDGE} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT"
        ),
        format!("-A {CHAIN_FORWARD} -i {BRIDGE} -j ACCEPT"),
    ]
}

fn postrouting_rules() -> Vec<String> {
    vec![
        format!("-A {CHAIN_POSTROUTING} -s {SUBNET} ! -o {BRIDGE} -j MASQUERADE"),
        format!("-A {CHAIN_POSTROUTING} -s 127.0.0.0/8 -o {BRIDGE} -j MASQUERADE"),
        format!(
            "-A {CHAIN_POSTROUTING} -s {SUBNET} -o {BRIDGE} -m conntrack --ctstate DNAT -j MASQUERADE"
        ),
    ]
}

fn guard_rule() -> String {
    format!(
        "-d 127.0.0.0/8 -i {BRIDGE} -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT \
         -m comment --comment \"{LOCALNET_GUARD_COMMENT}\" -j DROP"
    )
}

/// The `DNAT` rule of one published port of container `id` at `ip` (canonical form, without
/// the leading `-A CHAIN`).
pub fn dnat_rule(id: &str, ip: Ipv4Addr, p: &PortMap) -> String {
    let dst = match p.host_ip {
        Some(IpAddr::V4(h)) if !h.is_unspecified() => format!("-d {h}/32 "),
        _ => String::new(),
    };
    let proto = p.proto.as_str();
    format!(
        "{dst}-p {proto} -m {proto} --dport {} -m comment --comment \"tinyo:{id}\" \
         -j DNAT --to-destination {ip}:{}",
        p.host_port, p.container_port
    )
}

/// One table of an `iptables-save` listing: its chains and its `-A` lines.
#[derive(Debug, Default)]
struct Table {
    chains: Vec<String>,
    rules: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Ruleset {
    filter: Table,
    nat: Table,
}

impl Ruleset {
    /// Parses `iptables-save` output (only the filter and nat tables matter here).
    pub fn parse(text: &str) -> Ruleset {
        let mut rs = Ruleset::default();
        let mut cur: Option<&mut Table> = None;
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('*') {
                cur = match name.trim() {
                    "filter" => Some(&mut rs.filter),
                    "nat" => Some(&mut rs.nat),
                    _ => None,
                };
                continue;
            }
            let Some(t) = cur.as_deref_mut() else {
                continue;
            };
            if let Some(decl) = line.strip_prefix(':') {
                if let Some(name) = decl.split_whitespace().next() {
                    t.chains.push(name.to_owned());
                }
            } else if line.starts_with("-A ") {
                t.rules.push(line.to_owned());
            }
        }
        rs
    }

    fn chain_rules<'a>(t: &'a Table, chain: &str) -> impl Iterator<Item = &'a String> + 'a {
        let prefix = format!("-A {chain} ");
        t.rules.iter().filter(move |r| r.starts_with(&prefix))
    }

    /// The `-A` lines of container `id` in `TINYO-HOSTPORTS`.
    pub fn hostport_rules_of(&self, id: &str) -> Vec<String> {
        let tag = format!("--comment \"tinyo:{id}\" ");
        Ruleset::chain_rules(&self.nat, CHAIN_HOSTPORTS)
            .filter(|r| r.contains(&tag))
            .cloned()
            .collect()
    }
}

/// An `iptables-restore` input under construction (filter and nat parts).
#[derive(Debug, Default)]
pub struct Transaction {
    filter: Vec<String>,
    nat: Vec<String>,
}

impl Transaction {
    pub fn is_empty(&self) -> bool {
        self.filter.is_empty() && self.nat.is_empty()
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for (name, lines) in [("filter", &self.filter), ("nat", &self.nat)] {
            if lines.is_empty() {
                continue;
            }
            s.push('*');
            s.push_str(name);
            s.push('\n');
            for l in lines {
                s.push_str(l);
                s.push('\n');
            }
            s.push_str("COMMIT\n");
        }
        s
    }

    /// Adds whatever of the shared rules `rs` lacks.
    pub fn ensure_shared(&mut self, rs: &Ruleset) {
        // A shared chain of fixed content is declared (which creates it, or flushes it) and
        // refilled whenever it differs from what it should hold.
        let fixed = |tx: &mut Vec<String>, t: &Table, chain: &str, want: Vec<String>| {
            let have: Vec<&String> = Ruleset::chain_rules(t, chain).collect();
            let same = t.chains.iter().any(|c| c == chain)
                && have.len() == want.len()
                && want.iter().all(|w| have.contains(&w));
            if !same {
                tx.push(format!(":{chain} - [0:0]"));
                tx.extend(want);
            }
        };
        fixed(&mut self.filter, &rs.filter, CHAIN_FORWARD, forward_rules());
        fixed(
            &mut self.nat,
            &rs.nat,
            CHAIN_POSTROUTING,
            postrouting_rules(),
        );
        // TINYO-HOSTPORTS holds other containers' rules: created when missing, never flushed.
        if !rs.nat.chains.iter().any(|c| c == CHAIN_HOSTPORTS) {
            self.nat.push(format!(":{CHAIN_HOSTPORTS} - [0:0]"));
        }
        let has = |t: &Table, line: &str| t.rules.iter().any(|r| r == line);
        // Jumps go first in FORWARD/INPUT, before any DROP of the host's own firewall.
        if !has(&rs.filter, &format!("-A FORWARD -j {CHAIN_FORWARD}")) {
            self.filter.push(format!("-I FORWARD 1 -j {CHAIN_FORWARD}"));
        }
        if !has(&rs.filter, &format!("-A INPUT {}", guard_rule())) {
            self.filter.push(format!("-I INPUT 1 {}", guard_rule()));
        }
        for chain in ["PREROUTING", "OUTPUT"] {
            let jump = format!("-m addrtype --dst-type LOCAL -j {CHAIN_HOSTPORTS}");
            if !has(&rs.nat, &format!("-A {chain} {jump}")) {
                self.nat.push(format!("-A {chain} {jump}"));
            }
        }
        if !has(&rs.nat, &format!("-A POSTROUTING -j {CHAIN_POSTROUTING}")) {
            self.nat
                .push(format!("-A POSTROUTING -j {CHAIN_POSTROUTING}"));
        }
    }

    /// Publishes `ports` of container `id` at `ip`.
    pub fn add_ports(&mut self, id: &str, ip: Ipv4Addr, ports: &[PortMap]) {
        for p in ports {
            self.nat
                .push(format!("-A {CHAIN_HOSTPORTS} {}", dnat_rule(id, ip, p)));
        }
    }

    /// Deletes the listed `-A` lines (as printed by `iptables-save`) from the nat table.
    pub fn delete_nat(&mut self, lines: &[String]) {
        for l in lines {
            if let Some(rest) = l.strip_prefix("-A ") {
                self.nat.push(format!("-D {rest}"));
            }
        }
    }
}

/// Runs the iptables tools; `path` is the PATH they are looked up in.
#[derive(Debug, Clone)]
pub struct Iptables {
    pub path: String,
}

impl Iptables {
    /// `iptables-save` (one process for all tables; only filter and nat are kept).
    pub fn save(&self) -> Result<Ruleset, NetError> {
        Ok(Ruleset::parse(&self.run("iptables-save", &[], None)?))
    }

    /// `iptables-restore --noflush`: all of `tx` or nothing (the kernel commits each table's
    /// part atomically; a syntax or lookup error rejects the whole input before any commit).
    pub fn restore(&self, tx: &Transaction) -> Result<(), NetError> {
        if tx.is_empty() {
            return Ok(());
        }
        self.run(
            "iptables-restore",
            &["-w", "--noflush"],
            Some(tx.render().as_bytes()),
        )
        .map(drop)
    }

    fn run(&self, tool: &str, args: &[&str], input: Option<&[u8]>) -> Result<String, NetError> {
        let shown = format!("{tool} {}", args.join(" "));
        let fail = |why: String| NetError::Iptables {
            args: shown.clone(),
            why,
        };
        let mut child = Command::new(tool)
            .env("PATH", &self.path)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run {tool} (install iptables): {e}")))?;
        if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
            // A tool that exits early closes the pipe (EPIPE): its exit status tells why.
            let _ = stdin.write_all(bytes);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| fail(format!("waiting for {tool}: {e}")))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let mut why = format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if let Some(bytes) = input {
            why.push_str(&format!("; input was:\n{}", String::from_utf8_lossy(bytes)));
        }
        Err(fail(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{parse_port, Proto};

    #[test]
    fn fw_shared_rules_are_added_once() {
        let mut tx = Transaction::default();
        tx.ensure_shared(&Ruleset::parse(""));
        let text = tx.render();
        assert!(text.contains(":TINYO-FORWARD - [0:0]\n"), "{text}");
        assert!(text.contains(":TINYO-HOSTPORTS - [0:0]\n"), "{text}");
        assert!(text.contains("-I FORWARD 1 -j TINYO-FORWARD\n"), "{text}");
        assert!(
            text.contains("-A PREROUTING -m addrtype --dst-type LOCAL -j TINYO-HOSTPORTS\n"),
            "{text}"
        );
        assert!(text.starts_with("*filter\n") && text.ends_with("COMMIT\n"));

        // What a save prints after that transaction: nothing is missing any more.
        let mut saved = String::from("*filter\n:INPUT ACCEPT [0:0]\n:TINYO-FORWARD - [0:0]\n");
        saved.push_str(&format!("-A INPUT {}\n", guard_rule()));
        saved.push_str("-A FORWARD -j TINYO-FORWARD\n");
        for r in forward_rules() {
            saved.push_str(&r);
            saved.push('\n');
        }
        saved.push_str("COMMIT\n*nat\n:TINYO-POSTROUTING - [0:0]\n:TINYO-HOSTPORTS - [0:0]\n");
        for r in postrouting_rules() {
            saved.push_str(&r);
            saved.push('\n');
        }
        saved.push_str("-A PREROUTING -m addrtype --dst-type LOCAL -j TINYO-HOSTPORTS\n");
        saved.push_str("-A OUTPUT -m addrtype --dst-type LOCAL -j TINYO-HOSTPORTS\n");
        saved.push_str("-A POSTROUTING -j TINYO-POSTROUTING\nCOMMIT\n");
        let mut again = Transaction::default();
        again.ensure_shared(&Ruleset::parse(&saved));
        assert!(again.is_empty(), "{}", again.render());

        // A shared chain that lost a rule is refilled; the hostports chain is never flushed.
        let damaged = saved.replace(&format!("{}\n", forward_rules()[1]), "");
        let mut fix = Transaction::default();
        fix.ensure_shared(&Ruleset::parse(&damaged));
        let text = fix.render();
        assert!(text.contains(":TINYO-FORWARD - [0:0]\n"), "{text}");
        assert!(!text.contains("TINYO-HOSTPORTS"), "{text}");
    }

    #[test]
    fn fw_dnat_rules_are_canonical_and_found_by_id() {
        let ip = Ipv4Addr::new(10, 89, 0, 7);
        let p = parse_port("127.0.0.1:8080:80").unwrap();
        assert_eq!(
            dnat_rule("web", ip, &p),
            "-d 127.0.0.1/32 -p tcp -m tcp --dport 8080 -m comment --comment \"tinyo:web\" \
             -j DNAT --to-destination 10.89.0.7:80"
        );
        let u = PortMap {
            host_ip: None,
            host_port: 53,
            container_port: 5353,
            proto: Proto::Udp,
        };
        let mut tx = Transaction::default();
        tx.add_ports("web", ip, &[p, u]);
        let saved = format!(
            "*nat\n:TINYO-HOSTPORTS - [0:0]\n{}-A TINYO-HOSTPORTS {}\nCOMMIT\n",
            tx.nat.iter().map(|l| format!("{l}\n")).collect::<String>(),
            dnat_rule("web2", ip, &p)
        );
        let rs = Ruleset::parse(&saved);
        let mine = rs.hostport_rules_of("web");
        assert_eq!(mine, tx.nat, "web2's rule is not web's");
        let mut del = Transaction::default();
        del.delete_nat(&mine);
        assert!(del
            .render()
            .contains("-D TINYO-HOSTPORTS -p udp -m udp --dport 53 "));
    }
}
