//! A pace for bulk streaming (anti-entropy, hand-off, `ringkv leave`), so
//! that moving a node's data does not starve client traffic.
//!
//! Every batch books its bytes before it goes; a batch waits until the
//! bytes booked before it have had their time at the configured rate
//! (`stream_bytes_per_sec`). The schedule is pure ([`schedule`]); the
//! wait is a sleep.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When a batch of `bytes` may go, given the instant the stream is booked
/// up to (`next`), the time now, and the rate: (how long to wait, the new
/// booking). A stream idle for a while starts again at once, with no
/// credit saved up.
pub fn schedule(next: Instant, now: Instant, bytes: u64, rate: u64) -> (Duration, Instant) {
    let start = next.max(now);
    let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
    (start - now, start + cost)
}

/// The bytes a batch of entries books: keys and payloads.
pub fn bytes_of(items: &[(bytes::Bytes, crate::store::Entry)]) -> u64 {
    items
        .iter()
        .map(|(k, e)| (k.len() + e.payload_len()) as u64)
        .sum()
}

/// The pace of one node's bulk streams, shared by all of them.
#[derive(Debug)]
pub struct Throttle {
    rate: u64,
    next: Mutex<Instant>,
}

impl Throttle {
    /// A pace of `rate` bytes a second; 0 for none.
    pub fn new(rate: u64) -> Throttle {
        Throttle {
            rate,
            next: Mutex::new(crate::clock::instant()),
        }
    }

    /// Waits until `bytes` more may be streamed.
    pub async fn take(&self, bytes: u64) {
        if self.rate == 0 {
            return;
        }
        let wait = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let (wait, booked) = schedule(*next, crate::clock::instant(), bytes, self.rate);
            *next = booked;
            wait
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_paced_at_the_rate_and_idle_time_is_not_saved() {
        let t0 = Instant::now();
        let mb = 1_000_000;
        // 1 MB at 2 MB/s: goes now, books half a second.
        let (wait, next) = schedule(t0, t0, mb, 2 * mb);
        assert_eq!(wait, Duration::ZERO);
        assert_eq!(next, t0 + Duration::from_millis(500));
        // The next right away waits for that half second.
        let (wait, next) = schedule(next, t0, mb, 2 * mb);
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(next, t0 + Duration::from_secs(1));
        // After ten idle seconds: no credit, goes now, books from now.
        let later = t0 + Duration::from_secs(11);
        let (wait, next) = schedule(next, later, mb, 2 * mb);
        assert_eq!(wait, Duration::ZERO);
        assert_eq!(next, later + Duration::from_millis(500));
    }
}
