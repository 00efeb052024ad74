//! Request limits of the HTTP API: a token bucket per API token and one per client
//! address (`[api_limits]` in the config). Over the limit: 429 with `Retry-After`. Only
//! `/api/*` passes through here; the SIP engine has its own listener and never does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept before idle ones are swept.
const SWEEP_AT: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One kind of limit: `rate` requests a second sustained, `burst` at once.
pub struct Limiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<Vec<u8>, Bucket>>,
}

impl Limiter {
    /// A limiter; `rate` 0 lets everything through.
    pub fn new(rate: u32, burst: u32) -> Limiter {
        Limiter {
            rate: rate as f64,
            burst: burst.max(rate).max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request for `key`: Ok, or the seconds until one is allowed again.
    pub fn take(&self, key: &[u8]) -> Result<(), u64> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &[u8], now: Instant) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= SWEEP_AT {
            // A bucket refilled to the brim is the same as no bucket.
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = map.entry(key.to_vec()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// The API's limits: per token and per address.
pub struct ApiLimits {
    pub per_token: Limiter,
    pub per_address: Limiter,
}

impl ApiLimits {
    pub fn new(cfg: &crate::config::ApiLimitsConfig) -> ApiLimits {
        ApiLimits {
            per_token: Limiter::new(cfg.per_token, cfg.per_token_burst),
            per_address: Limiter::new(cfg.per_address, cfg.per_address_burst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let l = Limiter::new(2, 5);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(l.take_at(b"a", t0).is_ok());
        }
        assert_eq!(l.take_at(b"a", t0), Err(1));
        // Another key has its own bucket.
        assert!(l.take_at(b"b", t0).is_ok());
        // Half a second later: one more (2 a second).
        assert!(l.take_at(b"a", t0 + Duration::from_millis(500)).is_ok());
        assert!(l.take_at(b"a", t0 + Duration::from_millis(500)).is_err());
        // Off.
        let off = Limiter::new(0, 0);
        for _ in 0..1000 {
            assert!(off.take_at(b"a", t0).is_ok());
        }
    }
}
