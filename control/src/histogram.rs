//! Fixed-size histogram of callback durations (control thread): 1 µs buckets up to 100 ms, so a
//! run of weeks takes constant memory.

pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum_ns: u128,
    max_ns: u64,
}

const BUCKETS: usize = 100_000;

impl Histogram {
    pub fn new() -> Self {
        Self {
            buckets: vec![0; BUCKETS],
            count: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }
    pub fn add(&mut self, ns: u64) {
        let b = ((ns / 1000) as usize).min(BUCKETS - 1);
        self.buckets[b] += 1;
        self.count += 1;
        self.sum_ns += ns as u128;
        self.max_ns = self.max_ns.max(ns);
    }
    pub fn count(&self) -> u64 {
        self.count
    }
    /// The q-quantile in microseconds (upper edge of its bucket, capped by the max).
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let target = ((self.count as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target {
                return ((i + 1) as f64).min(self.max_us());
            }
        }
        self.max_us()
    }
    pub fn max_us(&self) -> f64 {
        self.max_ns as f64 / 1000.0
    }
    pub fn mean_us(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.count as f64 / 1000.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        for us in 1..=100u64 {
            h.add(us * 1000 - 500);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile_us(0.5), 50.0);
        assert_eq!(h.quantile_us(0.99), 99.0);
        assert_eq!(h.max_us(), 99.5);
    }
}
