//! Percentiles of latency samples.

/// The `p`th percentile (0–100) of `sorted` nanosecond samples, in microseconds (nearest
/// rank); NaN when there are none.
pub(crate) fn percentile_us(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let samples: Vec<u64> = (1..=100).map(|n| n * 1000).collect();
        assert_eq!(percentile_us(&samples, 50.0), 50.0);
        assert_eq!(percentile_us(&samples, 99.0), 99.0);
        assert_eq!(percentile_us(&samples, 100.0), 100.0);
        assert!(percentile_us(&[], 50.0).is_nan());
    }
}
