//! Just enough ELF reading to prove a binary is static: no program interpreter and no
//! `DT_NEEDED` shared libraries.

/// Why a file's linking could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ElfError(&'static str);

type Result<T> = std::result::Result<T, ElfError>;

/// What matters about linking.
#[derive(Debug, PartialEq, Eq)]
pub struct Linking {
    /// The `PT_INTERP` path, if any (a dynamic executable has one).
    pub interpreter: Option<String>,
    /// How many shared libraries `DT_NEEDED` names.
    pub needed: usize,
}

impl Linking {
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed == 0
    }
}

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

fn u16_at(b: &[u8], off: usize) -> Result<u16> {
    let s = b.get(off..off + 2).ok_or(ElfError("ELF truncated"))?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}
fn u32_at(b: &[u8], off: usize) -> Result<u32> {
    let s = b.get(off..off + 4).ok_or(ElfError("ELF truncated"))?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
fn u64_at(b: &[u8], off: usize) -> Result<u64> {
    let s = b.get(off..off + 8).ok_or(ElfError("ELF truncated"))?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

/// Reads the linking facts of a 64-bit little-endian ELF file.
pub fn linking(bytes: &[u8]) -> Result<Linking> {
    if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(ElfError("not an ELF file"));
    }
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err(ElfError("not a 64-bit little-endian ELF file"));
    }
    let phoff =
        usize::try_from(u64_at(bytes, 0x20)?).map_err(|_| ElfError("ELF offset too large"))?;
    let phentsize = usize::from(u16_at(bytes, 0x36)?);
    let phnum = usize::from(u16_at(bytes, 0x38)?);
    let mut out = Linking {
        interpreter: None,
        needed: 0,
    };
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let p_type = u32_at(bytes, ph)?;
        let offset = usize::try_from(u64_at(bytes, ph + 8)?)
            .map_err(|_| ElfError("ELF offset too large"))?;
        let filesz =
            usize::try_from(u64_at(bytes, ph + 32)?).map_err(|_| ElfError("ELF size too large"))?;
        let seg = bytes
            .get(offset..offset.saturating_add(filesz))
            .ok_or(ElfError("segment out of file"))?;
        match p_type {
            PT_INTERP => {
                let s = seg.split(|&b| b == 0).next().unwrap_or_default();
                out.interpreter = Some(String::from_utf8_lossy(s).into_owned());
            }
            PT_DYNAMIC => {
                for entry in seg.chunks_exact(16) {
                    let tag = u64_at(entry, 0)?;
                    if tag == DT_NULL {
                        break;
                    }
                    if tag == DT_NEEDED {
                        out.needed += 1;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_system_binary_is_not_static() {
        let bytes = std::fs::read("/bin/sh").unwrap();
        let l = linking(&bytes).unwrap();
        assert!(l.interpreter.is_some(), "{l:?}");
        assert!(l.needed > 0, "{l:?}");
        assert!(!l.is_static());
    }

    #[test]
    fn busybox_static_is_static() {
        // Debian's busybox-static is what the fixtures use; it must be installed for the suite.
        let bytes = std::fs::read("/bin/busybox").expect("busybox-static must be installed");
        let l = linking(&bytes).unwrap();
        assert!(l.is_static(), "{l:?}");
    }

    #[test]
    fn refuses_non_elf() {
        assert!(linking(b"#!/bin/sh\n").is_err());
        assert!(linking(b"\x7fELF\x01\x01").is_err());
    }
}
