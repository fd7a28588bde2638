//! Inbound rate limits: a token bucket for messages and one for bytes per connection. A client
//! past its rate is slowed down, not cut: its session stops reading until the buckets allow
//! more, and TCP pushes back on the client.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::Rate;

/// One token bucket: `rate.per_second` tokens a second, holding at most `rate.burst`. Taking
/// may go into debt; the debt is waited out before more is read.
#[derive(Debug, Clone)]
struct Bucket {
    rate: Rate,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: Rate, now: Instant) -> Self {
        Self {
            rate,
            tokens: rate.burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        self.at = now;
    }

    /// How long until the bucket is out of debt (has at least one token).
    fn wait(&self) -> Option<Duration> {
        (self.tokens < 1.0)
            .then(|| Duration::from_secs_f64((1.0 - self.tokens) / self.rate.per_second))
    }
}

/// A connection's inbound limits.
#[derive(Debug, Clone)]
pub(crate) struct Limiter {
    messages: Option<Bucket>,
    bytes: Option<Bucket>,
}

impl Limiter {
    /// `None` when there is no limit at all.
    pub(crate) fn new(messages: Option<Rate>, bytes: Option<Rate>, now: Instant) -> Option<Self> {
        if messages.is_none() && bytes.is_none() {
            return None;
        }
        Some(Self {
            messages: messages.map(|rate| Bucket::new(rate, now)),
            bytes: bytes.map(|rate| Bucket::new(rate, now)),
        })
    }

    /// How many whole messages may be read now (at least 1 unless in debt), or when reading
    /// may resume.
    pub(crate) fn allowance(&mut self, now: Instant) -> Result<usize, Instant> {
        for bucket in [&mut self.messages, &mut self.bytes].into_iter().flatten() {
            bucket.refill(now);
        }
        let waits = [&self.messages, &self.bytes]
            .into_iter()
            .flatten()
            .filter_map(Bucket::wait)
            .max();
        if let Some(wait) = waits {
            return Err(now + wait);
        }
        Ok(self
            .messages
            .as_ref()
            .map_or(usize::MAX, |b| b.tokens as usize))
    }

    /// Counts one message of `bytes` bytes.
    pub(crate) fn take(&mut self, bytes: usize) {
        if let Some(bucket) = &mut self.messages {
            bucket.tokens -= 1.0;
        }
        if let Some(bucket) = &mut self.bytes {
            bucket.tokens -= bytes as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_paces() {
        let start = Instant::now();
        let mut limiter = Limiter::new(Some(Rate::new(10.0, 5.0).unwrap()), None, start).unwrap();
        assert_eq!(limiter.allowance(start), Ok(5));
        for _ in 0..5 {
            limiter.take(1);
        }
        // Out of tokens: one more in 100 ms.
        let resume = limiter.allowance(start).unwrap_err();
        assert_eq!(resume - start, Duration::from_millis(100));
        assert_eq!(limiter.allowance(resume), Ok(1));
    }

    #[test]
    fn bytes_go_into_debt_and_wait_it_out() {
        let start = Instant::now();
        let rate = Rate::new(1000.0, 1000.0).unwrap();
        let mut limiter = Limiter::new(None, Some(rate), start).unwrap();
        assert_eq!(limiter.allowance(start), Ok(usize::MAX));
        limiter.take(3000);
        // 2000 bytes of debt plus one: just over two seconds.
        let resume = limiter.allowance(start).unwrap_err();
        assert!((resume - start).as_millis() >= 2000, "{:?}", resume - start);
        assert!(Limiter::new(None, None, start).is_none());
    }
}
