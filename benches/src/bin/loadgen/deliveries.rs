//! What the webhook receiver saw, reduced to the report's figures. Only
//! deliveries of events that happened inside the measured window count for
//! the rate and the latency: those of the setup and the warm-up would time
//! a different load, and those of the stragglers after the window belong to
//! no measured second.

use crate::backlog::Backlog;
use crate::receiver::Received;
use crate::stats::{histogram, Window};
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

/// The measured window on the wall clock, which the server stamps events
/// with; the arrivals carry both clocks.
#[derive(Clone, Copy, Debug)]
pub struct WallWindow {
    pub from_micros: i64,
    pub to_micros: i64,
}

impl WallWindow {
    /// `anchor`: one instant and the wall clock read at it, µs since the epoch.
    pub fn of(window: &Window, anchor: (Instant, i64)) -> WallWindow {
        let (instant, wall) = anchor;
        let offset = |t: Instant| {
            let ahead =
                i64::try_from(t.saturating_duration_since(instant).as_micros()).unwrap_or(i64::MAX);
            let behind =
                i64::try_from(instant.saturating_duration_since(t).as_micros()).unwrap_or(i64::MAX);
            wall.saturating_add(ahead).saturating_sub(behind)
        };
        WallWindow {
            from_micros: offset(window.from),
            to_micros: offset(window.to),
        }
    }

    fn contains(&self, micros: i64) -> bool {
        (self.from_micros..=self.to_micros).contains(&micros)
    }
}

/// The `webhooks` section of the report.
pub struct Deliveries {
    /// The endpoints registered, one per organization.
    pub endpoints: usize,
    pub receiver_url: String,
    /// Deliveries received, each `webhook-id` once, of any event.
    pub received: u64,
    /// Deliveries of events that happened in the window, whenever they arrived.
    pub of_window: u64,
    /// Of those, the ones that arrived inside the window: the rate's numerator.
    pub arrived_in_window: u64,
    /// Every delivery that arrived inside the window, whatever its event:
    /// the server's delivery throughput under load, even while it is still
    /// working off the warm-up's events.
    pub all_in_window: u64,
    pub duplicates: u64,
    pub without_id: u64,
    /// Bodies without a readable `createdAt`: neither timed nor counted as
    /// the window's.
    pub without_event_time: u64,
    /// Window deliveries whose event time had whole seconds only.
    pub whole_seconds: u64,
    /// Window deliveries that arrived before their event's time: the two
    /// clocks disagree (recorded as 1 µs).
    pub before_event: u64,
    /// Event to arrival of the window's deliveries, µs.
    pub latency: Histogram<u64>,
    /// From the load's end to the last arrival of a window event's delivery;
    /// zero when none arrived after it; None unless the server's backlog
    /// emptied (some may be missing).
    pub drain: Option<Duration>,
    pub backlog: Backlog,
}

impl Deliveries {
    /// The drain is counted from the window's end, when the workers stop
    /// sending.
    pub fn new(
        received: &Received,
        window: &Window,
        wall: WallWindow,
        backlog: Backlog,
        endpoints: usize,
        receiver_url: String,
    ) -> anyhow::Result<Deliveries> {
        let mut d = Deliveries {
            endpoints,
            receiver_url,
            received: received.arrivals.len() as u64,
            of_window: 0,
            arrived_in_window: 0,
            all_in_window: 0,
            duplicates: received.duplicates,
            without_id: received.without_id,
            without_event_time: 0,
            whole_seconds: 0,
            before_event: 0,
            latency: histogram()?,
            drain: None,
            backlog,
        };
        let mut last: Option<Instant> = None;
        for arrival in &received.arrivals {
            if window.contains(arrival.at) {
                d.all_in_window += 1;
            }
            let Some(event) = arrival.event else {
                d.without_event_time += 1;
                continue;
            };
            if !wall.contains(event.micros) {
                continue;
            }
            d.of_window += 1;
            if window.contains(arrival.at) {
                d.arrived_in_window += 1;
            }
            if !event.subsecond {
                d.whole_seconds += 1;
            }
            let micros = arrival.wall_micros.saturating_sub(event.micros);
            if micros < 0 {
                d.before_event += 1;
            }
            d.latency.saturating_record(micros.max(1) as u64);
            last = last.max(Some(arrival.at));
        }
        if d.backlog.empty {
            d.drain = Some(last.map_or(Duration::ZERO, |t| t.saturating_duration_since(window.to)));
        }
        Ok(d)
    }

    /// Deliveries of the window's events that arrived in it, per second.
    pub fn per_sec(&self, window: Duration) -> f64 {
        rate(self.arrived_in_window, window)
    }

    /// Every delivery that arrived in the window, per second.
    pub fn all_per_sec(&self, window: Duration) -> f64 {
        rate(self.all_in_window, window)
    }

    /// Deliveries of other events: the setup's, the warm-up's, the stragglers'.
    pub fn outside_window(&self) -> u64 {
        self.received - self.of_window - self.without_event_time
    }
}

fn rate(n: u64, window: Duration) -> f64 {
    let secs = window.as_secs_f64();
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::{Arrival, EventTime};

    #[test]
    fn counts_and_times_only_the_window_events() -> anyhow::Result<()> {
        let now = Instant::now();
        let window = Window {
            from: now,
            to: now + Duration::from_secs(10),
        };
        let wall = WallWindow::of(&window, (now, 1_000_000_000));
        assert_eq!(wall.from_micros, 1_000_000_000);
        assert_eq!(wall.to_micros, 1_010_000_000);
        let arrival = |event_s: f64, arrived_s: f64, subsecond: bool| Arrival {
            event: Some(EventTime {
                micros: 1_000_000_000 + (event_s * 1e6) as i64,
                subsecond,
            }),
            wall_micros: 1_000_000_000 + (arrived_s * 1e6) as i64,
            at: now + Duration::from_secs_f64(arrived_s),
        };
        let mut received = Received::default();
        received.arrivals = vec![
            arrival(-1.0, 0.5, true),  // warm-up event
            arrival(1.0, 1.010, true), // 10 ms
            arrival(2.0, 2.020, true), // 20 ms
            arrival(9.9, 11.0, false), // drained 1 s after the load
            arrival(10.5, 10.6, true), // straggler
            Arrival {
                event: None,
                wall_micros: 0,
                at: now,
            },
        ];
        let backlog = Backlog {
            empty: true,
            ..Backlog::default()
        };
        let d = Deliveries::new(&received, &window, wall, backlog, 4, "u".into())?;
        assert_eq!(d.received, 6);
        assert_eq!(d.of_window, 3);
        assert_eq!(d.arrived_in_window, 2);
        assert_eq!(d.all_in_window, 4);
        assert_eq!(d.without_event_time, 1);
        assert_eq!(d.outside_window(), 2);
        assert_eq!(d.whole_seconds, 1);
        assert_eq!(d.latency.len(), 3);
        assert!((9_990..=10_010).contains(&d.latency.min()));
        assert_eq!(d.drain.map(|t| t.as_millis()), Some(1_000));
        assert_eq!(d.per_sec(Duration::from_secs(10)), 0.2);
        Ok(())
    }
}
