fn rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
        .collect::<Vec<_>>()
        .join(" ")
}
#[test]
fn rss_after_open() {
    let path = std::env::var("LOGDIR").unwrap();
    let scan = std::env::var("SCAN").is_ok();
    println!("before {}", rss());
    let t = std::time::Instant::now();
    let db = sled::Config::new()
        .path(&path)
        .cache_capacity(64 << 20)
        .flush_every_ms(None)
        .open()
        .unwrap();
    println!("sled open {:?} {}", t.elapsed(), rss());
    if scan {
        for p in [b'E', b'S', b'B', b'V', b'I', b'T'] {
            let n = db.scan_prefix([p]).keys().count();
            println!("{} {} {}", p as char, n, rss());
        }
    }
    if std::env::var("MERGE").is_ok() {
        for round in 0..4 {
            let t = std::time::Instant::now();
            for p in [b'E', b'S'] {
                let n = db.scan_prefix([p]).count();
                assert_eq!(n, 0);
            }
            println!("merge round {round} {:?} {}", t.elapsed(), rss());
        }
        db.flush().unwrap();
    }
    println!("size_on_disk {:?}", db.size_on_disk());
}
