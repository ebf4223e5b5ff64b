//! The one retry policy of the crate, for the source's GETs and S3's conflicting writes alike:
//! exponential backoff with jitter over the upper half of each step.

use std::time::Duration;

/// Wait before the attempt after attempt number `attempt` (1-based): a random time between half
/// and all of `min(5 s, 200 ms × 2^(attempt-1))`, so overlapping runs do not retry in step.
pub fn retry_delay(attempt: u32, rng: &mut fastrand::Rng) -> Duration {
    let ceiling_ms = (200u64 << attempt.saturating_sub(1).min(10)).min(5_000);
    Duration::from_millis(rng.u64(ceiling_ms / 2..=ceiling_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_grows_then_caps_and_is_jittered() {
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in 1..=12 {
            let ceiling = (200u64 << (attempt - 1).min(10)).min(5_000);
            let samples: Vec<_> = (0..50)
                .map(|_| retry_delay(attempt, &mut rng).as_millis() as u64)
                .collect();
            assert!(
                samples.iter().all(|&d| d >= ceiling / 2 && d <= ceiling),
                "{attempt}: {samples:?}"
            );
            assert!(
                samples.iter().any(|&d| d != samples[0]),
                "no jitter at {attempt}"
            );
        }
    }
}
