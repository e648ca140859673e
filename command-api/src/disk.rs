//! A floor of free disk space under the data directory. Below it, writes are
//! refused (503) before they reach the log, uploads before their bytes are
//! stored, and API-log records are dropped: sled does not survive running
//! out of space in the middle of a write (a full disk once left a log that
//! would not open), so the server stops short of it. Reads go on.
//!
//! The free space is measured once a second (and at start); a burst between
//! two measures can spend at most what a second of writes takes, which the
//! floor is sized to absorb.

use crate::error::ApiError;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub struct DiskGuard {
    dir: PathBuf,
    floor: u64,
    /// Bytes available to the server at the last measure (`u64::MAX` if it
    /// could not be measured: an unknown is not a reason to stop writing).
    free: AtomicU64,
}

impl DiskGuard {
    pub fn new(dir: &Path, floor: u64) -> Self {
        let guard = Self {
            dir: dir.to_owned(),
            floor,
            free: AtomicU64::new(u64::MAX),
        };
        guard.measure();
        guard
    }

    /// Measures the free space again; logs when the floor is crossed either
    /// way.
    pub fn measure(&self) {
        let was_low = self.is_low();
        let free = match available_bytes(&self.dir) {
            Ok(free) => free,
            Err(e) => {
                tracing::warn!(error = %e, dir = %self.dir.display(), "measuring free disk space");
                u64::MAX
            }
        };
        self.free.store(free, Relaxed);
        match (was_low, self.is_low()) {
            (false, true) => tracing::error!(
                free,
                floor = self.floor,
                "free disk space is below EXPEREON_MIN_FREE_DISK_BYTES: writes are refused (503) until space is freed"
            ),
            (true, false) => tracing::info!(free, "free disk space is above the floor again: writes resume"),
            _ => {}
        }
    }

    pub fn is_low(&self) -> bool {
        self.free.load(Relaxed) < self.floor
    }

    pub fn free_bytes(&self) -> u64 {
        self.free.load(Relaxed)
    }

    pub fn floor_bytes(&self) -> u64 {
        self.floor
    }

    /// Whether a write may go ahead.
    pub fn check(&self) -> Result<(), ApiError> {
        if self.is_low() {
            Err(ApiError::DiskFull {
                free: self.free_bytes(),
                floor: self.floor,
            })
        } else {
            Ok(())
        }
    }
}

/// Bytes an unprivileged process may still write on the file system holding
/// `dir` (`statvfs`'s `f_bavail × f_frsize`).
fn available_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `stat` a buffer of
    // the right type, which statvfs fills when it returns 0.
    let rc = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `stat`.
    let stat = unsafe { stat.assume_init() };
    // Both are u64 on Linux (c_ulong; fsblkcnt_t).
    #[allow(clippy::useless_conversion)]
    let (blocks, size) = (u64::from(stat.f_bavail), u64::from(stat.f_frsize));
    Ok(blocks.saturating_mul(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_compared_with_the_space_measured() {
        let dir = tempfile::tempdir().unwrap();
        let free = available_bytes(dir.path()).unwrap();
        assert!(free > 0);
        let roomy = DiskGuard::new(dir.path(), 1);
        assert!(!roomy.is_low());
        assert!(roomy.check().is_ok());
        let cramped = DiskGuard::new(dir.path(), u64::MAX);
        assert!(cramped.is_low());
        assert_eq!(cramped.floor_bytes(), u64::MAX);
        assert_eq!(roomy.floor_bytes(), 1);
        assert!(matches!(
            cramped.check(),
            Err(ApiError::DiskFull {
                floor: u64::MAX,
                ..
            })
        ));
        // Exactly at the floor is not below it.
        let guard = DiskGuard::new(dir.path(), 0);
        guard.free.store(10, Relaxed);
        let at = DiskGuard { floor: 10, ..guard };
        assert!(!at.is_low());
        at.free.store(9, Relaxed);
        assert!(at.is_low());
    }

    #[test]
    fn a_directory_that_cannot_be_measured_does_not_stop_writes() {
        let guard = DiskGuard::new(Path::new("/no/such/directory/here"), u64::MAX - 1);
        assert_eq!(guard.free_bytes(), u64::MAX);
        assert!(!guard.is_low());
    }
}
