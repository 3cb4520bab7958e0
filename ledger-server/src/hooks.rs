//! Channel hooks (`POST /v1/hooks/<secret>`): what each channel may post, and how
//! often. The secret is a token bound to one channel (`crate::tokens`); it is never
//! logged or counted under its own name, only under its public id.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::ApiError;

/// The CloudEvent types a channel's hook accepts, by prefix; `None`: the channel
/// posts eFormidling status records, not CloudEvents.
pub(crate) fn cloudevent_prefixes(channel: &str) -> Option<&'static [&'static str]> {
    match channel {
        // Altinn Events: Correspondence's events, and the subscription check.
        "altinn" => Some(&["no.altinn.", "platform.events."]),
        "fiks" => Some(&["no.ks.fiks."]),
        _ => None,
    }
}

/// Requests a minute per hook, in fixed one-minute windows: a channel that runs
/// away (or someone who found the address) is answered 429 with the seconds until
/// the window turns, and channels redeliver.
pub(crate) struct HookLimiter {
    per_minute: usize,
    windows: Mutex<HashMap<String, (Instant, usize)>>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl HookLimiter {
    pub(crate) fn new(per_minute: usize) -> HookLimiter {
        HookLimiter {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request of the hook `id`; 429 beyond the limit.
    pub(crate) fn admit(&self, id: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut w = self.windows.lock().expect("hook limiter lock");
        // Hooks are few (one per channel and organisation): forgetting old windows
        // now and then keeps the map at that size.
        if w.len() > 10_000 {
            w.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, count) = w.entry(id.to_string()).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        if *count >= self.per_minute {
            let left = WINDOW.saturating_sub(now.duration_since(*start)).as_secs() + 1;
            return Err(ApiError::too_many(
                "hook_rate_limited",
                format!(
                    "this hook takes {} requests a minute (server.hook_requests_per_minute); redeliver later",
                    self.per_minute
                ),
                left as u32,
            ));
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_past_its_limit_waits_and_others_do_not() {
        let l = HookLimiter::new(3);
        for _ in 0..3 {
            l.admit("a").unwrap();
        }
        let e = l.admit("a").unwrap_err();
        assert_eq!(e.status.as_u16(), 429);
        assert!(e.retry_after.is_some_and(|s| (1..=61).contains(&s)));
        l.admit("b").unwrap();
    }
}
