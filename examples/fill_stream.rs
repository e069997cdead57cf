//! Fills the event stream with tracer-only runs of a 3-link chain (4 records per run) without
//! snapshots, quickly, for profiling the bridge's path without snapshots (`scripts/bench/pipeline.sh`
//! fills its streams through the real Python producer instead). Usage: `fill_stream REDIS_URL STREAM RECORDS`.

use redis::Commands;

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let stream = args.next().unwrap_or_else(|| "vcon_otel:events".into());
    let records: u64 = args.next().map(|n| n.parse().expect("record count")).unwrap_or(200_000);
    let mut conn = redis::Client::open(url).expect("url").get_connection().expect("connect");
    let links = ["transcribe", "summarize", "tag"];
    let mut pipe = redis::pipe();
    let mut written = 0u64;
    let mut run = 0u64;
    let t0 = 1_700_000_000_000_000_000u64;
    while written < records {
        let uuid = format!("00000000-0000-4000-8000-{run:012}");
        for i in -1i64..3 {
            let ts = t0 + run * 1_000_000 + ((i + 1) as u64) * 100_000;
            let r = format!(
                r#"{{"v":1,"event":"tracer_call","run":"{run:x}","vcon_uuid":"{uuid}","ts_ns":{ts},"start_ns":{},"run_start_ns":{},"seq":{},"links":["transcribe","summarize","tag"],"link_index":{i},"tracer":"otel","in_vcon_uuid":"{uuid}","out_vcon_uuid":"{uuid}","call_ns":90000,"producer":{{"host":"bench","pid":1}}}}"#,
                ts - 90_000,
                t0 + run * 1_000_000,
                i + 1
            );
            pipe.cmd("XADD").arg(&stream).arg("*").arg("r").arg(r).ignore();
            written += 1;
        }
        let _ = links;
        run += 1;
        if run % 500 == 0 {
            let _: () = pipe.query(&mut conn).expect("XADD");
            pipe = redis::pipe();
        }
    }
    if run % 500 != 0 {
        let _: () = pipe.query(&mut conn).expect("XADD");
    }
    let len: u64 = conn.xlen(&stream).expect("XLEN");
    println!("stream {stream} holds {len} entries");
}
