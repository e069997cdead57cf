//! Memory per open run in the assembler: `open_runs_memory [RUNS] [REPEATS]` opens RUNS runs
//! (default 100,000) with the Python producer's opening records, REPEATS times (default 5), and
//! prints the heap bytes per open run (counted by a global allocator: every live allocation the
//! assembler holds) and the RSS growth per run, each the median of the repeats. Each repeat runs
//! in a process of its own.
//!
//! The openings are the records `python/vcon_otel` writes, byte for byte except for the run, the
//! vCon UUID, the times and the host name (captured from the tracer and hooks against a real Redis):
//! - `tracer`: tracer-only mode, the pre-chain `tracer_call` (five links, a compliance snapshot);
//! - `tracer_ctx`: the same from an instrumented conserver on a vCon that ran before (`traceparent`
//!   and `prev_run`);
//! - `hooks`: hooks and tracer, the `chain_start` (chain, ingress list, snapshot) and the pre-chain
//!   `tracer_call` (`same_as` the `chain_start`): two held entries;
//! - `bare`: a `chain_start` with only the required fields.
//!
//! The entries are handed over as the reader makes them (the ID and the record bytes, sized exactly,
//! as read from Redis); what the assembler keeps of them is part of what is measured. The producers
//! are 8 threads of one worker process. The last row is the reader's in-flight set (`stream::InFlight`), which holds the
//! ID of every entry read and not yet acknowledged, so of every held entry, outside the assembler.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use vcon_otel::assemble::{Assembler, Settings};
use vcon_otel::compliance::StepHash;
use vcon_otel::enrich::Enriched;
use vcon_otel::metrics::Metrics;
use vcon_otel::stream::{Entry, InFlight};

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

const PRODUCER: &str = r#""producer":{"host":"conserver-worker-7","pid":4242,"thread":THREAD}"#;
const LINKS: &str = r#"["transcribe","summarize","diarize","tag","webhook_out"]"#;

const TRACER: &str = r#"{"v":1,"event":"tracer_call","run":"RUN","vcon_uuid":"UUID","ts_ns":TS,"run_start_ns":TS,"seq":0,PRODUCER,"links":LINKS,"link_index":-1,"tracer":"otel","in_vcon_uuid":"UUID","out_vcon_uuid":"UUID","call_ns":136977,"compliance":{"snapshot":"vcon_otel:snap:RUN:0"}}"#;
const TRACER_CTX: &str = r#"{"v":1,"event":"tracer_call","run":"RUN","vcon_uuid":"UUID","ts_ns":TS,"run_start_ns":TS,"seq":0,PRODUCER,"links":LINKS,"link_index":-1,"tracer":"otel","in_vcon_uuid":"UUID","out_vcon_uuid":"UUID","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","call_ns":136977,"prev_run":{"vcon_uuid":"UUID","run":"PREV"},"compliance":{"snapshot":"vcon_otel:snap:RUN:0"}}"#;
const HOOKS_START: &str = r#"{"v":1,"event":"chain_start","run":"RUN","vcon_uuid":"UUID","ts_ns":TS,"run_start_ns":TS,"seq":0,PRODUCER,"chain":"transcription","links":LINKS,"hooks":true,"ingress_list":"transcription_in","out_vcon_uuid":"UUID","compliance":{"snapshot":"vcon_otel:snap:RUN:0"},"tracer":"otel"}"#;
const HOOKS_CALL: &str = r#"{"v":1,"event":"tracer_call","run":"RUN","vcon_uuid":"UUID","ts_ns":TS2,"run_start_ns":TS,"seq":1,PRODUCER,"chain":"transcription","links":LINKS,"hooks":true,"ingress_list":"transcription_in","link_index":-1,"tracer":"otel","in_vcon_uuid":"UUID","out_vcon_uuid":"UUID","compliance":{"same_as":0},"call_ns":58479}"#;
const BARE: &str = r#"{"v":1,"event":"chain_start","run":"RUN","vcon_uuid":"UUID","ts_ns":TS,"run_start_ns":TS,"seq":0}"#;

/// The opening records of run `i` in `mode`.
fn opening(mode: &str, i: usize) -> Vec<String> {
    let templates: &[&str] = match mode {
        "tracer" => &[TRACER],
        "tracer_ctx" => &[TRACER_CTX],
        "hooks" => &[HOOKS_START, HOOKS_CALL],
        "bare" => &[BARE],
        other => panic!("unknown opening {other:?}"),
    };
    let uuid = format!("{:08x}-1c2d-4e5f-8a9b-{:012x}", i, i);
    let ts = 1_796_142_765_012_494_341u64 + i as u64 * 1_000_000;
    templates
        .iter()
        .map(|t| {
            t.replace("PRODUCER", PRODUCER)
                .replace("LINKS", LINKS)
                .replace("THREAD", &(140_226_882_538_368u64 + (i % 8) as u64 * 8_392_704).to_string())
                .replace("RUN", &format!("{:032x}", i * 7919))
                .replace("PREV", &format!("{:032x}", i * 7919 + 1))
                .replace("UUID", &uuid)
                .replace("TS2", &(ts + 28_152_911).to_string())
                .replace("TS", &ts.to_string())
        })
        .collect()
}

/// The record as the enricher hands it on: the step's hash resolved from its snapshot (the
/// `same_as` record has the same one), the chain's name from the record.
fn item(text: &str, i: usize, n: usize) -> Enriched {
    let record = vcon_otel::event::decode(text.as_bytes()).expect("a valid record");
    let hash = record.compliance.as_ref().map(|_| StepHash { sha256_hex: format!("{:064x}", i), sha512_token: None, counts: Some([2, 1, 0, 0]) });
    let entry = Entry { id: format!("{}-{n}", 1_796_142_765_023u64 + i as u64), payload: Some(bytes::Bytes::copy_from_slice(text.as_bytes())) };
    Enriched { entry, chain: record.chain.clone(), record, hash, unknown: None, vcon_json: None, journal: None }
}

/// (heap bytes per run, RSS bytes per run) for one repeat: the heap the assembler frees when it
/// is dropped, and the RSS growth while the runs were opened.
fn once(runs: usize, mode: &str) -> (f64, f64) {
    let settings = Settings { max_open: runs + 1, ..Settings::default() };
    let mut a = Assembler::new(settings, Arc::new(Metrics::new(200)));
    let now = Instant::now();
    let rss0 = rss();
    for i in 0..runs {
        for (n, text) in opening(mode, i).iter().enumerate() {
            assert!(a.accept(item(text, i, n), now).is_empty(), "an opening record produces no output");
        }
    }
    assert_eq!(a.open_runs(), runs);
    let (heap1, rss1) = (LIVE.load(Ordering::Relaxed), rss());
    drop(a);
    let held = heap1 - LIVE.load(Ordering::Relaxed);
    (held as f64 / runs as f64, (rss1 - rss0) as f64 / runs as f64)
}

/// The same for the reader's in-flight set holding one entry ID per run.
fn inflight(runs: usize) -> (f64, f64) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let set = InFlight::new(runs, None);
    let (heap0, rss0) = (LIVE.load(Ordering::Relaxed), rss());
    for chunk in (0..runs).collect::<Vec<_>>().chunks(1000) {
        let reservation = rt.block_on(set.reserve(chunk.len()));
        let got = chunk.iter().map(|&i| Entry { id: format!("{}-0", 1_796_142_765_023u64 + i as u64), payload: None }).collect();
        drop(set.admit(reservation, got, |e| &e.id));
    }
    assert_eq!(set.len(), runs);
    let (heap1, rss1) = (LIVE.load(Ordering::Relaxed), rss());
    ((heap1 - heap0) as f64 / runs as f64, (rss1 - rss0) as f64 / runs as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

const MODES: [&str; 5] = ["tracer", "tracer_ctx", "hooks", "bare", "inflight"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let runs = args[1].parse().expect("RUNS");
        let (h, r) = if args[2] == "inflight" { inflight(runs) } else { once(runs, &args[2]) };
        println!("{h} {r}");
        return;
    }
    let runs: usize = args.first().map(|x| x.parse().expect("RUNS")).unwrap_or(100_000);
    let repeats: usize = args.get(1).map(|x| x.parse().expect("REPEATS")).unwrap_or(5);
    println!("open runs: {runs}, repeats: {repeats} (one process each), medians; size_of OpenRun {} B, Entry {} B",
        std::mem::size_of::<vcon_otel::assemble::run::OpenRun>(), std::mem::size_of::<Entry>());
    for m in MODES {
        let bytes: Vec<usize> = if m == "inflight" { vec![] } else { opening(m, 0).iter().map(String::len).collect() };
        println!("  {m}: record bytes {bytes:?}");
    }
    println!("{:<11} {:>15} {:>15}", "opening", "heap B/run", "RSS B/run");
    for m in MODES {
        let (mut heap, mut rss) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            // Each repeat in a fresh process, so RSS growth is not hidden by memory freed earlier.
            let out = std::process::Command::new(std::env::current_exe().unwrap()).args(["--child", &runs.to_string(), m]).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let text = String::from_utf8(out.stdout).unwrap();
            let mut v = text.split_whitespace().map(|x| x.parse::<f64>().unwrap());
            heap.push(v.next().unwrap());
            rss.push(v.next().unwrap());
        }
        println!("{m:<11} {:>15.0} {:>15.0}", median(heap), median(rss));
    }
}
