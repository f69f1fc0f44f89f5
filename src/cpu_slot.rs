//! One heavy crypto operation (RSA key generation, RSA signature) at a time for this user on
//! this machine, so that at least one core stays free of them.
//!
//! The threads doing them run in `SCHED_IDLE`, but that only ranks them below the threads of
//! their own scheduling group (nginx's autogroup or cgroup). Measured with P8 on 2 cores: with
//! RSA work free to run on both cores, handshakes while issuing had a p99 1.7-2.0 times the
//! idle one; one at a time, 1.3-1.4, and the 40 certificates took as long (docs/BENCHMARKS.md).
//!
//! The slot is an exclusive `flock` on `<tmp>/resty-acme-<euid>.lock`: a waiting thread sleeps
//! in the kernel (no polling) and a thread or process that dies releases it. The file must be
//! a regular file of ours, opened without following links; otherwise (another user planted
//! it, no temp dir) the work runs without the slot rather than not at all.
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A held slot; dropping it (closing the file) releases it.
#[derive(Debug)]
pub struct Slot {
    _file: File,
}

/// The lock file of this user.
pub fn default_path() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    std::env::temp_dir().join(format!("resty-acme-{euid}.lock"))
}

/// Waits for the slot at `path`; `None` when it cannot be had safely (see the module docs).
pub fn acquire_at(path: &Path) -> Option<Slot> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if !meta.file_type().is_file() || meta.uid() != unsafe { libc::geteuid() } {
        return None;
    }
    loop {
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Some(Slot { _file: file });
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return None;
        }
    }
}

/// Waits for this user's slot.
pub fn acquire() -> Option<Slot> {
    acquire_at(&default_path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cpu-slot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn holders_take_turns_and_a_dropped_slot_is_free_again() {
        let path = Arc::new(scratch("turns.lock"));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (path, spans) = (Arc::clone(&path), Arc::clone(&spans));
                std::thread::spawn(move || {
                    let slot = acquire_at(&path).expect("slot");
                    let start = Instant::now();
                    std::thread::sleep(Duration::from_millis(30));
                    spans.lock().unwrap().push((start, Instant::now()));
                    drop(slot);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut spans = spans.lock().unwrap().clone();
        spans.sort();
        assert_eq!(spans.len(), 3);
        for w in spans.windows(2) {
            assert!(w[1].0 >= w[0].1, "two holders at once: {spans:?}");
        }
        let mode = std::fs::metadata(&*path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_link_in_its_place_is_not_followed() {
        let target = scratch("target");
        std::fs::write(&target, b"").unwrap();
        let link = scratch("link.lock");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(acquire_at(&link).is_none());
    }

    #[test]
    fn a_directory_in_its_place_is_no_slot() {
        let dir = scratch("dir.lock");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(acquire_at(&dir).is_none());
    }
}
