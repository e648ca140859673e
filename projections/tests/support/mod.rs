//! What the projection tests share: the golden v1 log (every v1 event type),
//! checked link by link from genesis.

use ledger_core::events::RecordedEvent;
use ledger_core::log::{verify_link, RawEvent, GENESIS_HASH};
use std::path::PathBuf;

/// Every event of the golden log with its chain hash.
pub fn golden() -> Vec<(RecordedEvent, [u8; 32])> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../ledger-core/tests/fixtures/golden-v1/events.hex");
    let text = std::fs::read_to_string(path).expect("golden log");
    let mut previous = GENESIS_HASH;
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let raw = RawEvent {
                seq: f[0].parse().expect("seq"),
                encoded: hex::decode(f[1]).expect("hex"),
                hash: hex::decode(f[2])
                    .expect("hex")
                    .try_into()
                    .expect("32 bytes"),
            };
            let e = verify_link(&previous, &raw).expect("chain");
            previous = raw.hash;
            (e, raw.hash)
        })
        .collect()
}
