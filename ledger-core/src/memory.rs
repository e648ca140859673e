//! Giving freed heap memory back to the operating system.
//!
//! Rationale: building the write model (a replay, a snapshot's decode) and
//! copying it for a snapshot free hundreds of megabytes in many small
//! blocks. glibc keeps such freed pages in its heaps, where they count as
//! the server's resident memory for the rest of its life, so after those
//! moments we ask it to return them.

/// Returns the allocator's free pages to the operating system (glibc's
/// `malloc_trim`); a no-op elsewhere.
pub fn give_back_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only releases pages of
    // the allocator's own heaps that hold no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}
