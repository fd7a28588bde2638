//! [`RetryPolicy`]: when a client reconnects after a failure, and how long it waits.

use std::fmt;
use std::time::Duration;

/// When a client reconnects after a failed attempt or an abnormal close, and how long it waits
/// first.
///
/// Three shapes, each built by a constructor that checks its input:
///
/// - [`never`](Self::never): one attempt, no reconnects.
/// - [`fixed`](Self::fixed): the same delay before every reconnect.
/// - [`exponential`](Self::exponential): `initial`, then twice as long each time (see
///   [`with_factor`](Self::with_factor)), never more than `max`.
///
/// Every delay is jittered: it is drawn at random between `(1 - jitter) × d` and `d`, so that
/// many clients cut off together do not all come back at the same instant. The default jitter
/// is [`DEFAULT_JITTER`](Self::DEFAULT_JITTER); [`with_jitter(0.0)`](Self::with_jitter) turns
/// it off.
///
/// [`with_max_attempts`](Self::with_max_attempts) bounds how many reconnect attempts in a row
/// may fail before the client gives up, goes [`Closed`](crate::ConnectionState::Closed) and
/// reports [`ClientError::RetriesExhausted`](crate::ClientError::RetriesExhausted).
///
/// The attempt number (and with it the delay and the limit) starts over only after a
/// connection that stayed up for the client's
/// [`stable_after`](crate::CrimsonClientBuilder::stable_after), 5 s by default. A connection
/// that closes abnormally sooner counts as a failed attempt: a server that accepts and closes
/// at once is backed off from like one that refuses.
///
/// ```
/// use std::time::Duration;
/// use crimson_client::RetryPolicy;
///
/// let policy = RetryPolicy::exponential(Duration::from_millis(500), Duration::from_secs(30))?
///     .with_jitter(0.0)?
///     .with_max_attempts(10)?;
/// assert_eq!(policy.delay(1), Some(Duration::from_millis(500)));
/// assert_eq!(policy.delay(3), Some(Duration::from_secs(2)));
/// assert_eq!(policy.delay(9), Some(Duration::from_secs(30))); // capped at max
/// assert_eq!(policy.delay(11), None); // gave up after 10 attempts
///
/// let err = RetryPolicy::exponential(Duration::from_secs(5), Duration::from_secs(1)).unwrap_err();
/// assert_eq!(err.to_string(), "the maximum delay (1s) is shorter than the initial delay (5s)");
/// # Ok::<(), crimson_client::RetryPolicyError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    backoff: Backoff,
    jitter: f64,
    max_attempts: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Backoff {
    Never,
    Fixed(Duration),
    Exponential {
        initial: Duration,
        max: Duration,
        factor: f64,
    },
}

/// A [`RetryPolicy`] constructor was given a value it cannot use.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RetryPolicyError {
    /// A delay of zero would reconnect in a busy loop.
    #[error("the {0} delay must be longer than zero")]
    ZeroDelay(&'static str),
    /// `max` is shorter than `initial`.
    #[error("the maximum delay ({max:?}) is shorter than the initial delay ({initial:?})")]
    MaxBelowInitial {
        /// The initial delay given.
        initial: Duration,
        /// The maximum delay given.
        max: Duration,
    },
    /// The growth factor is not a finite number of at least 1.
    #[error("the growth factor must be a finite number of at least 1, not {0}")]
    Factor(f64),
    /// A growth factor was set on a policy that does not grow.
    #[error("a growth factor only applies to an exponential policy")]
    FactorNeedsExponential,
    /// The jitter is not a fraction from 0 to 1.
    #[error("the jitter must be a fraction from 0.0 to 1.0, not {0}")]
    Jitter(f64),
    /// `with_max_attempts(0)`, or a limit on [`RetryPolicy::never`].
    #[error("a maximum of {0} attempts never reconnects: use RetryPolicy::never()")]
    MaxAttempts(u32),
}

impl RetryPolicy {
    /// The jitter a new policy has: delays fall between 80% and 100% of the computed delay.
    pub const DEFAULT_JITTER: f64 = 0.2;

    /// Never reconnect: one failed attempt or abnormal close leaves the client
    /// [`Closed`](crate::ConnectionState::Closed).
    pub const fn never() -> Self {
        Self {
            backoff: Backoff::Never,
            jitter: 0.0,
            max_attempts: None,
        }
    }

    /// Wait `delay` before every reconnect, without limit.
    pub fn fixed(delay: Duration) -> Result<Self, RetryPolicyError> {
        if delay.is_zero() {
            return Err(RetryPolicyError::ZeroDelay("fixed"));
        }
        Ok(Self {
            backoff: Backoff::Fixed(delay),
            jitter: Self::DEFAULT_JITTER,
            max_attempts: None,
        })
    }

    /// Wait `initial` before the first reconnect, then twice as long before each next one, but
    /// never longer than `max`; without limit.
    pub fn exponential(initial: Duration, max: Duration) -> Result<Self, RetryPolicyError> {
        if initial.is_zero() {
            return Err(RetryPolicyError::ZeroDelay("initial"));
        }
        if max < initial {
            return Err(RetryPolicyError::MaxBelowInitial { initial, max });
        }
        Ok(Self {
            backoff: Backoff::Exponential {
                initial,
                max,
                factor: 2.0,
            },
            jitter: Self::DEFAULT_JITTER,
            max_attempts: None,
        })
    }

    /// How much longer each exponential delay is than the one before (2.0 unless set).
    pub fn with_factor(mut self, factor: f64) -> Result<Self, RetryPolicyError> {
        if !factor.is_finite() || factor < 1.0 {
            return Err(RetryPolicyError::Factor(factor));
        }
        match &mut self.backoff {
            Backoff::Exponential { factor: f, .. } => *f = factor,
            _ => return Err(RetryPolicyError::FactorNeedsExponential),
        }
        Ok(self)
    }

    /// The fraction by which a delay may be shortened at random: each delay `d` becomes a
    /// value between `(1 - jitter) × d` and `d`. `0.0` turns jitter off; `1.0` is "full jitter".
    pub fn with_jitter(mut self, jitter: f64) -> Result<Self, RetryPolicyError> {
        if !(0.0..=1.0).contains(&jitter) {
            return Err(RetryPolicyError::Jitter(jitter));
        }
        self.jitter = jitter;
        Ok(self)
    }

    /// Give up after `attempts` reconnect attempts in a row have failed (an attempt whose
    /// connection closed abnormally before
    /// [`stable_after`](crate::CrimsonClientBuilder::stable_after) counts as failed).
    pub fn with_max_attempts(mut self, attempts: u32) -> Result<Self, RetryPolicyError> {
        if attempts == 0 || self.backoff == Backoff::Never {
            return Err(RetryPolicyError::MaxAttempts(attempts));
        }
        self.max_attempts = Some(attempts);
        Ok(self)
    }

    /// Whether this policy ever reconnects.
    pub fn retries(&self) -> bool {
        self.backoff != Backoff::Never
    }

    /// The jitter fraction.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The limit on reconnect attempts in a row, if any.
    pub fn max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    /// How long to wait before reconnect attempt `attempt` (counting from 1), jittered at
    /// random; `None` when the policy does not make that attempt.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        self.delay_with(attempt, random_unit())
    }

    /// [`delay`](Self::delay) with the random draw given: `sample` from 0.0 (the full delay)
    /// to 1.0 (the shortest the jitter allows). Values outside are clamped.
    pub fn delay_with(&self, attempt: u32, sample: f64) -> Option<Duration> {
        let base = self.base_delay(attempt)?;
        let sample = if sample.is_nan() {
            0.0
        } else {
            sample.clamp(0.0, 1.0)
        };
        Some(base.mul_f64(1.0 - self.jitter * sample))
    }

    /// The delay before reconnect attempt `attempt` without jitter; `None` when the policy does
    /// not make that attempt.
    pub fn base_delay(&self, attempt: u32) -> Option<Duration> {
        if attempt == 0 || self.max_attempts.is_some_and(|max| attempt > max) {
            return None;
        }
        match self.backoff {
            Backoff::Never => None,
            Backoff::Fixed(delay) => Some(delay),
            Backoff::Exponential {
                initial,
                max,
                factor,
            } => {
                let exponent = i32::try_from(attempt - 1).unwrap_or(i32::MAX);
                let secs = initial.as_secs_f64() * factor.powi(exponent);
                if !secs.is_finite() || secs >= max.as_secs_f64() {
                    Some(max)
                } else {
                    Some(Duration::from_secs_f64(secs).min(max))
                }
            }
        }
    }
}

/// Exponential from 1 s to 30 s, jitter [`DEFAULT_JITTER`](RetryPolicy::DEFAULT_JITTER), no
/// limit on attempts.
impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            backoff: Backoff::Exponential {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(30),
                factor: 2.0,
            },
            jitter: Self::DEFAULT_JITTER,
            max_attempts: None,
        }
    }
}

impl fmt::Display for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.backoff {
            Backoff::Never => return f.write_str("never reconnect"),
            Backoff::Fixed(delay) => write!(f, "reconnect every {delay:?}")?,
            Backoff::Exponential {
                initial,
                max,
                factor,
            } => write!(
                f,
                "reconnect after {initial:?}, ×{factor} each time up to {max:?}"
            )?,
        }
        if self.jitter > 0.0 {
            write!(f, ", jitter {:.0}%", self.jitter * 100.0)?;
        }
        if let Some(max) = self.max_attempts {
            write!(f, ", at most {max} attempts")?;
        }
        Ok(())
    }
}

/// A number in `[0, 1)`, random enough to spread reconnects: std's `RandomState` is seeded per
/// process and stepped per instance, and the clock adds more.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    hasher.write_u32(nanos);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn exponential_doubles_then_caps_at_max() {
        let policy = RetryPolicy::exponential(100 * MS, 1000 * MS)
            .unwrap()
            .with_jitter(0.0)
            .unwrap();
        let delays: Vec<_> = (1..=7).map(|n| policy.delay(n).unwrap()).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1000, 1000, 1000].map(|ms| ms * MS)
        );
        // Far attempts neither overflow nor panic.
        assert_eq!(policy.delay(u32::MAX), Some(1000 * MS));
        assert_eq!(policy.delay(0), None);
    }

    #[test]
    fn factor_changes_growth() {
        let policy = RetryPolicy::exponential(100 * MS, 10_000 * MS)
            .unwrap()
            .with_factor(3.0)
            .unwrap();
        assert_eq!(policy.base_delay(3), Some(900 * MS));
        let flat = RetryPolicy::exponential(100 * MS, 10_000 * MS)
            .unwrap()
            .with_factor(1.0)
            .unwrap();
        assert_eq!(flat.base_delay(10), Some(100 * MS));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let policy = RetryPolicy::exponential(1000 * MS, 8000 * MS)
            .unwrap()
            .with_jitter(0.5)
            .unwrap();
        for attempt in 1..=6 {
            let base = policy.base_delay(attempt).unwrap();
            assert_eq!(policy.delay_with(attempt, 0.0), Some(base));
            assert_eq!(policy.delay_with(attempt, 1.0), Some(base / 2));
            assert_eq!(policy.delay_with(attempt, 7.0), Some(base / 2), "clamped");
            for _ in 0..200 {
                let delay = policy.delay(attempt).unwrap();
                assert!(delay <= base && delay >= base / 2, "{delay:?} vs {base:?}");
            }
        }
    }

    #[test]
    fn random_draws_spread() {
        let policy = RetryPolicy::fixed(Duration::from_secs(10))
            .unwrap()
            .with_jitter(1.0)
            .unwrap();
        let draws: std::collections::HashSet<_> = (0..50).map(|_| policy.delay(1)).collect();
        assert!(draws.len() > 40, "only {} distinct delays", draws.len());
    }

    #[test]
    fn max_attempts_ends_the_sequence() {
        let policy = RetryPolicy::fixed(50 * MS)
            .unwrap()
            .with_max_attempts(3)
            .unwrap();
        assert!(policy.base_delay(3).is_some());
        assert_eq!(policy.delay(4), None);
        assert_eq!(policy.max_attempts(), Some(3));
    }

    #[test]
    fn never_never_retries() {
        let policy = RetryPolicy::never();
        assert!(!policy.retries());
        assert_eq!(policy.delay(1), None);
        assert_eq!(
            policy.with_max_attempts(3).unwrap_err(),
            RetryPolicyError::MaxAttempts(3)
        );
    }

    #[test]
    fn constructors_refuse_bad_input_with_clear_messages() {
        let cases: Vec<(RetryPolicyError, &str)> = vec![
            (
                RetryPolicy::fixed(Duration::ZERO).unwrap_err(),
                "the fixed delay must be longer than zero",
            ),
            (
                RetryPolicy::exponential(Duration::ZERO, MS).unwrap_err(),
                "the initial delay must be longer than zero",
            ),
            (
                RetryPolicy::exponential(2 * MS, MS).unwrap_err(),
                "the maximum delay (1ms) is shorter than the initial delay (2ms)",
            ),
            (
                RetryPolicy::default().with_factor(0.5).unwrap_err(),
                "the growth factor must be a finite number of at least 1, not 0.5",
            ),
            (
                RetryPolicy::default().with_factor(f64::NAN).unwrap_err(),
                "the growth factor must be a finite number of at least 1, not NaN",
            ),
            (
                RetryPolicy::fixed(MS)
                    .unwrap()
                    .with_factor(2.0)
                    .unwrap_err(),
                "a growth factor only applies to an exponential policy",
            ),
            (
                RetryPolicy::default().with_jitter(1.5).unwrap_err(),
                "the jitter must be a fraction from 0.0 to 1.0, not 1.5",
            ),
            (
                RetryPolicy::default().with_max_attempts(0).unwrap_err(),
                "a maximum of 0 attempts never reconnects: use RetryPolicy::never()",
            ),
        ];
        for (err, message) in cases {
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn display_describes_the_policy() {
        let policy = RetryPolicy::exponential(Duration::from_secs(1), Duration::from_secs(30))
            .unwrap()
            .with_max_attempts(5)
            .unwrap();
        assert_eq!(
            policy.to_string(),
            "reconnect after 1s, ×2 each time up to 30s, jitter 20%, at most 5 attempts"
        );
        assert_eq!(RetryPolicy::never().to_string(), "never reconnect");
    }
}
