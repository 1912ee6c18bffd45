//! Latency percentiles of a set of samples (nearest rank), shared by the benchmark programs. Pure.

use std::time::Duration;

/// p50/p95/p99 and the maximum of a set of latencies (zero when there are none).
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    /// Sorts `samples` and reads the percentiles off them.
    pub fn of(samples: &mut [Duration]) -> Percentiles {
        samples.sort_unstable();
        let at = |p: f64| -> Duration {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            // Nearest rank: the smallest sample with at least p of all samples at or below it.
            let rank = (p * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1]
        };
        Percentiles { p50: at(0.50), p95: at(0.95), p99: at(0.99), max: samples.last().copied().unwrap_or_default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut s: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let p = Percentiles::of(&mut s);
        let ms = |d: Duration| d.as_millis();
        assert_eq!((ms(p.p50), ms(p.p95), ms(p.p99), ms(p.max)), (50, 95, 99, 100));
        let none = Percentiles::of(&mut []);
        assert_eq!(none.max, Duration::ZERO);
    }
}
