//! Device cgroup rules: the spec's `linux.resources.devices`, runc's default list, the v1
//! `devices.allow`/`devices.deny` lines, and an emulation of the v1 semantics (default
//! behaviour plus exceptions) that the v2 eBPF program is generated from.

use oci_spec::runtime::LinuxDeviceCgroup;

/// Access bits, as the kernel's `bpf_cgroup_dev_ctx` encodes them.
pub const ACC_MKNOD: u8 = 1;
pub const ACC_READ: u8 = 2;
pub const ACC_WRITE: u8 = 4;
pub const ACC_ALL: u8 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevType {
    /// `a`: every device; a rule of this type resets the whole state.
    All,
    Char,
    Block,
}

/// One rule (`None` major/minor = wildcard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub typ: DevType,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

const fn allow(typ: DevType, major: Option<u32>, minor: Option<u32>, access: u8) -> Rule {
    Rule {
        allow: true,
        typ,
        major,
        minor,
        access,
    }
}

/// What every container may use, appended after the spec's rules (runc's list): mknod of any
/// device, /dev/null, random, full, tty, zero, urandom, the pty slaves, /dev/ptmx, /dev/net/tun.
pub const DEFAULT_ALLOWED: &[Rule] = &[
    allow(DevType::Char, None, None, ACC_MKNOD),
    allow(DevType::Block, None, None, ACC_MKNOD),
    allow(DevType::Char, Some(1), Some(3), ACC_ALL),
    allow(DevType::Char, Some(1), Some(8), ACC_ALL),
    allow(DevType::Char, Some(1), Some(7), ACC_ALL),
    allow(DevType::Char, Some(5), Some(0), ACC_ALL),
    allow(DevType::Char, Some(1), Some(5), ACC_ALL),
    allow(DevType::Char, Some(1), Some(9), ACC_ALL),
    allow(DevType::Char, Some(136), None, ACC_ALL),
    allow(DevType::Char, Some(5), Some(2), ACC_ALL),
    allow(DevType::Char, Some(10), Some(200), ACC_ALL),
];

impl Rule {
    /// From the spec; the error says why the rule is invalid.
    pub fn from_spec(r: &LinuxDeviceCgroup) -> Result<Self, String> {
        let typ = match r.typ().map(|t| t.as_str().to_string()).as_deref() {
            None | Some("a") => DevType::All,
            Some("c") | Some("u") => DevType::Char,
            Some("b") => DevType::Block,
            Some(t) => return Err(format!("type {t:?} is not a, b or c")),
        };
        let num = |what: &str, n: Option<i64>| match n {
            None | Some(-1) => Ok(None),
            Some(n) if (0..=i64::from(i32::MAX)).contains(&n) => Ok(Some(n as u32)),
            Some(n) => Err(format!("{what} {n} is not a device number or -1")),
        };
        let major = num("major", r.major())?;
        let minor = num("minor", r.minor())?;
        let mut access = 0;
        for ch in r.access().as_deref().unwrap_or("rwm").chars() {
            access |= match ch {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => return Err(format!("access {:?} is not a subset of rwm", r.access())),
            };
        }
        if access == 0 {
            access = ACC_ALL; // runc: no access given means all
        }
        Ok(Self {
            allow: r.allow(),
            typ,
            major,
            minor,
            access,
        })
    }

    /// The line for v1 `devices.allow`/`devices.deny`: `a`, `c 1:3 rwm`, `b *:* m`.
    pub fn v1_line(&self) -> String {
        let t = match self.typ {
            DevType::All => return "a".into(),
            DevType::Char => 'c',
            DevType::Block => 'b',
        };
        let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        format!(
            "{t} {}:{} {}",
            n(self.major),
            n(self.minor),
            access_string(self.access)
        )
    }
}

pub fn access_string(a: u8) -> String {
    let mut s = String::new();
    for (bit, ch) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
        if a & bit != 0 {
            s.push(ch);
        }
    }
    s
}

/// The v1 device cgroup state: a default behaviour and exceptions to it, updated the way the
/// kernel updates it for each line written to `devices.allow`/`devices.deny`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulator {
    pub default_allow: bool,
    /// (type, major, minor, access); their verdict is `!default_allow`.
    pub exceptions: Vec<(DevType, Option<u32>, Option<u32>, u8)>,
}

impl Default for Emulator {
    /// A new cgroup below an unrestricted parent: everything allowed.
    fn default() -> Self {
        Self {
            default_allow: true,
            exceptions: Vec::new(),
        }
    }
}

impl Emulator {
    pub fn from_rules(rules: &[Rule]) -> Self {
        let mut e = Self::default();
        for r in rules {
            e.apply(r);
        }
        e
    }

    pub fn apply(&mut self, r: &Rule) {
        if r.typ == DevType::All {
            self.default_allow = r.allow;
            self.exceptions.clear();
            return;
        }
        let same = |x: &(DevType, Option<u32>, Option<u32>, u8)| {
            x.0 == r.typ && x.1 == r.major && x.2 == r.minor
        };
        if r.allow == self.default_allow {
            // Agrees with the default: takes those accesses out of an identical exception.
            for x in self.exceptions.iter_mut().filter(|x| same(x)) {
                x.3 &= !r.access;
            }
            self.exceptions.retain(|x| x.3 != 0);
        } else if let Some(x) = self.exceptions.iter_mut().find(|x| same(x)) {
            x.3 |= r.access;
        } else {
            self.exceptions.push((r.typ, r.major, r.minor, r.access));
        }
    }

    /// The verdict for one access (`access` may combine bits: an open for read and write).
    /// Under a deny default an allow exception must cover every requested bit; under an allow
    /// default a deny exception matching any requested bit denies (as the v1 kernel checks).
    pub fn allows(&self, typ: DevType, major: u32, minor: u32, access: u8) -> bool {
        let hit = self.exceptions.iter().any(|&(t, ma, mi, acc)| {
            t == typ
                && ma.is_none_or(|m| m == major)
                && mi.is_none_or(|m| m == minor)
                && if self.default_allow {
                    acc & access != 0
                } else {
                    access & !acc == 0
                }
        });
        hit != self.default_allow
    }
}
