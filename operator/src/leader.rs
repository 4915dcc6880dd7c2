//! Leader election on a coordination.k8s.io/v1 Lease, so that several operator replicas are safe: only
//! the holder reconciles. Writes are compare-and-swap on the Lease's resourceVersion; a holder that
//! cannot renew within the lease duration stops, and a standby takes over once the lease has expired.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};

use crate::error::Error;

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

/// Why this replica stopped leading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadershipLost(pub String);

impl std::fmt::Display for LeadershipLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who holds the lease after a try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    Me,
    /// Another replica, by its identity.
    Other(String),
    /// Another replica won a race (a concurrent create or a 409 on the swap); who it is is read next try.
    Raced,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Me => f.write_str("this replica"),
            Holder::Other(identity) => f.write_str(identity),
            Holder::Raced => f.write_str("a replica that won a concurrent write"),
        }
    }
}

/// Whether a lease last renewed at `renewed` for `seconds` has expired at `now`.
pub fn expired(renewed: Option<Timestamp>, seconds: i32, now: Timestamp) -> bool {
    match renewed {
        Some(t) => t + SignedDuration::from_secs(i64::from(seconds)) < now,
        None => true,
    }
}

impl Elector {
    pub fn new(api: Api<Lease>, name: String, identity: String, duration: Duration) -> Elector {
        Elector { api, name, identity, duration }
    }

    fn seconds(&self) -> i32 {
        i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// One attempt to take or renew the lease.
    pub async fn try_acquire(&self) -> Result<Holder, Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.seconds()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Holder::Me),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Holder::Raced),
                Err(e) => Err(e.into()),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let seconds = spec.lease_duration_seconds.unwrap_or(self.seconds());
        let renewed = spec.renew_time.as_ref().map(|t| t.0);
        if holder != self.identity && !holder.is_empty() && !expired(renewed, seconds, now) {
            return Ok(Holder::Other(holder));
        }
        if holder != self.identity {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(self.seconds());
        spec.renew_time = Some(MicroTime(now));
        // The resourceVersion from the read makes this a compare-and-swap: 409 means someone else won.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(Holder::Me),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Holder::Raced),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) {
        let retry = self.duration / 5;
        loop {
            match self.try_acquire().await {
                Ok(Holder::Me) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became the leader");
                    return;
                }
                Ok(holder @ (Holder::Other(_) | Holder::Raced)) => tracing::debug!(%holder, "standing by"),
                Err(e) => tracing::warn!(error = %e, "cannot read the leader lease"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Renews the lease until a renewal deadline passes without success; returns why leadership ended
    /// (it never ends otherwise).
    pub async fn hold(&self) -> LeadershipLost {
        let period = self.duration / 3;
        let deadline = self.duration * 2 / 3;
        let mut last_renewal = tokio::time::Instant::now();
        let mut wait = period;
        loop {
            tokio::time::sleep(wait).await;
            let left = deadline.saturating_sub(last_renewal.elapsed());
            // A renewal that hangs (API server unreachable, packets dropped) must not outlive the
            // lease: by then another replica may lead, and two leaders would fight over every object.
            let limit = left.min(period).max(Duration::from_millis(1));
            let failure = match tokio::time::timeout(limit, self.try_acquire()).await {
                Ok(Ok(Holder::Me)) => {
                    last_renewal = tokio::time::Instant::now();
                    wait = period;
                    continue;
                }
                Ok(Ok(holder @ (Holder::Other(_) | Holder::Raced))) => {
                    return LeadershipLost(format!("lease taken by {holder}"));
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer from the API server within {limit:?}"),
            };
            let left = deadline.saturating_sub(last_renewal.elapsed());
            if left.is_zero() {
                return LeadershipLost(format!("could not renew the lease for {deadline:?}: {failure}"));
            }
            // Retry well before the deadline, several times if need be: one blip must not cost the lease.
            wait = (left / 4).max(Duration::from_millis(50));
            tracing::warn!(error = %failure, retry_in_ms = wait.as_millis() as u64, "lease renewal failed; retrying");
        }
    }

    /// Gives the lease up on shutdown so a standby need not wait for it to expire.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else { return };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(e) = self.api.replace(&self.name, &PostParams::default(), &lease).await {
            tracing::warn!(error = %e, "could not release the leader lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_only_after_its_duration() {
        let t = Timestamp::from_second(1_000).unwrap();
        assert!(!expired(Some(t), 15, Timestamp::from_second(1_010).unwrap()));
        assert!(expired(Some(t), 15, Timestamp::from_second(1_016).unwrap()));
        assert!(expired(None, 15, t));
    }
}
