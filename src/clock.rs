//! The operator's clock. Every decision reads the time from here, and every wait it asks for is
//! turned back into real time here, so a test can run the clock faster and watch years of
//! renewals in minutes. In production it is the system clock.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// `None`: the system clock.
    scaled: Option<Scaled>,
}

#[derive(Clone, Copy, Debug)]
struct Scaled {
    /// Real instant at which the clock read `start`.
    origin: Instant,
    start: DateTime<Utc>,
    /// Clock seconds per real second.
    speed: u32,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl Clock {
    /// The system clock.
    pub const fn system() -> Clock {
        Clock { scaled: None }
    }

    /// A clock that reads `start` now and then runs `speed` times faster than real time.
    pub fn scaled(start: DateTime<Utc>, speed: u32) -> Clock {
        Clock { scaled: Some(Scaled { origin: Instant::now(), start, speed: speed.max(1) }) }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.scaled {
            None => Utc::now(),
            Some(s) => {
                let elapsed = s.origin.elapsed().saturating_mul(s.speed);
                s.start + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
            }
        }
    }

    /// How long a wait of `wait` on this clock lasts in real time.
    pub fn real(&self, wait: Duration) -> Duration {
        match &self.scaled {
            None => wait,
            Some(s) => wait / s.speed,
        }
    }

    /// Whether this is the system clock.
    pub fn is_system(&self) -> bool {
        self.scaled.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_system_clock_is_real_time_and_a_scaled_one_runs_faster() {
        let system = Clock::system();
        assert!((system.now() - Utc::now()).num_seconds().abs() < 5);
        assert_eq!(system.real(Duration::from_secs(60)), Duration::from_secs(60));

        let start = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
        let fast = Clock::scaled(start, 86_400);
        assert!(fast.now() >= start);
        std::thread::sleep(Duration::from_millis(50));
        // 50 ms real is at least an hour on a clock that runs a day per second.
        assert!(fast.now() - start >= chrono::Duration::hours(1), "{}", fast.now());
        assert_eq!(fast.real(Duration::from_secs(86_400)), Duration::from_secs(1));
    }
}
