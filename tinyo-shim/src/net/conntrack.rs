//! Forgets the connection-tracking entries of a detached container's address, over ctnetlink
//! (what the CNI `portmap` plugin did on `DEL` for UDP).
//!
//! A UDP client that keeps sending to a published port (syslog, DNS, metrics) keeps its
//! conntrack entry alive, and with it the DNAT to the old container's address: when the
//! container is replaced (a restart gets a new address), that traffic would go to the dead
//! address for as long as the client keeps sending. Deleting the entries makes the next
//! datagram go through the `DNAT` rules again.
//!
//! The table is dumped (IPv4), entries whose original or reply tuple names the address are
//! picked in user space, and each is deleted by its exact original tuple (and zone), so no
//! message can ever ask the kernel to flush the whole table.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_TYPE_MASK: u16 = 0x3fff;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const HDR: usize = 16; // nlmsghdr
const NFGEN: usize = 4; // nfgenmsg

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes in `buf`: (type without flags, payload, the whole attribute with header).
fn attrs(buf: &[u8]) -> Vec<(u16, &[u8], &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 4 <= buf.len() {
        let len = u16::from_ne_bytes([buf[off], buf[off + 1]]) as usize;
        let ty = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]) & NLA_TYPE_MASK;
        if len < 4 || off + len > buf.len() {
            break;
        }
        out.push((ty, &buf[off + 4..off + len], &buf[off..off + len]));
        off += align(len);
    }
    out
}

/// Does a `CTA_TUPLE_*` payload name `ip` as source or destination?
fn tuple_names(tuple: &[u8], ip: Ipv4Addr) -> bool {
    attrs(tuple)
        .into_iter()
        .filter(|(ty, _, _)| *ty == CTA_TUPLE_IP)
        .flat_map(|(_, ips, _)| attrs(ips))
        .any(|(ty, v, _)| {
            (ty == CTA_IP_V4_SRC || ty == CTA_IP_V4_DST) && v == ip.octets().as_slice()
        })
}

/// From one conntrack entry's attributes: the attributes that identify it for a delete
/// (its original tuple, and its zone if any), if the entry concerns `ip`.
fn delete_key(entry: &[u8], ip: Ipv4Addr) -> Option<Vec<u8>> {
    let a = attrs(entry);
    let concerns = a
        .iter()
        .any(|(ty, v, _)| (*ty == CTA_TUPLE_ORIG || *ty == CTA_TUPLE_REPLY) && tuple_names(v, ip));
    if !concerns {
        return None;
    }
    let mut key = Vec::new();
    for (ty, _, whole) in a {
        if ty == CTA_TUPLE_ORIG || ty == CTA_ZONE {
            key.extend_from_slice(whole);
            key.resize(align(key.len()), 0);
        }
    }
    (!key.is_empty()).then_some(key)
}

fn message(ty: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = HDR + NFGEN + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | ty).to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version (NFNETLINK_V0), res_id.
    m.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
    m.extend_from_slice(body);
    m
}

/// The netlink messages in one datagram: (type, flags, payload after the header).
fn messages(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + HDR <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
        let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if len < HDR || off + len > buf.len() {
            break;
        }
        out.push((ty, &buf[off + HDR..off + len]));
        off += align(len);
    }
    out
}

/// The errno of an `NLMSG_ERROR` payload (0 is an ack).
fn error_code(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .map(|b| -i32::from_ne_bytes(b.try_into().expect("4 bytes")))
        .unwrap_or(libc::EPROTO)
}

struct Socket(OwnedFd);

impl Socket {
    fn open() -> io::Result<Socket> {
        // SAFETY: plain socket(2); the descriptor is owned by the OwnedFd on success.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let s = Socket(unsafe { OwnedFd::from_raw_fd(fd) });
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a timeval of the size passed, on our descriptor.
        let rc = unsafe {
            libc::setsockopt(
                s.0.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(s)
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_nl is valid; we set the family (pid 0 = the kernel).
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `msg` and `to` are valid for the lengths passed for the call's duration.
        let n = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn recv<'a>(&self, buf: &'a mut [u8]) -> io::Result<&'a [u8]> {
        loop {
            // SAFETY: `buf` is valid for writes of its length for the call's duration.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                return Ok(&buf[..n as usize]);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// The conntrack entries (IPv4) that concern `ip`, as delete keys.
fn entries_of(s: &Socket, ip: Ipv4Addr) -> io::Result<Vec<Vec<u8>>> {
    s.send(&message(
        IPCTNL_MSG_CT_GET,
        NLM_F_REQUEST | NLM_F_DUMP,
        1,
        &[],
    ))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut keys = Vec::new();
    loop {
        let data = s.recv(&mut buf)?;
        if data.is_empty() {
            return Ok(keys);
        }
        for (ty, payload) in messages(data) {
            match ty {
                NLMSG_DONE => return Ok(keys),
                NLMSG_ERROR => match error_code(payload) {
                    0 => {}
                    e => return Err(io::Error::from_raw_os_error(e)),
                },
                t if t == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW => {
                    if let Some(k) = payload.get(NFGEN..).and_then(|e| delete_key(e, ip)) {
                        keys.push(k);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Deletes every IPv4 conntrack entry whose tuples name `ip`; returns how many went. A kernel
/// without ctnetlink has nothing this could clear: that is `Ok(0)`.
pub fn forget(ip: Ipv4Addr) -> io::Result<usize> {
    let unsupported = |e: &io::Error| {
        matches!(
            e.raw_os_error(),
            Some(libc::EPROTONOSUPPORT | libc::EOPNOTSUPP | libc::EAFNOSUPPORT)
        )
    };
    let s = match Socket::open() {
        Ok(s) => s,
        Err(e) if unsupported(&e) => return Ok(0),
        Err(e) => return Err(e),
    };
    let keys = match entries_of(&s, ip) {
        Ok(k) => k,
        Err(e) if unsupported(&e) => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut gone = 0;
    let mut buf = vec![0u8; 8192];
    for (seq, key) in (2u32..).zip(&keys) {
        s.send(&message(
            IPCTNL_MSG_CT_DELETE,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            key,
        ))?;
        let data = s.recv(&mut buf)?;
        for (ty, payload) in messages(data) {
            if ty == NLMSG_ERROR {
                match error_code(payload) {
                    0 => gone += 1,
                    libc::ENOENT => {} // expired meanwhile
                    e => return Err(io::Error::from_raw_os_error(e)),
                }
            }
        }
    }
    Ok(gone)
}

/// How many IPv4 conntrack entries name `ip` (for tests).
#[cfg(test)]
pub fn count(ip: Ipv4Addr) -> io::Result<usize> {
    entries_of(&Socket::open()?, ip).map(|k| k.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize(align(a.len()), 0);
        a
    }

    fn tuple(ty: u16, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let ips = [attr(CTA_IP_V4_SRC, &src), attr(CTA_IP_V4_DST, &dst)].concat();
        let proto = attr(1, &[17]); // CTA_PROTO_NUM = UDP
        attr(
            ty | 0x8000,
            &[attr(CTA_TUPLE_IP | 0x8000, &ips), attr(2 | 0x8000, &proto)].concat(),
        )
    }

    #[test]
    fn ct_entries_are_matched_by_either_tuple_and_keyed_by_the_original() {
        let ctr = Ipv4Addr::new(10, 89, 0, 5);
        // A DNAT'd inbound flow: client → host:53, reply from the container.
        let orig = tuple(CTA_TUPLE_ORIG, [192, 0, 2, 1], [10, 89, 0, 1]);
        let reply = tuple(CTA_TUPLE_REPLY, [10, 89, 0, 5], [192, 0, 2, 1]);
        let zone = attr(CTA_ZONE, &7u16.to_be_bytes());
        let status = attr(3, &8u32.to_be_bytes());
        let entry = [orig.clone(), reply.clone(), status.clone(), zone.clone()].concat();
        assert_eq!(delete_key(&entry, ctr), Some([orig.clone(), zone].concat()));
        // Another container's flow is left alone.
        assert_eq!(delete_key(&entry, Ipv4Addr::new(10, 89, 0, 6)), None);
        // Named in the original tuple only (an outbound flow before NAT).
        let out = [
            tuple(CTA_TUPLE_ORIG, [10, 89, 0, 5], [192, 0, 2, 9]),
            tuple(CTA_TUPLE_REPLY, [192, 0, 2, 9], [192, 0, 2, 200]),
        ]
        .concat();
        assert!(delete_key(&out, ctr).is_some());
        // Truncated input never panics and matches nothing.
        assert_eq!(delete_key(&entry[..entry.len() / 2 - 1], ctr), None);
    }

    #[test]
    fn ct_messages_and_errors_parse() {
        let m = message(
            IPCTNL_MSG_CT_DELETE,
            NLM_F_REQUEST | NLM_F_ACK,
            9,
            &[1, 2, 3, 4],
        );
        assert_eq!(m.len(), HDR + NFGEN + 4);
        let parsed = messages(&m);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].0, (1 << 8) | 2);
        assert_eq!(&parsed[0].1[NFGEN..], &[1, 2, 3, 4]);
        assert_eq!(error_code(&(-libc::ENOENT).to_ne_bytes()), libc::ENOENT);
        assert_eq!(error_code(&[]), libc::EPROTO);
    }
}
