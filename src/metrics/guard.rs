//! Bounds on labels whose values come from producers (`chain`, `link`, `storage`, `tracer`), so no
//! producer input can make `/metrics` grow without bound (`docs/metrics.md`, "Bounds").
//!
//! Three bounds, applied in this order, each counted when it bites:
//! 1. **Length**: a value longer than `max_len` bytes becomes its first bytes (cut at a character
//!    boundary), `~` and 8 hex digits of its SHA-256, `max_len` bytes in all, so different long
//!    names stay apart (`vcon_otel_label_values_truncated_total{label}`).
//! 2. **Distinct values per label**: past `max_values` values, a new value is reported as `other`
//!    (`vcon_otel_label_values_folded_total{label}`).
//! 3. **Series per family**: past `max_series` label *combinations* in a family (e.g. chain × link
//!    × outcome), a new combination keeps its fixed labels (outcome, side) and reports every
//!    producer label as `other` (`vcon_otel_series_folded_total{family}`). The `other`
//!    combinations themselves are always admitted; there are at most as many as fixed-label values.
//!
//! Each guard remembers at most `max_values` values or `max_series` combinations, each at most
//! `max_len` bytes per producer label, so the guards' own memory is bounded too.

use super::memo::Bumps;
use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt::Write;
use std::sync::Mutex;

/// What a producer label is reported as once a bound is reached.
pub const OTHER: &str = "other";

/// The configured bounds (`metrics:` in the config).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Distinct values per producer label.
    pub max_values: usize,
    /// Bytes per label value (at least 16).
    pub max_len: usize,
    /// Label combinations per metric family.
    pub max_series: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds { max_values: 200, max_len: 64, max_series: 200 }
    }
}

/// `value` cut to at most `max` bytes (`max` ≥ 16): a prefix, `~`, 8 hex digits of its SHA-256.
/// Returns the value unchanged when it fits.
pub fn truncate(value: &str, max: usize) -> Option<String> {
    if value.len() <= max {
        return None;
    }
    let mut cut = max.saturating_sub(9);
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = Sha256::digest(value.as_bytes());
    Some(format!("{}~{}", &value[..cut], hex::encode(&digest[..4])))
}

/// Writes `parts` into `key` (cleared first), each prefixed with its length, so no two different
/// lists of parts give the same key whatever bytes they hold. The series guard and the metric
/// memo key their sets by it.
pub fn input_key<'a>(parts: impl IntoIterator<Item = &'a &'a str>, key: &mut String) {
    key.clear();
    for part in parts {
        let _ = write!(key, "{}:{part}", part.len());
    }
}

/// Keeps one producer label's values short and few.
pub struct LabelGuard {
    max_values: usize,
    max_len: usize,
    seen: Mutex<HashSet<String>>,
    truncated: Counter,
    folded: Counter,
}

impl LabelGuard {
    /// `truncated` and `folded` are this label's series of the two counters.
    pub fn new(bounds: Bounds, truncated: Counter, folded: Counter) -> Self {
        LabelGuard { max_values: bounds.max_values, max_len: bounds.max_len.max(16), seen: Mutex::new(HashSet::new()), truncated, folded }
    }

    /// The value to use as a label: `value` (truncated past `max_len`) while fewer than
    /// `max_values` values were seen, else `other`. Each counter bumped is pushed onto `bumps`.
    pub fn admit(&self, value: &str, bumps: &mut Bumps) -> String {
        let short = truncate(value, self.max_len);
        if short.is_some() {
            self.truncated.inc();
            bumps.push(self.truncated.clone());
        }
        let value = short.as_deref().unwrap_or(value);
        let mut seen = self.seen.lock().expect("label guard poisoned");
        if seen.contains(value) {
            return value.to_string();
        }
        if seen.len() < self.max_values {
            seen.insert(value.to_string());
            return value.to_string();
        }
        self.folded.inc();
        bumps.push(self.folded.clone());
        OTHER.to_string()
    }
}

/// Keeps the number of label combinations of one metric family (or of families that always share
/// their labels, like a duration histogram and its runs counter) bounded.
pub struct SeriesGuard {
    max: usize,
    seen: Mutex<HashSet<String>>,
    folded: Counter,
}

impl SeriesGuard {
    pub fn new(bounds: Bounds, folded: Counter) -> Self {
        SeriesGuard { max: bounds.max_series, seen: Mutex::new(HashSet::new()), folded }
    }

    /// Whether the combination of (already admitted) producer values `producer` with the fixed
    /// labels `fixed` may be a series of its own; false means: report the producer labels as
    /// `other`. A combination whose producer values are all `other` is always admitted. The
    /// counter, when bumped, is pushed onto `bumps`.
    pub fn admit(&self, producer: &[&str], fixed: &[&str], bumps: &mut Bumps) -> bool {
        if producer.iter().all(|v| *v == OTHER) {
            return true;
        }
        let mut key = String::new();
        input_key(producer.iter().chain(fixed), &mut key);
        let mut seen = self.seen.lock().expect("series guard poisoned");
        if seen.contains(&key) {
            return true;
        }
        if seen.len() < self.max {
            seen.insert(key);
            return true;
        }
        self.folded.inc();
        bumps.push(self.folded.clone());
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(max_values: usize, max_len: usize, max_series: usize) -> Bounds {
        Bounds { max_values, max_len, max_series }
    }

    #[test]
    fn long_values_are_cut_at_a_char_boundary_and_stay_apart() {
        let a = format!("{}a", "é".repeat(5000));
        let b = format!("{}b", "é".repeat(5000));
        let (ta, tb) = (truncate(&a, 32).unwrap(), truncate(&b, 32).unwrap());
        assert!(ta.len() <= 32 && tb.len() <= 32, "{ta} {tb}");
        assert_ne!(ta, tb, "the hash suffix keeps different names apart");
        assert!(ta.starts_with("éé") && ta.contains('~'));
        assert_eq!(truncate("short", 32), None);
    }

    #[test]
    fn label_guard_truncates_then_caps_values_and_counts_both() {
        let (t, f) = (Counter::default(), Counter::default());
        let g = LabelGuard::new(bounds(2, 16, 10), t.clone(), f.clone());
        assert_eq!(g.admit("a", &mut vec![]), "a");
        let long = g.admit(&"x".repeat(100), &mut vec![]);
        assert_eq!(long.len(), 16);
        assert_eq!(g.admit("c", &mut vec![]), OTHER);
        assert_eq!(g.admit(&"x".repeat(100), &mut vec![]), long, "a truncated value seen before keeps its slot");
        assert_eq!((t.get(), f.get()), (2, 1));
    }

    #[test]
    fn series_guard_caps_combinations_not_values() {
        let f = Counter::default();
        let g = SeriesGuard::new(bounds(10, 64, 3), f.clone());
        assert!(g.admit(&["c1", "l1"], &["ok"], &mut vec![]));
        assert!(g.admit(&["c1", "l2"], &["ok"], &mut vec![]));
        assert!(g.admit(&["c2", "l1"], &["ok"], &mut vec![]));
        assert!(!g.admit(&["c2", "l2"], &["ok"], &mut vec![]), "a fourth combination of known values is folded");
        assert!(g.admit(&["c1", "l1"], &["ok"], &mut vec![]), "known combinations stay");
        assert!(g.admit(&[OTHER, OTHER], &["error"], &mut vec![]), "the overflow series is always admitted");
        assert_eq!(f.get(), 1);
        let one = SeriesGuard::new(bounds(10, 64, 1), Counter::default());
        assert!(one.admit(&["ab", "c"], &["ok"], &mut vec![]));
        assert!(!one.admit(&["a", "bc"], &["ok"], &mut vec![]), "length prefixes keep fields apart");
    }
}
