//! Entries read by this process and not yet acknowledged, bounded twice:
//! - by `max` (`export.max_inflight`): every entry read and not acknowledged, including those an
//!   open run holds until its end;
//! - by `ahead` (`stream.read_ahead`, at most `max`): the entries *moving* through the stages —
//!   read, and neither acknowledged nor held by an open run ([`InFlight::held_by_run`]).
//!
//! A reader takes permits of both before it reads ([`InFlight::reserve`]) and keeps one of each per
//! entry it admits; an acknowledgement gives them back ([`InFlight::release`]), and an entry an
//! open run holds gives its `ahead` permit back when the run takes it. So `len() <= max` always, at
//! most `ahead` entries are moving, and reading pauses (the reserve waits) at either bound. The
//! second bound keeps the stages' working set small (a drain reads no further ahead than the
//! stages can use) without limiting how many entries open runs may hold.

use super::EntryId;
use prometheus_client::metrics::gauge::Gauge;
use crate::ids::IdMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct InFlight {
    /// Each entry in flight, and whether an open run holds it.
    entries: Arc<Mutex<IdMap<EntryId, bool>>>,
    permits: Arc<Semaphore>,
    moving: Arc<Semaphore>,
    max: usize,
    /// The read-ahead bound (`moving`'s permits).
    ahead: usize,
    gauge: Option<Gauge>,
}

/// Permits taken for one read; [`InFlight::admit`] keeps those it needs and returns the rest.
/// Dropped without `admit` (a failed read), it returns them all.
#[must_use]
pub struct Reservation {
    n: usize,
    permits: Arc<Semaphore>,
    moving: Arc<Semaphore>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.permits.add_permits(self.n);
        self.moving.add_permits(self.n);
    }
}

impl InFlight {
    /// At most `max` entries in flight, all of them possibly moving; `gauge` (if any) shows the
    /// current count.
    pub fn new(max: usize, gauge: Option<Gauge>) -> InFlight {
        InFlight::with_read_ahead(max, max, gauge)
    }

    /// At most `max` entries in flight, of which at most `ahead` (clamped to `1..=max`) moving.
    pub fn with_read_ahead(max: usize, ahead: usize, gauge: Option<Gauge>) -> InFlight {
        let max = max.max(1);
        let ahead = ahead.clamp(1, max);
        InFlight { entries: Default::default(), permits: Arc::new(Semaphore::new(max)), moving: Arc::new(Semaphore::new(ahead)), max, ahead, gauge }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn len(&self) -> usize {
        self.entries.lock().expect("inflight poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until `n` more entries (at most the read-ahead bound) may be read and may move.
    pub async fn reserve(&self, n: usize) -> Reservation {
        let n = n.clamp(1, self.ahead) as u32;
        self.permits.acquire_many(n).await.expect("the semaphore is never closed").forget();
        self.moving.acquire_many(n).await.expect("the semaphore is never closed").forget();
        Reservation { n: n as usize, permits: self.permits.clone(), moving: self.moving.clone() }
    }

    /// Keeps the entries not already held here (a re-read of one we hold is dropped), one permit
    /// each, and returns unused permits.
    pub fn admit<T>(&self, mut r: Reservation, got: Vec<T>, id: impl Fn(&T) -> &EntryId) -> Vec<T> {
        let mut entries = self.entries.lock().expect("inflight poisoned");
        let mut kept = Vec::with_capacity(got.len());
        for e in got {
            if kept.len() < r.n && !entries.contains_key(id(&e)) {
                entries.insert(id(&e).clone(), false);
                kept.push(e);
            }
        }
        r.n -= kept.len(); // the rest go back when `r` drops
        self.show(entries.len());
        kept
    }

    /// Forgets acknowledged entries and frees their permits.
    pub fn release<'a>(&self, ids: impl IntoIterator<Item = &'a EntryId>) {
        let mut entries = self.entries.lock().expect("inflight poisoned");
        let (mut gone, mut moved) = (0, 0);
        for id in ids {
            if let Some(by_run) = entries.remove(id) {
                gone += 1;
                moved += usize::from(!by_run);
            }
        }
        self.permits.add_permits(gone);
        self.moving.add_permits(moved);
        self.show(entries.len());
    }

    /// An open run holds this entry until its end: it no longer counts as moving (its permit of
    /// the read-ahead bound is freed; the one of `max` stays until it is acknowledged).
    pub fn held_by_run(&self, id: &EntryId) {
        let mut entries = self.entries.lock().expect("inflight poisoned");
        if let Some(by_run @ false) = entries.get_mut(id) {
            *by_run = true;
            self.moving.add_permits(1);
        }
    }

    /// The IDs held now (to refresh their idle time in the group).
    pub fn snapshot(&self) -> Vec<EntryId> {
        self.entries.lock().expect("inflight poisoned").keys().cloned().collect()
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

    #[tokio::test]
    async fn entries_held_by_runs_stop_counting_against_the_read_ahead_bound() {
        let ids = |r: std::ops::Range<u32>| r.map(|i| i.to_string()).collect::<Vec<_>>();
        let f = InFlight::with_read_ahead(10, 4, None);
        let kept = f.admit(f.reserve(4).await, ids(0..4), |s| s);
        assert_eq!(kept.len(), 4);
        let f2 = f.clone();
        let blocked = tokio::spawn(async move { f2.reserve(2).await.n });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!blocked.is_finished(), "4 entries moving: the read-ahead bound pauses reading although 6 of max are free");
        f.held_by_run(&"0".to_string());
        f.held_by_run(&"0".to_string()); // twice: one permit
        f.held_by_run(&"1".to_string());
        assert_eq!(tokio::time::timeout(std::time::Duration::from_secs(5), blocked).await.unwrap().unwrap(), 2);
        // Acknowledging held entries frees no read-ahead permit; acknowledging moving ones does.
        f.release(&ids(0..2));
        assert_eq!((f.len(), f.moving.available_permits(), f.permits.available_permits()), (2, 2, 8));
        f.release(&ids(2..4));
        assert_eq!((f.len(), f.moving.available_permits(), f.permits.available_permits()), (0, 4, 10));
        assert_eq!(InFlight::with_read_ahead(10, 4, None).reserve(9).await.n, 4, "one read asks for no more than the bound");
    }
}
