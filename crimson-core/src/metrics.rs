//! Handles on the metrics Crimson records (feature `metrics`): the `metrics` facade's own
//! handles when the feature is on, empty ones that cost nothing when it is off, so the code
//! that records has no `#[cfg]` of its own.
//!
//! A handle is resolved once (per config, per session, per cluster) and then only added to:
//! resolving hashes the name and labels, adding is one relaxed atomic add (a branch while no
//! recorder is installed). Not public API: the metric names and labels are (the README's
//! "Metrics" section).

#[cfg(feature = "metrics")]
mod imp {
    use super::Labels;

    pub(super) type Counter = ::metrics::Counter;
    pub(super) type Gauge = ::metrics::Gauge;
    pub(super) type Histogram = ::metrics::Histogram;

    fn labels(labels: Labels<'_>) -> Vec<::metrics::Label> {
        labels
            .iter()
            .map(|(key, value)| ::metrics::Label::new(*key, (*value).to_owned()))
            .collect()
    }

    pub(super) fn counter(name: &'static str, labels: Labels<'_>) -> Counter {
        ::metrics::counter!(name, self::labels(labels))
    }

    pub(super) fn gauge(name: &'static str, labels: Labels<'_>) -> Gauge {
        ::metrics::gauge!(name, self::labels(labels))
    }

    pub(super) fn histogram(name: &'static str, labels: Labels<'_>) -> Histogram {
        ::metrics::histogram!(name, self::labels(labels))
    }

    pub(super) fn noop_counter() -> Counter {
        Counter::noop()
    }

    pub(super) fn noop_gauge() -> Gauge {
        Gauge::noop()
    }

    pub(super) fn noop_histogram() -> Histogram {
        Histogram::noop()
    }

    #[inline]
    pub(super) fn add(counter: &Counter, n: u64) {
        if n > 0 {
            counter.increment(n);
        }
    }

    #[inline]
    pub(super) fn gauge_add(gauge: &Gauge, delta: f64) {
        gauge.increment(delta);
    }

    #[inline]
    pub(super) fn gauge_set(gauge: &Gauge, value: f64) {
        gauge.set(value);
    }

    #[inline]
    pub(super) fn record(histogram: &Histogram, value: f64) {
        histogram.record(value);
    }
}

#[cfg(not(feature = "metrics"))]
mod imp {
    use super::Labels;

    #[derive(Clone, Copy)]
    pub(super) struct Nothing;
    pub(super) type Counter = Nothing;
    pub(super) type Gauge = Nothing;
    pub(super) type Histogram = Nothing;

    pub(super) fn counter(_: &'static str, _: Labels<'_>) -> Counter {
        Nothing
    }

    pub(super) fn gauge(_: &'static str, _: Labels<'_>) -> Gauge {
        Nothing
    }

    pub(super) fn histogram(_: &'static str, _: Labels<'_>) -> Histogram {
        Nothing
    }

    pub(super) fn noop_counter() -> Counter {
        Nothing
    }

    pub(super) fn noop_gauge() -> Gauge {
        Nothing
    }

    pub(super) fn noop_histogram() -> Histogram {
        Nothing
    }

    #[inline]
    pub(super) fn add(_: &Counter, _: u64) {}

    #[inline]
    pub(super) fn gauge_add(_: &Gauge, _: f64) {}

    #[inline]
    pub(super) fn gauge_set(_: &Gauge, _: f64) {}

    #[inline]
    pub(super) fn record(_: &Histogram, _: f64) {}
}

/// Labels as key and value.
pub type Labels<'a> = &'a [(&'static str, &'a str)];

/// A monotonic count.
#[derive(Clone)]
pub struct Counter(imp::Counter);

/// A value that goes up and down.
#[derive(Clone)]
pub struct Gauge(imp::Gauge);

/// A distribution of values.
#[derive(Clone)]
pub struct Histogram(imp::Histogram);

impl Counter {
    /// The counter `name` with `labels`, resolved now from the installed recorder.
    pub fn new(name: &'static str, labels: Labels<'_>) -> Self {
        Self(imp::counter(name, labels))
    }

    /// A counter that records nothing.
    pub fn noop() -> Self {
        Self(imp::noop_counter())
    }

    /// Adds `n` (nothing when `n` is 0).
    #[inline]
    pub fn add(&self, n: u64) {
        imp::add(&self.0, n);
    }
}

impl Gauge {
    /// The gauge `name` with `labels`, resolved now from the installed recorder.
    pub fn new(name: &'static str, labels: Labels<'_>) -> Self {
        Self(imp::gauge(name, labels))
    }

    /// A gauge that records nothing.
    pub fn noop() -> Self {
        Self(imp::noop_gauge())
    }

    /// Adds `delta` (negative to take away).
    #[inline]
    pub fn add(&self, delta: f64) {
        imp::gauge_add(&self.0, delta);
    }

    /// Sets the value.
    #[inline]
    pub fn set(&self, value: f64) {
        imp::gauge_set(&self.0, value);
    }
}

impl Histogram {
    /// The histogram `name` with `labels`, resolved now from the installed recorder.
    pub fn new(name: &'static str, labels: Labels<'_>) -> Self {
        Self(imp::histogram(name, labels))
    }

    /// A histogram that records nothing.
    pub fn noop() -> Self {
        Self(imp::noop_histogram())
    }

    /// Records one value.
    #[inline]
    pub fn record(&self, value: f64) {
        imp::record(&self.0, value);
    }
}

impl Default for Counter {
    fn default() -> Self {
        Self::noop()
    }
}

impl Default for Gauge {
    fn default() -> Self {
        Self::noop()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::noop()
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counter")
    }
}

impl std::fmt::Debug for Gauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gauge")
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Histogram")
    }
}

/// Adds `n` to the counter `name` with `labels`, resolved for this once: for rare events.
pub fn count(name: &'static str, labels: Labels<'_>, n: u64) {
    Counter::new(name, labels).add(n);
}

/// Whether recording can do anything: the feature is on (a recorder may still be missing).
pub const ENABLED: bool = cfg!(feature = "metrics");

/// One added to a gauge until dropped: an open connection.
#[derive(Debug)]
pub struct Held(Gauge);

impl Held {
    /// Adds one to `gauge` until the value returned is dropped.
    pub fn new(gauge: &Gauge) -> Self {
        gauge.add(1.0);
        Self(gauge.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.add(-1.0);
    }
}
