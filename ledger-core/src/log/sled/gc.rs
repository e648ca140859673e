//! Memory that sled 0.34 frees late: every insert replaces a tree node and
//! hands the old one to crossbeam-epoch's global collector, which frees at
//! most 8 bags (of 64 objects) each time some thread pins 128 times or
//! flushes. An append of 20,000 events is one `apply_batch`: one pin, tens of
//! thousands of deferred nodes. Nothing else pins often enough to catch up,
//! so the backlog grew with every append: `replay-tool generate` reached
//! 4.4 GB of resident memory at 1M events, almost all of it dead nodes
//! (heaptrack), and was killed at 24 GB short of 10M. Pinning and flushing
//! after each append advances the epoch and collects the backlog: 0.7 GB at
//! 1M, flat at about 1 GB from 2M on. `SledLog::append` does it, so the
//! server's group commits (and the API log's writes, whose garbage goes to
//! the same collector) are covered as well as the tools.
//!
//! The collector is the process-wide default one sled uses (the same
//! crossbeam-epoch 0.9 crate in the build), so this needs no access to
//! sled's internals.

/// Frees the garbage of an append of `events` events. Each iteration
/// collects at most 8 bags of 64 objects; an event is at most two sled
/// writes (its block, its stream's chunk) and each defers a few objects, so
/// `events / 16` iterations cover a batch with room to spare, and iterations
/// past an empty queue cost next to nothing.
pub(crate) fn reclaim_after_append(events: usize) {
    for _ in 0..(events / 16).max(64) {
        let guard = crossbeam_epoch::pin();
        guard.flush();
    }
}
