//! Per-client token buckets for `/authcode`, and who the client is (`X-Forwarded-For` only from trusted proxies).
//!
//! Memory is bounded: at most `capacity` buckets are kept. When the map is full, buckets that have refilled
//! completely (they hold no information) are dropped; if it is still full, clients that do not fit share one
//! overflow bucket, so a flood from many addresses is still limited.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use http::HeaderMap;
use tokio::time::Instant;

/// Default number of client buckets kept.
pub(crate) const DEFAULT_CAPACITY: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            last: now,
        }
    }

    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

/// A token-bucket limiter keyed by client address: `rate` requests per second, bursts of twice that.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    buckets: HashMap<IpAddr, Bucket>,
    overflow: Option<Bucket>,
}

impl RateLimiter {
    /// A limiter of `rate` per second per client (0 = off), keeping at most `capacity` buckets.
    pub(crate) fn new(rate: u32, capacity: usize) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(rate) * 2.0,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                buckets: HashMap::new(),
                overflow: None,
            }),
        }
    }

    /// Takes one token for `client`, or says how long until one is available.
    pub(crate) fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let key = bucket_key(client);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if !inner.buckets.contains_key(&key) && inner.buckets.len() >= self.capacity {
            // A bucket idle for burst/rate seconds is full again: forgetting it changes nothing.
            let refill = Duration::from_secs_f64(self.burst / self.rate);
            inner
                .buckets
                .retain(|_, b| now.saturating_duration_since(b.last) < refill);
            if inner.buckets.len() >= self.capacity {
                let (rate, burst) = (self.rate, self.burst);
                return inner
                    .overflow
                    .get_or_insert_with(|| Bucket::full(burst, now))
                    .take(rate, burst, now);
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        inner
            .buckets
            .entry(key)
            .or_insert_with(|| Bucket::full(burst, now))
            .take(rate, burst, now)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .buckets
            .len()
    }
}

/// IPv6 clients are limited per /64 (one subscriber usually holds a whole /64); IPv4-mapped addresses as IPv4.
fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The client's address: the peer, or — only when the peer is a trusted proxy — the right-most address in
/// `X-Forwarded-For` that is not a trusted proxy (entries further left are client-controlled).
pub(crate) fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> IpAddr {
    let Some(peer) = peer.map(|p| p.ip().to_canonical()) else {
        return IpAddr::from([0, 0, 0, 0]);
    };
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|t| t.to_canonical() == *ip);
    if !is_trusted(&peer) {
        return peer;
    }
    let mut hops: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            // An unreadable header: trust nothing beyond the proxy.
            return peer;
        };
        hops.extend(value.split(',').map(str::trim));
    }
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return nearest;
        };
        if !is_trusted(&ip) {
            return ip;
        }
        nearest = ip;
    }
    nearest
}

fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_gets_a_burst_of_twice_the_rate_then_waits() {
        let limiter = RateLimiter::new(2, 100);
        let now = Instant::now();
        for _ in 0..4 {
            assert!(limiter.check(ip("192.0.2.1"), now).is_ok());
        }
        let wait = limiter.check(ip("192.0.2.1"), now).unwrap_err();
        assert!(wait <= Duration::from_millis(500));
        assert!(limiter.check(ip("192.0.2.2"), now).is_ok());
        assert!(
            limiter
                .check(ip("192.0.2.1"), now + Duration::from_millis(500))
                .is_ok()
        );
    }

    #[test]
    fn a_zero_rate_turns_the_limit_off() {
        let limiter = RateLimiter::new(0, 1);
        let now = Instant::now();
        for _ in 0..1000 {
            assert!(limiter.check(ip("192.0.2.1"), now).is_ok());
        }
    }

    #[test]
    fn memory_stays_bounded_and_overflow_clients_are_still_limited() {
        let limiter = RateLimiter::new(1, 8);
        let now = Instant::now();
        for i in 0..100u8 {
            let _ = limiter.check(IpAddr::from([10, 0, 0, i]), now);
        }
        assert_eq!(limiter.len(), 8);
        // Clients beyond the capacity share one bucket of burst 2.
        let results: Vec<_> = (100..110u8)
            .map(|i| limiter.check(IpAddr::from([10, 0, 0, i]), now).is_ok())
            .collect();
        assert!(results.iter().filter(|ok| !**ok).count() >= 7);
        // Idle buckets are forgotten once they have refilled.
        let later = now + Duration::from_secs(3);
        assert!(limiter.check(ip("10.1.0.1"), later).is_ok());
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64_prefix() {
        let limiter = RateLimiter::new(1, 100);
        let now = Instant::now();
        assert!(limiter.check(ip("2001:db8::1"), now).is_ok());
        assert!(limiter.check(ip("2001:db8::2"), now).is_ok());
        assert!(limiter.check(ip("2001:db8::3"), now).is_err());
        assert!(limiter.check(ip("2001:db8:0:1::1"), now).is_ok());
    }

    #[test]
    fn forwarded_for_is_ignored_from_an_untrusted_peer() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        let peer = Some("198.51.100.1:4000".parse().unwrap());
        assert_eq!(client_ip(peer, &headers, &[]), ip("198.51.100.1"));
    }

    #[test]
    fn forwarded_for_gives_the_rightmost_untrusted_hop_behind_a_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 203.0.113.9"),
        );
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        let peer = Some("10.0.0.1:4000".parse().unwrap());
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        assert_eq!(client_ip(peer, &headers, &trusted), ip("203.0.113.9"));
        // Garbage left of a trusted hop stops the walk at the nearest known hop.
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("nonsense"));
        assert_eq!(client_ip(peer, &headers, &trusted), ip("10.0.0.1"));
        // No header at all: the proxy itself.
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted), ip("10.0.0.1"));
    }
}
