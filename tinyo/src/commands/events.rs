//! `tinyo events [--stats] [--interval D] ID`: a stream of JSON events about a container, one
//! per line, as runc prints them: `{"type":"stats","id":…,"data":{…}}` every interval and
//! `{"type":"oom","id":…}` as soon as the kernel OOM-kills one of its processes (woken by the
//! memory cgroup's notification, not by polling). Ends when the container stops. `--stats` prints one stats event and exits.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tinyo_core::container::Runtime;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the container's counters once and exit.
    #[arg(long)]
    pub stats: bool,
    /// How often to print stats while streaming (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Container id.
    pub id: String,
}

/// Parses `5s`, `500ms`, `1m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    let (num, unit) = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((t, "s"), |i| t.split_at(i));
    let n: f64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a duration"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        other => bail!("{s:?}: unknown unit {other:?} (use ms, s or m)"),
    };
    if secs.is_nan() || secs <= 0.0 {
        bail!("{s:?}: the interval must be positive");
    }
    Ok(Duration::from_secs_f64(secs))
}

fn emit(line: serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &line)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

pub fn run(rt: &Runtime, args: Args) -> Result<i32> {
    let id = &args.id;
    let stats = |id: &str| -> Result<serde_json::Value> {
        let s = rt.stats(id)?;
        Ok(serde_json::json!({"type": "stats", "id": id, "data": s}))
    };
    if args.stats {
        emit(stats(id)?)?;
        return Ok(0);
    }
    // The memory cgroup's OOM notification wakes the loop at once (eventfd on v1, inotify on
    // v2); the kill counter says how many processes died. Liveness is checked at least every
    // second, stats come every interval.
    let mut watcher = rt.oom_watcher(id)?;
    let (mut ooms, mut alive) = rt.oom_kills(id)?;
    let mut next_stats = Instant::now();
    while alive {
        let now = Instant::now();
        if now >= next_stats {
            match stats(id) {
                Ok(v) => emit(v)?,
                Err(_) if !rt.oom_kills(id)?.1 => break,
                Err(e) => return Err(e),
            }
            next_stats += args.interval;
            continue;
        }
        let timeout = (next_stats - now).min(Duration::from_secs(1));
        let woke = watcher.wait(Some(timeout))?;
        let (mut count, still) = rt.oom_kills(id)?;
        if woke && count == ooms {
            // The event can precede the counter by a moment.
            std::thread::sleep(Duration::from_millis(20));
            count = rt.oom_kills(id)?.0;
        }
        for _ in ooms..count {
            emit(serde_json::json!({"type": "oom", "id": id}))?;
        }
        ooms = count;
        alive = still;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
