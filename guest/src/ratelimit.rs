//! A rate limit for expensive unauthenticated requests (quotes): a token
//! bucket per client address and one for everyone, as GCRA (one instant per
//! bucket, no floating point). A request passes only if both buckets have a
//! token; neither is charged otherwise.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One bucket's rate: `burst` requests at once, refilled one per `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed back to back (at least 1).
    pub burst: u32,
    /// Time to earn one more.
    pub every: Duration,
}

impl Rate {
    /// How far ahead of `now` a bucket's theoretical arrival time may be.
    fn slack(&self) -> Duration {
        self.every
            .checked_mul(self.burst.saturating_sub(1))
            .unwrap_or(Duration::MAX)
    }

    /// The bucket's next arrival time if a request at `now` passes, or how
    /// long until one would.
    fn admit(&self, tat: Option<Instant>, now: Instant) -> Result<Instant, Duration> {
        let tat = tat.map_or(now, |tat| tat.max(now));
        let ahead = tat - now;
        if ahead > self.slack() {
            return Err(ahead - self.slack());
        }
        // Beyond the clock's range only with absurd rates: then as full as now.
        Ok(tat.checked_add(self.every).unwrap_or(tat))
    }
}

/// Per-client buckets kept at most; beyond, full buckets are forgotten, and
/// if none is full a new client is held to the global bucket only.
const MAX_PEERS: usize = 1024;

#[derive(Default)]
struct State {
    global: Option<Instant>,
    peers: HashMap<IpAddr, Instant>,
}

/// A global and a per-client bucket.
pub struct RateLimiter {
    global: Rate,
    per_peer: Rate,
    state: Mutex<State>,
}

/// A refused request: how long until it would pass, and which bucket is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Wait at least this long.
    pub retry_after: Duration,
    /// True when the client's own bucket is empty, false for the global one.
    pub per_peer: bool,
}

impl RateLimiter {
    /// Limit to `global` in all and `per_peer` per client address.
    pub fn new(global: Rate, per_peer: Rate) -> Self {
        RateLimiter {
            global,
            per_peer,
            state: Mutex::new(State::default()),
        }
    }

    /// The rates: (global, per client address).
    pub fn rates(&self) -> (Rate, Rate) {
        (self.global, self.per_peer)
    }

    /// Charge a request from `peer` (`None`: global bucket only) at `now`.
    pub fn check(&self, peer: Option<IpAddr>, now: Instant) -> Result<(), Limited> {
        // Each update is a single assignment: consistent even after a panic.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.peers.len() >= MAX_PEERS {
            state.peers.retain(|_, tat| *tat > now);
        }
        let peer = peer.filter(|p| state.peers.contains_key(p) || state.peers.len() < MAX_PEERS);
        let peer_next = match peer {
            Some(p) => Some(
                self.per_peer
                    .admit(state.peers.get(&p).copied(), now)
                    .map_err(|retry_after| Limited {
                        retry_after,
                        per_peer: true,
                    })?,
            ),
            None => None,
        };
        let global_next = self
            .global
            .admit(state.global, now)
            .map_err(|retry_after| Limited {
                retry_after,
                per_peer: false,
            })?;
        state.global = Some(global_next);
        if let (Some(p), Some(next)) = (peer, peer_next) {
            state.peers.insert(p, next);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn burst_then_one_per_interval_per_client() {
        let limiter = RateLimiter::new(
            Rate {
                burst: 100,
                every: Duration::from_millis(10),
            },
            Rate {
                burst: 3,
                every: SECOND,
            },
        );
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check(ip(1), t0).unwrap();
        }
        let refused = limiter.check(ip(1), t0).unwrap_err();
        assert!(refused.per_peer);
        assert_eq!(refused.retry_after, SECOND);
        // Another client is not affected.
        limiter.check(ip(2), t0).unwrap();
        // Half a second later: still refused, half a second to go.
        let refused = limiter.check(ip(1), t0 + SECOND / 2).unwrap_err();
        assert_eq!(refused.retry_after, SECOND / 2);
        // After one interval, exactly one more.
        limiter.check(ip(1), t0 + SECOND).unwrap();
        assert!(limiter.check(ip(1), t0 + SECOND).is_err());
    }

    #[test]
    fn the_global_bucket_limits_everyone_and_refusals_cost_nothing() {
        let limiter = RateLimiter::new(
            Rate {
                burst: 2,
                every: SECOND,
            },
            Rate {
                burst: 2,
                every: SECOND,
            },
        );
        let t0 = Instant::now();
        limiter.check(ip(1), t0).unwrap();
        limiter.check(None, t0).unwrap();
        let refused = limiter.check(ip(2), t0).unwrap_err();
        assert!(!refused.per_peer);
        assert_eq!(refused.retry_after, SECOND);
        // Client 2 was not charged for the refusal: it still has its burst.
        limiter.check(ip(2), t0 + 2 * SECOND).unwrap();
        limiter.check(ip(2), t0 + 2 * SECOND).unwrap();
    }
}
