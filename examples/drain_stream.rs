//! Benchmark baseline: reads the event stream with a consumer group and acknowledges every entry,
//! doing nothing else — the Redis I/O floor under the bridge. Reads until a read comes back empty.
//! Usage: `drain_stream REDIS_URL STREAM [GROUP=baseline]` (a new GROUP starts at the stream's
//! first entry, so one filled stream can be drained several times).

use redis::streams::StreamReadReply;

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let stream = args.next().unwrap_or_else(|| "vcon_otel:events".into());
    let group = args.next().unwrap_or_else(|| "baseline".into());
    let mut conn = redis::Client::open(url).expect("url").get_connection().expect("connect");
    let _: redis::RedisResult<()> = redis::cmd("XGROUP").arg("CREATE").arg(&stream).arg(&group).arg("0").query(&mut conn);
    let mut total = 0usize;
    loop {
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP").arg(&group).arg("c").arg("COUNT").arg(512).arg("STREAMS").arg(&stream).arg(">")
            .query(&mut conn)
            .expect("XREADGROUP");
        let ids: Vec<String> = reply.map(|r| r.keys.into_iter().flat_map(|k| k.ids).map(|i| i.id).collect()).unwrap_or_default();
        if ids.is_empty() {
            break;
        }
        total += ids.len();
        let _: i64 = redis::cmd("XACK").arg(&stream).arg(&group).arg(&ids).query(&mut conn).expect("XACK");
    }
    println!("drained {total}");
}
