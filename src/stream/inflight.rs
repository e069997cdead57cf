//! Entries read by this process and not yet acknowledged, bounded by a semaphore of `max` permits:
//! a reader takes permits before it reads ([`InFlight::reserve`]) and keeps one per entry it admits;
//! an acknowledgement gives them back ([`InFlight::release`]). So `len() <= max` always, and reading
//! pauses (the reserve waits) while `max` entries are out.

use super::EntryId;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct InFlight {
    held: Arc<Mutex<HashSet<EntryId>>>,
    permits: Arc<Semaphore>,
    max: usize,
    gauge: Option<Gauge>,
}

/// Permits taken for one read; [`InFlight::admit`] keeps those it needs and returns the rest.
/// Dropped without `admit` (a failed read), it returns them all.
#[must_use]
pub struct Reservation {
    n: usize,
    permits: Arc<Semaphore>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.permits.add_permits(self.n);
    }
}

impl InFlight {
    /// At most `max` entries in flight; `gauge` (if any) shows the current count.
    pub fn new(max: usize, gauge: Option<Gauge>) -> InFlight {
        InFlight { held: Default::default(), permits: Arc::new(Semaphore::new(max.max(1))), max: max.max(1), gauge }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn len(&self) -> usize {
        self.held.lock().expect("inflight poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until `n` more entries may be read (at most `max`).
    pub async fn reserve(&self, n: usize) -> Reservation {
        let n = n.clamp(1, self.max) as u32;
        self.permits.acquire_many(n).await.expect("the semaphore is never closed").forget();
        Reservation { n: n as usize, permits: self.permits.clone() }
    }

    /// Keeps the entries not already held here (a re-read of one we hold is dropped), one permit
    /// each, and returns unused permits.
    pub fn admit<T>(&self, mut r: Reservation, got: Vec<T>, id: impl Fn(&T) -> &EntryId) -> Vec<T> {
        let mut held = self.held.lock().expect("inflight poisoned");
        let mut kept = Vec::with_capacity(got.len());
        for e in got {
            if kept.len() < r.n && held.insert(id(&e).clone()) {
                kept.push(e);
            }
        }
        r.n -= kept.len(); // the rest go back when `r` drops
        self.show(held.len());
        kept
    }

    /// Forgets acknowledged entries and frees their permits.
    pub fn release<'a>(&self, ids: impl IntoIterator<Item = &'a EntryId>) {
        let mut held = self.held.lock().expect("inflight poisoned");
        let before = held.len();
        for id in ids {
            held.remove(id);
        }
        self.permits.add_permits(before - held.len());
        self.show(held.len());
    }

    /// The IDs held now (to refresh their idle time in the group).
    pub fn snapshot(&self) -> Vec<EntryId> {
        self.held.lock().expect("inflight poisoned").iter().cloned().collect()
    }

    fn show(&self, n: usize) {
        if let Some(g) = &self.gauge {
            g.set(n as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reading_pauses_at_max_and_resumes_on_release() {
        let f = InFlight::new(3, None);
        let r = f.reserve(2).await;
        let kept = f.admit(r, vec!["1".to_string(), "2".to_string()], |s| s);
        assert_eq!(kept.len(), 2);
        let f2 = f.clone(); // one permit is free; 3 are asked for

        let blocked = tokio::spawn(async move { f2.reserve(3).await.n });
        // (the reservation drops inside the task, returning its permits)
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!blocked.is_finished(), "a full in-flight set pauses reading");
        f.release(&["1".to_string(), "2".to_string(), "x".to_string()]);
        assert_eq!(f.len(), 0);
        assert_eq!(tokio::time::timeout(std::time::Duration::from_secs(5), blocked).await.unwrap().unwrap(), 3);
    }

    #[tokio::test]
    async fn an_entry_already_held_is_not_admitted_twice() {
        let f = InFlight::new(10, None);
        let r = f.reserve(2).await;
        assert_eq!(f.admit(r, vec!["1".to_string()], |s| s).len(), 1);
        let r = f.reserve(2).await;
        assert!(f.admit(r, vec!["1".to_string()], |s| s).is_empty());
        assert_eq!(f.len(), 1);
        assert_eq!(f.permits.available_permits(), 9);
    }
}
