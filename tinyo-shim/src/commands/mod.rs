//! One module per group of subcommands.

pub mod exec;
pub mod images;
pub mod logs;
pub mod play;
pub mod pod;
pub mod ps;
pub mod run;
pub mod start;
pub mod stop;

/// Parses `1024`, `512k`, `100m`, `2g` (binary units, case-insensitive; a trailing `b` is
/// allowed) into bytes.
pub fn parse_bytes(s: &str) -> anyhow::Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("{s:?} is not a size (bytes, or a k/m/g suffix)"))?;
    if n.is_nan() || n <= 0.0 {
        anyhow::bail!("{s:?} is not a positive size");
    }
    Ok((n * (1u64 << shift) as f64) as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(super::parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(super::parse_bytes("4096").unwrap(), 4096);
        assert!(super::parse_bytes("0").is_err());
        assert!(super::parse_bytes("x").is_err());
    }
}
