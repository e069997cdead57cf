//! Hashing throughput of `Vcon.hash` in process: `hash_bench FILE REPEAT` prints MB/s (input bytes).

fn main() {
    let mut a = std::env::args().skip(1);
    let path = a.next().expect("FILE");
    let n: usize = a.next().map(|x| x.parse().expect("REPEAT")).unwrap_or(20);
    let bytes = std::fs::read(&path).expect("read");
    let t = std::time::Instant::now();
    let mut last = String::new();
    for _ in 0..n {
        last = vcon_otel::compliance::vcon_hash(&bytes).expect("hash").sha256_hex;
    }
    let secs = t.elapsed().as_secs_f64();
    println!("{:.1} {}", (bytes.len() * n) as f64 / secs / 1e6, last);
}
