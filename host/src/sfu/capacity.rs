//! How many sessions the server, and one client address, may have: checked at admission,
//! before any WebRTC work, counting sessions still being set up.
//!
//! Every session holds sockets and a peer connection, so these caps are what stands between
//! an anonymous flood of POSTs and a server out of ports or file descriptors (measured before
//! this module: ten anonymous POSTs filled a ten-port range and the next publisher got 500).

use super::error::SfuError;
use super::registry::Registry;
use crate::config::LimitsConfig;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// What a client over its own session cap is told to wait before trying again.
pub const CLIENT_RETRY_AFTER: Duration = Duration::from_secs(10);

pub struct Capacity {
    limits: LimitsConfig,
    /// Set-ups in progress: in all, and per client address.
    pending: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// A set-up in progress, counted until dropped (the session is then counted as live).
pub struct SetupPermit {
    capacity: Arc<Capacity>,
    ip: Option<IpAddr>,
}

impl Drop for SetupPermit {
    fn drop(&mut self) {
        let mut pending = self.capacity.pending.lock();
        pending.0 = pending.0.saturating_sub(1);
        if let Some(ip) = self.ip
            && let Some(n) = pending.1.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                pending.1.remove(&ip);
            }
        }
    }
}

impl Capacity {
    pub fn new(limits: LimitsConfig) -> Capacity {
        Capacity {
            limits,
            pending: Mutex::new((0, HashMap::new())),
        }
    }

    /// Room for one more session from `ip`? Counts it as being set up until the permit drops.
    pub fn admit(
        self: &Arc<Self>,
        registry: &Registry,
        ip: Option<IpAddr>,
    ) -> Result<SetupPermit, SfuError> {
        let mut pending = self.pending.lock();
        if pending.0 >= self.limits.max_pending_setups {
            return Err(SfuError::AtCapacity(format!(
                "{} session set-ups already in progress (limits.max_pending_setups); try again shortly",
                pending.0
            )));
        }
        let total = registry.session_count() + pending.0;
        if total >= self.limits.max_sessions {
            return Err(SfuError::AtCapacity(format!(
                "the server is at its session limit ({}, limits.max_sessions)",
                self.limits.max_sessions
            )));
        }
        if let Some(ip) = ip {
            let mine = registry.sessions_from(ip) + pending.1.get(&ip).copied().unwrap_or(0);
            if mine >= self.limits.max_sessions_per_ip {
                return Err(SfuError::ClientLimit {
                    message: format!(
                        "{ip} already has {mine} sessions (limits.max_sessions_per_ip = {})",
                        self.limits.max_sessions_per_ip
                    ),
                    retry_after: CLIENT_RETRY_AFTER,
                });
            }
            *pending.1.entry(ip).or_default() += 1;
        }
        pending.0 += 1;
        Ok(SetupPermit {
            capacity: self.clone(),
            ip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(pending: usize, total: usize, per_ip: usize) -> LimitsConfig {
        let mut l = crate::config::Config::default().limits;
        l.max_pending_setups = pending;
        l.max_sessions = total;
        l.max_sessions_per_ip = per_ip;
        l
    }

    #[test]
    fn set_ups_in_progress_count_until_their_permits_drop() {
        let registry = Registry::new(Duration::from_millis(500), Default::default());
        let capacity = Arc::new(Capacity::new(limits(2, 100, 100)));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = capacity.admit(&registry, Some(ip)).unwrap();
        let _b = capacity.admit(&registry, None).unwrap();
        assert!(matches!(
            capacity.admit(&registry, Some(ip)),
            Err(SfuError::AtCapacity(m)) if m.contains("max_pending_setups")
        ));
        drop(a);
        assert!(capacity.admit(&registry, Some(ip)).is_ok());
    }

    #[test]
    fn per_client_and_server_caps() {
        let registry = Registry::new(Duration::from_millis(500), Default::default());
        let capacity = Arc::new(Capacity::new(limits(100, 3, 2)));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let _a = capacity.admit(&registry, Some(ip)).unwrap();
        let _b = capacity.admit(&registry, Some(ip)).unwrap();
        assert!(matches!(
            capacity.admit(&registry, Some(ip)),
            Err(SfuError::ClientLimit { .. })
        ));
        let _c = capacity
            .admit(&registry, Some("192.0.2.2".parse().unwrap()))
            .unwrap();
        assert!(matches!(
            capacity.admit(&registry, Some("192.0.2.3".parse().unwrap())),
            Err(SfuError::AtCapacity(_))
        ));
    }
}
