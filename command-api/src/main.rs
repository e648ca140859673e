//! `expereon`: the ledger's HTTP server.

/// jemalloc rather than glibc's malloc: under load glibc's per-thread arenas
/// kept about 300 MB of freed memory that never went back (BENCHMARKS.md,
/// issue 10), and malloc/free took about a fifth of the CPU (issue 13).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    command_api::cli::main()
}
