//! Series resolved once per distinct producer input. Resolving a combination of producer values
//! (chain, link, outcome, …) to a series takes the [`super::guard`]s' decisions (cut, fold) and a
//! family lookup, with a label `String` per value; a [`Memo`] keeps the result — the series'
//! handles and the guard counters the decision bumped — so a repeat costs one map lookup and the
//! same counter bumps. A guard's decision for a given input never changes (its sets only grow), so
//! a remembered series is the one the guards would give again.
//!
//! Bounded: at most [`MAX_INPUTS`] distinct inputs per memo; past that, an input not remembered is
//! resolved through the guards every time (as if there were no memo), so hostile producer values
//! cost time, never memory.

use super::guard::input_key;
use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::sync::Mutex;

/// Most distinct inputs a memo remembers.
pub const MAX_INPUTS: usize = 4096;

/// The guard counters one resolution bumped (cut, folded value, folded series), bumped again on
/// every repeat, so the counters count observations as they do without a memo.
pub type Bumps = Vec<Counter>;

/// Resolved series handles `H` by input.
pub struct Memo<H> {
    inner: Mutex<Inner<H>>,
}

struct Inner<H> {
    by_input: HashMap<Box<str>, (H, Bumps)>,
    /// The key of the input being looked up (kept to save its allocation).
    key: String,
}

impl<H: Clone> Default for Memo<H> {
    fn default() -> Self {
        Memo { inner: Mutex::new(Inner { by_input: HashMap::new(), key: String::new() }) }
    }
}

impl<H: Clone> Memo<H> {
    /// The handles of the series for `input`: remembered, or `resolve`d (which pushes onto its
    /// argument every counter it bumped) and remembered while there is room.
    pub fn get(&self, input: &[&str], resolve: impl FnOnce(&mut Bumps) -> H) -> H {
        let mut inner = self.inner.lock().expect("metrics memo poisoned");
        let Inner { by_input, key } = &mut *inner;
        input_key(input, key);
        if let Some((handle, bumps)) = by_input.get(key.as_str()) {
            bumps.iter().for_each(|c| {
                c.inc();
            });
            return handle.clone();
        }
        let mut bumps = Bumps::new();
        let handle = resolve(&mut bumps);
        if by_input.len() < MAX_INPUTS {
            by_input.insert(key.as_str().into(), (handle.clone(), bumps));
        }
        handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_is_not_resolved_again_but_bumps_the_same_counters() {
        let (memo, bumped) = (Memo::<u32>::default(), Counter::default());
        let mut resolved = 0;
        for _ in 0..3 {
            let h = memo.get(&["chain", "link"], |b| {
                resolved += 1;
                bumped.inc();
                b.push(bumped.clone());
                7
            });
            assert_eq!(h, 7);
        }
        assert_eq!((resolved, bumped.get()), (1, 3));
        assert_eq!(memo.get(&["chai", "nlink"], |_| 8), 8, "length prefixes keep inputs apart");
    }

    #[test]
    fn past_its_bound_an_input_is_resolved_every_time() {
        let memo = Memo::<usize>::default();
        (0..MAX_INPUTS).for_each(|i| {
            memo.get(&[&i.to_string()], |_| i);
        });
        let mut resolved = 0;
        for _ in 0..2 {
            memo.get(&["one more"], |_| {
                resolved += 1;
                0
            });
        }
        assert_eq!(resolved, 2);
        assert_eq!(memo.get(&["5"], |_| unreachable!("remembered")), 5);
    }
}
