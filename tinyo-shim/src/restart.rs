//! Restart policies (`run --restart`) and the delay between restarts.
//!
//! The supervisor of a container outlives each of its runs: when the container exits it asks
//! the policy whether to run it again, waits the backoff delay, and starts it anew from the same
//! container directory (same id, name, writable layer and log). The delays are the kubelet's:
//! the first restart at once, then 10 s, doubling up to 5 min; a run that lasted 10 min
//! starts the sequence over. `stop` (and `rm -f`) end the restarting for every policy.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When a container that exits runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Policy {
    /// Never (the default).
    #[default]
    No,
    /// When it exits with a status other than 0, at most this many times (`None`: no limit).
    OnFailure(Option<u32>),
    /// Whatever its status.
    Always,
    /// As `always`, except at boot: `start --all` leaves a container a user stopped alone
    /// (docker's difference when its daemon restarts).
    UnlessStopped,
}

/// A `--restart` value that is not a policy.
#[derive(Debug, thiserror::Error)]
#[error("--restart {0:?}: use no, on-failure[:MAX-RETRIES], always or unless-stopped")]
pub struct BadPolicy(String);

impl FromStr for Policy {
    type Err = BadPolicy;

    fn from_str(s: &str) -> Result<Self, BadPolicy> {
        let bad = || BadPolicy(s.to_string());
        match s.split_once(':') {
            None => match s {
                "no" | "" => Ok(Self::No),
                "on-failure" => Ok(Self::OnFailure(None)),
                "always" => Ok(Self::Always),
                "unless-stopped" => Ok(Self::UnlessStopped),
                _ => Err(bad()),
            },
            Some(("on-failure", n)) => match n.parse::<u32>() {
                // Docker's meaning of 0: no limit.
                Ok(0) => Ok(Self::OnFailure(None)),
                Ok(n) => Ok(Self::OnFailure(Some(n))),
                Err(_) => Err(bad()),
            },
            Some(_) => Err(bad()),
        }
    }
}

impl TryFrom<String> for Policy {
    type Error = BadPolicy;

    fn try_from(s: String) -> Result<Self, BadPolicy> {
        s.parse()
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::No => f.write_str("no"),
            Self::OnFailure(None) => f.write_str("on-failure"),
            Self::OnFailure(Some(n)) => write!(f, "on-failure:{n}"),
            Self::Always => f.write_str("always"),
            Self::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

impl From<Policy> for String {
    fn from(p: Policy) -> String {
        p.to_string()
    }
}

impl Policy {
    /// Whether a container that has been restarted `restarts` times and now exited with
    /// `code` runs again.
    pub fn restarts(self, code: i32, restarts: u32) -> bool {
        match self {
            Self::No => false,
            Self::OnFailure(max) => code != 0 && max.is_none_or(|m| restarts < m),
            Self::Always | Self::UnlessStopped => true,
        }
    }
}

/// The kubelet's crash-loop backoff.
#[derive(Debug, Default)]
pub struct Backoff {
    /// Restarts since the sequence last started over.
    step: u32,
}

impl Backoff {
    pub const INITIAL: Duration = Duration::from_secs(10);
    pub const MAX: Duration = Duration::from_secs(300);
    /// A run at least this long resets the delays.
    pub const RESET_AFTER: Duration = Duration::from_secs(600);

    /// The delay before restarting a container whose last run lasted `ran`.
    pub fn next(&mut self, ran: Duration) -> Duration {
        if ran >= Self::RESET_AFTER {
            self.step = 0;
        }
        let delay = match self.step {
            0 => Duration::ZERO,
            n => Self::INITIAL
                .checked_mul(1u32.checked_shl(n - 1).unwrap_or(u32::MAX))
                .map_or(Self::MAX, |d| d.min(Self::MAX)),
        };
        self.step = self.step.saturating_add(1);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_print_back() {
        for (s, p) in [
            ("no", Policy::No),
            ("on-failure", Policy::OnFailure(None)),
            ("on-failure:3", Policy::OnFailure(Some(3))),
            ("always", Policy::Always),
            ("unless-stopped", Policy::UnlessStopped),
        ] {
            assert_eq!(s.parse::<Policy>().unwrap(), p);
            assert_eq!(p.to_string(), s);
        }
        assert_eq!(
            "on-failure:0".parse::<Policy>().unwrap(),
            Policy::OnFailure(None)
        );
        for bad in [
            "sometimes",
            "on-failure:-1",
            "on-failure:x",
            "always:3",
            "no:1",
        ] {
            let e = bad.parse::<Policy>().unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("on-failure"), "{e}");
        }
    }

    #[test]
    fn policies_decide_like_docker() {
        assert!(!Policy::No.restarts(1, 0));
        assert!(!Policy::OnFailure(None).restarts(0, 0));
        assert!(Policy::OnFailure(None).restarts(137, 1000));
        assert!(Policy::OnFailure(Some(2)).restarts(1, 1));
        assert!(!Policy::OnFailure(Some(2)).restarts(1, 2));
        assert!(Policy::Always.restarts(0, 5));
        assert!(Policy::UnlessStopped.restarts(0, 5));
    }

    #[test]
    fn backoff_is_the_kubelets() {
        let mut b = Backoff::default();
        let short = Duration::from_secs(1);
        let secs: Vec<u64> = (0..8).map(|_| b.next(short).as_secs()).collect();
        assert_eq!(secs, [0, 10, 20, 40, 80, 160, 300, 300]);
        for _ in 0..100 {
            assert_eq!(b.next(short), Backoff::MAX);
        }
        // Ten minutes up: the next crash restarts at once, then 10 s again.
        assert_eq!(b.next(Backoff::RESET_AFTER), Duration::ZERO);
        assert_eq!(b.next(short), Backoff::INITIAL);
    }

    #[test]
    fn policy_round_trips_through_the_record_json() {
        let p: Policy = serde_json::from_str("\"on-failure:4\"").unwrap();
        assert_eq!(p, Policy::OnFailure(Some(4)));
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"on-failure:4\"");
        assert!(serde_json::from_str::<Policy>("\"maybe\"").is_err());
    }
}
