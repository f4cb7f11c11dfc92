//! Health checks (`run --health-cmd …`, docker's flags and meaning), run by the supervisor.
//!
//! Every interval the supervisor execs the check in the running container (`/bin/sh -c CMD`,
//! the container's own user, environment and namespaces) with its output to a file; a check
//! that outlives its timeout is killed and fails. The first success makes the container
//! `healthy`; `retries` failures in a row make it `unhealthy`, except that failures during the
//! start period do not count while it has never been healthy. What happens then is
//! `--health-on-failure` (podman's flag): `none` (report only, docker's way), `kill` (the
//! restart policy decides what follows) or `restart` (run again whatever the policy, as a
//! Kubernetes liveness probe does). The state, with the last five results, is in the record.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How many results the record keeps, as docker.
pub const KEEP: usize = 5;
/// How much of a check's output is kept.
pub const OUTPUT_CAP: usize = 4096;

/// What to do when the container becomes unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    #[default]
    None,
    Kill,
    Restart,
}

impl std::str::FromStr for OnFailure {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "kill" => Ok(Self::Kill),
            "restart" => Ok(Self::Restart),
            _ => Err(format!(
                "--health-on-failure {s:?}: use none, kill or restart"
            )),
        }
    }
}

/// The check as configured (`--health-*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Run as `/bin/sh -c CMD` in the container.
    pub cmd: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Successes in a row that make it healthy (a Kubernetes probe's `successThreshold`;
    /// docker's checks have 1).
    #[serde(default = "one")]
    pub successes: u32,
}

fn one() -> u32 {
    1
}

impl Config {
    fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
    fn start_period(&self) -> Duration {
        Duration::from_millis(self.start_period_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Starting,
    Healthy,
    Unhealthy,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        })
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub start: String,
    pub end: String,
    /// The check's exit code; -1 when it timed out or could not be run.
    pub exit_code: i32,
    pub output: String,
}

/// The health part of the record (`inspect`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: Status,
    pub failing_streak: u32,
    #[serde(default)]
    pub success_streak: u32,
    pub log: Vec<Outcome>,
}

impl Health {
    /// Before the first check.
    pub fn starting() -> Self {
        Self {
            status: Status::Starting,
            failing_streak: 0,
            success_streak: 0,
            log: Vec::new(),
        }
    }
}

/// The schedule and the verdicts, without the processes (unit-tested on its own).
#[derive(Debug)]
pub struct Checker {
    pub cfg: Config,
    started: Instant,
    next: Instant,
    pub health: Health,
}

impl Checker {
    /// For a container that started at `now`: the first check one interval later.
    pub fn new(cfg: Config, now: Instant) -> Self {
        let next = now + cfg.interval();
        Self {
            cfg,
            started: now,
            next,
            health: Health::starting(),
        }
    }

    /// Not checking yet (a startup check has not passed): the first check comes one interval
    /// after the last call, and the start period counts from it.
    pub fn hold(&mut self, now: Instant) {
        self.started = now;
        self.next = now + self.cfg.interval();
    }

    /// When the next check is due.
    pub fn due(&self) -> Instant {
        self.next
    }

    /// Folds in the outcome of the check that ended at `now` and schedules the next one;
    /// returns true when this outcome made the container unhealthy.
    pub fn record(&mut self, outcome: Outcome, now: Instant) -> bool {
        let ok = outcome.exit_code == 0;
        self.health.log.push(outcome);
        if self.health.log.len() > KEEP {
            self.health.log.remove(0);
        }
        self.next = now + self.cfg.interval();
        let before = self.health.status;
        if ok {
            self.health.failing_streak = 0;
            self.health.success_streak = self.health.success_streak.saturating_add(1);
            if self.health.success_streak >= self.cfg.successes.max(1) {
                self.health.status = Status::Healthy;
            }
            return false;
        }
        self.health.success_streak = 0;
        let grace = before == Status::Starting
            && now.duration_since(self.started) < self.cfg.start_period();
        if grace {
            return false;
        }
        self.health.failing_streak += 1;
        if self.health.failing_streak >= self.cfg.retries.max(1) {
            self.health.status = Status::Unhealthy;
        }
        before != Status::Unhealthy && self.health.status == Status::Unhealthy
    }
}

/// Parses a Go-style duration as docker's flags take them: `30s`, `500ms`, `1m30s`, `2h`
/// (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: use e.g. 500ms, 30s, 1m30s");
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(digits);
        let n: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let secs = match unit {
            "ms" => n / 1e3,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::try_from_secs_f64(secs).map_err(|_| bad())?;
        rest = next;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(retries: u32, start_period_ms: u64) -> Config {
        Config {
            cmd: "true".into(),
            interval_ms: 1000,
            timeout_ms: 1000,
            retries,
            start_period_ms,
            on_failure: OnFailure::None,
            successes: 1,
        }
    }

    fn out(code: i32) -> Outcome {
        Outcome {
            start: String::new(),
            end: String::new(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn durations_parse_like_dockers_flags() {
        let ms = |s: &str| parse_duration(s).unwrap().as_millis();
        assert_eq!(ms("30s"), 30_000);
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("1m30s"), 90_000);
        assert_eq!(ms("1.5s"), 1500);
        assert_eq!(ms("2h"), 7_200_000);
        assert_eq!(ms("7"), 7000);
        for bad in ["", "s", "10x", "1m30", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn retries_failures_in_a_row_make_it_unhealthy_once() {
        let t = Instant::now();
        let mut c = Checker::new(cfg(3, 0), t);
        assert_eq!(c.due(), t + Duration::from_secs(1));
        assert!(!c.record(out(1), t));
        assert!(!c.record(out(1), t));
        assert_eq!(c.health.status, Status::Starting);
        assert!(c.record(out(1), t), "the third failure in a row");
        assert_eq!(c.health.status, Status::Unhealthy);
        assert!(
            !c.record(out(1), t),
            "already unhealthy: no second transition"
        );
        assert!(!c.record(out(0), t));
        assert_eq!(
            (c.health.status, c.health.failing_streak),
            (Status::Healthy, 0)
        );
        assert_eq!(c.health.log.len(), KEEP);
    }

    #[test]
    fn the_start_period_forgives_failures_until_the_first_success() {
        let t = Instant::now();
        let mut c = Checker::new(cfg(1, 10_000), t);
        assert!(!c.record(out(1), t + Duration::from_secs(2)));
        assert_eq!(c.health.failing_streak, 0);
        assert!(!c.record(out(0), t + Duration::from_secs(3)));
        // Healthy once: failures count from now on, start period or not.
        assert!(c.record(out(1), t + Duration::from_secs(4)));
        let mut late = Checker::new(cfg(1, 1000), t);
        assert!(late.record(out(1), t + Duration::from_secs(2)));
    }

    #[test]
    fn a_success_threshold_needs_successes_in_a_row() {
        let t = Instant::now();
        let mut c = Checker::new(
            Config {
                successes: 2,
                ..cfg(1, 0)
            },
            t,
        );
        c.record(out(0), t);
        assert_eq!(c.health.status, Status::Starting, "one success of two");
        c.record(out(0), t);
        assert_eq!(c.health.status, Status::Healthy);
        assert!(c.record(out(1), t));
        c.record(out(0), t);
        c.record(out(1), t);
        c.record(out(0), t);
        assert_eq!(c.health.status, Status::Unhealthy, "the streak was broken");
        c.record(out(0), t);
        assert_eq!(c.health.status, Status::Healthy);
    }

    #[test]
    fn on_failure_values() {
        assert_eq!("kill".parse::<OnFailure>().unwrap(), OnFailure::Kill);
        assert_eq!("restart".parse::<OnFailure>().unwrap(), OnFailure::Restart);
        assert!("stop"
            .parse::<OnFailure>()
            .unwrap_err()
            .contains("none, kill or restart"));
    }
}
