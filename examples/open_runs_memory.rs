//! Memory per open run in the assembler: `open_runs_memory [RUNS] [REPEATS]` opens RUNS runs
//! (default 100,000) with the Python producer's opening record (a pre-chain `tracer_call` with a
//! snapshot, held unacknowledged until the run ends), REPEATS times (default 5), and prints the
//! heap bytes per open run (counted by a global allocator: every live allocation the assembler
//! holds, the held stream entry's payload included) and the RSS growth per run, each the median of
//! the repeats. Each repeat runs in a process of its own.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use vcon_otel::assemble::{Assembler, Settings};
use vcon_otel::compliance::StepHash;
use vcon_otel::enrich::Enriched;
use vcon_otel::metrics::Metrics;
use vcon_otel::stream::Entry;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn rss() -> i64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<i64>().ok()).unwrap_or(0) * 1024
}

/// The opening record of run `i` as the Python producer writes it (tracer-only mode).
fn opening(i: usize) -> Vec<u8> {
    let uuid = format!("{:08x}-1c2d-4e5f-8a9b-{:012x}", i, i);
    let run = format!("{:032x}", i * 7919);
    let ts = 1_764_000_000_000_000_000u64 + i as u64 * 1_000;
    serde_json::json!({"v": 1, "event": "tracer_call", "run": run, "vcon_uuid": uuid, "ts_ns": ts, "start_ns": ts - 500,
        "run_start_ns": ts - 900, "seq": 0, "links": ["transcribe", "summarize", "diarize", "tag", "webhook_out"],
        "link_index": -1, "tracer": "otel", "in_vcon_uuid": uuid, "out_vcon_uuid": uuid, "call_ns": 41_000,
        "producer": {"host": "conserver-worker-7", "pid": 4242, "thread": 139_872_345_678_912u64},
        "compliance": {"snapshot": format!("vcon_otel:snap:{uuid}:{run}:0")}})
    .to_string()
    .into_bytes()
}

/// Which parts of the opening to keep (for the breakdown): `full`, `no_payload` (the held entry
/// without its record bytes), `no_hash` (no compliance hash), `bare` (neither, and no links,
/// producer or tracer fields).
static mut MODE: &str = "full";

fn mode() -> &'static str {
    unsafe { MODE }
}

fn item(i: usize) -> Enriched {
    let mut bytes = opening(i);
    if mode() == "bare" {
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for k in ["links", "producer", "tracer", "in_vcon_uuid", "out_vcon_uuid", "call_ns", "compliance"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v["event"] = "chain_start".into();
        v.as_object_mut().unwrap().remove("link_index");
        bytes = v.to_string().into_bytes();
    }
    let record = vcon_otel::event::decode(&bytes).expect("a valid record");
    let hash = StepHash { sha256_hex: format!("{:064x}", i), sha512_token: None, counts: Some([2, 1, 0, 0]) };
    let payload = if matches!(mode(), "no_payload" | "bare") { None } else { Some(bytes.into()) };
    let hash = if matches!(mode(), "no_hash" | "bare") { None } else { Some(hash) };
    let entry = Entry { id: format!("1764000000000-{i}"), payload };
    Enriched { entry, record, hash, unknown: None, chain: None, vcon_json: None }
}

/// (heap bytes per run, RSS bytes per run) for one repeat: the heap the assembler frees when it
/// is dropped, and the RSS growth while the runs were opened.
fn once(runs: usize) -> (f64, f64) {
    let settings = Settings { max_open: runs + 1, ..Settings::default() };
    let mut a = Assembler::new(settings, Arc::new(Metrics::new(200)));
    let now = Instant::now();
    let rss0 = rss();
    for i in 0..runs {
        assert!(a.accept(item(i), now).is_empty(), "an opening record produces no output");
    }
    assert_eq!(a.open_runs(), runs);
    let (heap1, rss1) = (LIVE.load(Ordering::Relaxed), rss());
    drop(a);
    let held = heap1 - LIVE.load(Ordering::Relaxed);
    (held as f64 / runs as f64, (rss1 - rss0) as f64 / runs as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        unsafe { MODE = Box::leak(args[2].clone().into_boxed_str()) };
        let (h, r) = once(args[1].parse().expect("RUNS"));
        println!("{h} {r}");
        return;
    }
    let runs: usize = args.first().map(|x| x.parse().expect("RUNS")).unwrap_or(100_000);
    let repeats: usize = args.get(1).map(|x| x.parse().expect("REPEATS")).unwrap_or(5);
    println!("open runs: {runs}, repeats: {repeats} (one process each), medians; size_of OpenRun {} B, Entry {} B, span event {} B",
        std::mem::size_of::<vcon_otel::assemble::run::OpenRun>(), std::mem::size_of::<Entry>(), std::mem::size_of::<vcon_otel::otlp::span::Event>());
    println!("{:<11} {:>15} {:>15}", "opening", "heap B/run", "RSS B/run");
    for m in ["full", "no_payload", "no_hash", "bare"] {
        let (mut heap, mut rss) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            // Each repeat in a fresh process, so RSS growth is not hidden by memory freed earlier.
            let out = std::process::Command::new(std::env::current_exe().unwrap()).args(["--child", &runs.to_string(), m]).output().unwrap();
            let text = String::from_utf8(out.stdout).unwrap();
            let mut v = text.split_whitespace().map(|x| x.parse::<f64>().unwrap());
            heap.push(v.next().unwrap());
            rss.push(v.next().unwrap());
        }
        println!("{m:<11} {:>15.0} {:>15.0}", median(heap), median(rss));
    }
}
