//! A paced producer for the latency benchmark: appends tracer-call records at a steady RATE per
//! second for SECS seconds, as `vcon_otel.tracer.run` does with its default options (one pipeline
//! per call: `COPY vcon:{uuid} vcon_otel:snap:{run}:{seq} REPLACE`, `EXPIRE … 600`, `XADD`), with
//! the same record fields in the same order. Each run is a tracer-only run of a 3-link chain (4
//! calls, written back to back); runs cycle through the given stored vCons. With `none` it writes
//! the records without a snapshot (`snapshot: none`). Unlike the Python tracer it does not keep
//! the "last run of this vCon" pointer, so records carry no `prev_run`.
//!
//! Every millisecond it sends, in one round trip, the calls due by then (so the rate holds even
//! when a round trip is slow); `ts_ns` is the wall clock when the record is built, just before it
//! is sent, as in the Python tracer. Prints the calls sent and the achieved rate.
//!
//! Usage: `pace_stream REDIS_URL STREAM RATE SECS copy|none VCON_UUID...`

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LINKS: &str = r#"["transcribe","summarize","tag"]"#;

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos() as u64
}

/// The record of call `idx` (-1..=2) of a run, as the Python tracer serializes it.
fn record(run: &str, uuid: &str, run_start: u64, idx: i64, ts: u64, last_ns: u64, snapshot: Option<&str>) -> String {
    let seq = idx + 1;
    let mut r = format!(
        r#"{{"v":1,"event":"tracer_call","run":"{run}","vcon_uuid":"{uuid}","ts_ns":{ts},"run_start_ns":{run_start},"seq":{seq},"producer":{{"host":"bench","pid":{},"thread":1}},"links":{LINKS},"link_index":{idx},"tracer":"otel","in_vcon_uuid":"{uuid}","out_vcon_uuid":"{uuid}""#,
        std::process::id()
    );
    if idx >= 0 {
        r.push_str(&format!(r#","start_ns":{last_ns}"#));
    }
    r.push_str(r#","call_ns":30000"#);
    if let Some(k) = snapshot {
        r.push_str(&format!(r#","compliance":{{"snapshot":"{k}"}}"#));
    }
    r.push('}');
    r
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 6 {
        eprintln!("usage: pace_stream REDIS_URL STREAM RATE SECS copy|none VCON_UUID...");
        std::process::exit(2);
    }
    let (url, stream) = (&args[0], &args[1]);
    let rate: f64 = args[2].parse().expect("RATE");
    let secs: f64 = args[3].parse().expect("SECS");
    let copy = match args[4].as_str() {
        "copy" => true,
        "none" => false,
        other => panic!("snapshot mode must be copy or none, got {other:?}"),
    };
    let vcons = &args[5..];
    let mut conn = redis::Client::open(url.as_str()).expect("url").get_connection().expect("connect");
    let total = (rate * secs) as u64;
    let prefix = now_ns();
    let t0 = Instant::now();
    let (mut sent, mut run_no) = (0u64, 0u64);
    let (mut run, mut uuid, mut run_start, mut last_ns) = (String::new(), "", 0u64, 0u64);
    while sent < total {
        let due = ((t0.elapsed().as_secs_f64() * rate) as u64).min(total);
        if due > sent {
            let mut pipe = redis::pipe();
            while sent < due {
                let idx = (sent % 4) as i64 - 1;
                let ts = now_ns();
                if idx == -1 {
                    run = format!("{prefix:016x}{run_no:016x}");
                    uuid = &vcons[run_no as usize % vcons.len()];
                    run_start = ts;
                    last_ns = ts;
                    run_no += 1;
                }
                let snap = copy.then(|| format!("vcon_otel:snap:{run}:{}", idx + 1));
                if let Some(k) = &snap {
                    pipe.cmd("COPY").arg(format!("vcon:{uuid}")).arg(k).arg("REPLACE").ignore();
                    pipe.cmd("EXPIRE").arg(k).arg(600).ignore();
                }
                let rec = record(&run, uuid, run_start, idx, ts, last_ns, snap.as_deref());
                pipe.cmd("XADD").arg(stream).arg("*").arg("r").arg(rec).ignore();
                last_ns = ts;
                sent += 1;
            }
            let _: () = pipe.query(&mut conn).expect("pipeline");
        }
        // Until the next millisecond boundary.
        let next_tick = Duration::from_millis(t0.elapsed().as_millis() as u64 + 1);
        if let Some(wait) = next_tick.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    println!("sent {sent} in {elapsed:.3} s: {:.0} calls/s", sent as f64 / elapsed);
}
