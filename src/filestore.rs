//! The file storage format shared with lua-resty-acme's `resty.acme.storage.file`: one file per
//! logical key, named by the key's standard base64, holding `<expiry>::<value>` where `<expiry>`
//! is whole Unix seconds and `0` means never. Writes are atomic (temp file, fsync, rename, fsync
//! of the directory) and private (mode 0600), so a crash never leaves a half-written entry.
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Errors of the file store.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    Io {
        path: PathBuf,
        op: &'static str,
        err: std::io::Error,
    },
    Malformed {
        path: PathBuf,
        why: String,
    },
    InvalidKey(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { path, op, err } => write!(f, "cannot {op} {}: {err}", path.display()),
            StoreError::Malformed { path, why } => {
                write!(f, "malformed store entry {}: {why}", path.display())
            }
            StoreError::InvalidKey(k) => write!(f, "invalid storage key: {k}"),
        }
    }
}

impl std::error::Error for StoreError {}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |err| StoreError::Io {
        path: path.to_path_buf(),
        op,
        err,
    }
}

/// The file name of a logical key: standard base64 as the original writes it. Standard base64
/// may contain `/`, which the original could never store (it named a missing subdirectory);
/// such keys use the URL-safe alphabet instead, which keeps them inside the directory and is
/// told apart on read because standard base64 never contains `_` or `-`.
pub fn file_name(key: &str) -> Result<String, StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey("empty key".into()));
    }
    let std_name = STANDARD.encode(key.as_bytes());
    if std_name.contains('/') {
        Ok(URL_SAFE.encode(key.as_bytes()))
    } else {
        Ok(std_name)
    }
}

/// The logical key of a file name, or `None` for names that are not ours.
pub fn key_of(file_name: &str) -> Option<String> {
    let bytes = if file_name.contains(['_', '-']) {
        URL_SAFE.decode(file_name).ok()?
    } else {
        STANDARD.decode(file_name).ok()?
    };
    String::from_utf8(bytes).ok()
}

/// Splits `<expiry>::<value>`. The value must be non-empty, as the original requires.
pub fn decode_entry(content: &[u8]) -> Option<(i64, &[u8])> {
    let digits = content.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || !content[digits..].starts_with(b"::") {
        return None;
    }
    let expiry: i64 = std::str::from_utf8(&content[..digits]).ok()?.parse().ok()?;
    let value = &content[digits + 2..];
    if value.is_empty() {
        return None;
    }
    Some((expiry, value))
}

/// `<expiry>::<value>`.
pub fn encode_entry(expiry: i64, value: &[u8]) -> Vec<u8> {
    let mut out = format!("{expiry}::").into_bytes();
    out.extend_from_slice(value);
    out
}

/// Writes `data` to a new hidden temp file beside `path` (mode `mode`) and fsyncs it.
fn write_temp(path: &Path, data: &[u8], mode: u32) -> Result<PathBuf, StoreError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}.{}", std::process::id(), unique()));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err(&tmp, "create"))?;
        f.write_all(data).map_err(io_err(&tmp, "write"))?;
        f.sync_all().map_err(io_err(&tmp, "fsync"))
    })();
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes `data` to `path` atomically with `mode` (temp file in the same directory, fsync,
/// rename over the target, fsync of the directory).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), StoreError> {
    let tmp = write_temp(path, data, mode)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::Io {
            path: path.to_path_buf(),
            op: "rename into",
            err: e,
        });
    }
    if let Ok(d) = File::open(path.parent().unwrap_or_else(|| Path::new("."))) {
        // Persist the rename; a failure here does not undo a completed write.
        let _ = d.sync_all();
    }
    Ok(())
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Reads a whole file; `Ok(None)` when it does not exist.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match File::open(path) {
        Ok(mut f) => {
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).map_err(io_err(path, "read"))?;
            Ok(Some(buf))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Io {
            path: path.to_path_buf(),
            op: "open",
            err: e,
        }),
    }
}

/// Removes a file; a missing file is not an error.
pub fn remove(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::Io {
            path: path.to_path_buf(),
            op: "remove",
            err: e,
        }),
    }
}

/// Creates `path` exclusively with `data` (mode `mode`): the atomic primitive behind `add`.
/// Returns `Ok(false)` when the file already exists.
pub fn create_exclusive(path: &Path, data: &[u8], mode: u32) -> Result<bool, StoreError> {
    // The content goes to a temp file first, then is linked into place: link(2) fails when
    // the target exists, so two writers can never both win and no reader sees a partial file.
    let tmp = write_temp(path, data, mode)?;
    let linked = match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(StoreError::Io {
            path: path.to_path_buf(),
            op: "link",
            err: e,
        }),
    };
    let _ = fs::remove_file(&tmp);
    linked
}

/// The names of the regular files directly in `dir` (hidden temp files excluded).
pub fn list(dir: &Path) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir, "list"))? {
        let entry = entry.map_err(io_err(dir, "list"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            if is_stale_temp(&name, &entry) {
                // what a process killed between write and rename left behind
                let _ = fs::remove_file(entry.path());
            }
            continue;
        }
        out.push(name);
    }
    Ok(out)
}

/// A temp file of `write_temp` is renamed within milliseconds of its creation; one older
/// than this is the leftover of a killed process.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(600);

fn is_stale_temp(name: &str, entry: &fs::DirEntry) -> bool {
    if !name.contains(".tmp.") {
        return false;
    }
    let Ok(meta) = entry.metadata() else {
        return false;
    };
    let Ok(modified) = meta.modified() else {
        return false;
    };
    meta.is_file()
        && modified
            .elapsed()
            .map(|age| age > STALE_TEMP)
            .unwrap_or(false)
}

/// A directory of entries with expiry, as `resty.acme.storage.file` keeps them.
pub struct FileStore {
    dir: PathBuf,
}

/// Private: keys and certificates live here.
const MODE: u32 = 0o600;

/// The lock file of `FileStore::exclusive`: hidden, so `list` never reports it as a key.
const LOCK_NAME: &str = ".acme-rs.lock";

/// What one entry's file holds at a given time.
enum Slot {
    Missing,
    Expired,
    Live(Vec<u8>),
}

impl FileStore {
    pub fn new(dir: impl Into<PathBuf>) -> FileStore {
        FileStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds `key`.
    pub fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        Ok(self.dir.join(file_name(key)?))
    }

    fn expiry(ttl: Option<f64>, now: f64) -> i64 {
        match ttl {
            // The original stores floor(now + ttl); 0 means "never", so clamp to 1.
            Some(t) => ((now + t).floor() as i64).max(1),
            None => 0,
        }
    }

    /// Serialises `add`'s check-then-create and the removal of expired entries across
    /// processes (nginx workers, the CLI). Without it a reader removing an entry it had seen
    /// expired could delete the one another worker just added, and two adders would both win
    /// an `update_lock:`. Reads of live entries and `set` take no lock.
    fn exclusive(&self) -> Result<File, StoreError> {
        let path = self.dir.join(LOCK_NAME);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(MODE)
            .open(&path)
            .map_err(io_err(&path, "open"))?;
        f.lock().map_err(io_err(&path, "lock"))?;
        Ok(f)
    }

    /// What the file at `path` holds at `now`; malformed content is an error.
    fn slot(path: &Path, now: f64) -> Result<Slot, StoreError> {
        let Some(content) = read(path)? else {
            return Ok(Slot::Missing);
        };
        match decode_entry(&content) {
            Some((expiry, value)) if expiry == 0 || (now as i64) < expiry => {
                Ok(Slot::Live(value.to_vec()))
            }
            Some(_) => Ok(Slot::Expired),
            None => Err(StoreError::Malformed {
                path: path.to_path_buf(),
                why: "expected \"<expiry>::<value>\" with a non-empty value".into(),
            }),
        }
    }

    /// Under the lock: removes the entry at `path` if it is still expired or malformed, and
    /// returns it if another writer replaced it with a live one meanwhile.
    fn reap(path: &Path, now: f64) -> Result<Option<Vec<u8>>, StoreError> {
        match Self::slot(path, now) {
            Ok(Slot::Live(v)) => Ok(Some(v)),
            Ok(Slot::Missing) => Ok(None),
            Ok(Slot::Expired) | Err(StoreError::Malformed { .. }) => remove(path).map(|_| None),
            Err(e) => Err(e),
        }
    }

    /// The value of `key`; expired or unreadable entries are removed and read as missing, as
    /// the original does.
    pub fn get(&self, key: &str, now: f64) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(key)?;
        match Self::slot(&path, now) {
            Ok(Slot::Live(v)) => Ok(Some(v)),
            Ok(Slot::Missing) => Ok(None),
            Ok(Slot::Expired) | Err(StoreError::Malformed { .. }) => {
                let _lock = self.exclusive()?;
                Self::reap(&path, now)
            }
            Err(e) => Err(e),
        }
    }

    /// The value of `key`, `None` when missing or expired; malformed content is an error and
    /// the file is left for inspection (the CLI reports rather than repairs).
    pub fn get_strict(&self, key: &str, now: f64) -> Result<Option<Vec<u8>>, StoreError> {
        match Self::slot(&self.path(key)?, now)? {
            Slot::Live(v) => Ok(Some(v)),
            Slot::Missing | Slot::Expired => Ok(None),
        }
    }

    /// Overwrites `key`. A TTL of zero or less stores nothing: the entry would be expired.
    pub fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<f64>,
        now: f64,
    ) -> Result<(), StoreError> {
        let path = self.path(key)?;
        if matches!(ttl, Some(t) if t <= 0.0) {
            return remove(&path);
        }
        write_atomic(&path, &encode_entry(Self::expiry(ttl, now), value), MODE)
    }

    /// Stores `key` only when absent (an expired entry counts as absent). `Ok(false)`: exists.
    pub fn add(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<f64>,
        now: f64,
    ) -> Result<bool, StoreError> {
        let path = self.path(key)?;
        let _lock = self.exclusive()?;
        if Self::reap(&path, now)?.is_some() {
            return Ok(false);
        }
        if matches!(ttl, Some(t) if t <= 0.0) {
            return Ok(true);
        }
        // link(2) refuses an existing target, so even a writer that takes no lock (the
        // original library) cannot be overwritten here.
        create_exclusive(&path, &encode_entry(Self::expiry(ttl, now), value), MODE)
    }

    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        remove(&self.path(key)?)
    }

    /// Under the directory lock `add` takes too, runs `write` on the file of `key` only while
    /// it holds `expected`; `Ok(false)`: another value, or none. An expired holder's file can
    /// so never be written or removed after another process's `add` took the key.
    fn if_holding(
        &self,
        key: &str,
        expected: &[u8],
        now: f64,
        write: impl FnOnce(&Path) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        let path = self.path(key)?;
        let _lock = self.exclusive()?;
        if Self::reap(&path, now)?.as_deref() != Some(expected) {
            return Ok(false);
        }
        write(&path).map(|_| true)
    }

    /// Replaces `key` with `value` (and a new TTL) only while it holds `expected`: extending a
    /// lease.
    pub fn compare_and_set(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
        ttl: Option<f64>,
        now: f64,
    ) -> Result<bool, StoreError> {
        self.if_holding(key, expected, now, |path| {
            if matches!(ttl, Some(t) if t <= 0.0) {
                return remove(path);
            }
            write_atomic(path, &encode_entry(Self::expiry(ttl, now), value), MODE)
        })
    }

    /// Removes `key` only while it holds `expected`: releasing a lease without deleting the
    /// one another process took after ours expired.
    pub fn compare_and_delete(
        &self,
        key: &str,
        expected: &[u8],
        now: f64,
    ) -> Result<bool, StoreError> {
        self.if_holding(key, expected, now, remove)
    }

    /// Logical keys starting with `prefix` (names that are not base64 keys are skipped).
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys: Vec<String> = list(&self.dir)?
            .iter()
            .filter_map(|n| key_of(n))
            .filter(|k| k.starts_with(prefix))
            .collect();
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmpdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "filestore-test-{}-{}",
            std::process::id(),
            unique()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn names_match_the_original() {
        assert_eq!(
            file_name("domain:rsa:example.com").unwrap(),
            "ZG9tYWluOnJzYTpleGFtcGxlLmNvbQ=="
        );
        assert_eq!(
            key_of("ZG9tYWluOnJzYTpleGFtcGxlLmNvbQ==").unwrap(),
            "domain:rsa:example.com"
        );
        assert_eq!(file_name("account_key:").unwrap(), "YWNjb3VudF9rZXk6");
        // '+' and '=' are kept as the original writes them
        assert_eq!(file_name("ab>").unwrap(), "YWI+");
    }

    #[test]
    fn slash_names_stay_inside_the_directory() {
        // "??>" encodes to "Pz8+" and "???" to "Pz8/" in standard base64.
        let n = file_name("???").unwrap();
        assert!(!n.contains('/'));
        assert_eq!(key_of(&n).unwrap(), "???");
        assert!(file_name("").is_err());
    }

    #[test]
    fn entries_round_trip_and_reject_garbage() {
        let e = encode_entry(0, b"v");
        assert_eq!(e, b"0::v");
        assert_eq!(decode_entry(&e), Some((0, &b"v"[..])));
        assert_eq!(
            decode_entry(b"1700000000::a::b"),
            Some((1700000000, &b"a::b"[..]))
        );
        assert_eq!(decode_entry(b"::v"), None);
        assert_eq!(decode_entry(b"12::"), None);
        assert_eq!(decode_entry(b"legacy"), None);
        for bad in [
            "",
            "v",
            "12:v",
            "-1::v",
            " 1::v",
            "1a::v",
            "99999999999999999999999::v",
        ] {
            assert_eq!(decode_entry(bad.as_bytes()), None, "{bad:?} accepted");
        }
    }

    #[test]
    fn atomic_write_is_private_and_leaves_no_temp() {
        let d = tmpdir();
        let p = d.join("x");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(read(&p).unwrap().unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(list(&d).unwrap(), vec!["x".to_string()]);
        assert!(create_exclusive(&d.join("y"), b"1", 0o600).unwrap());
        assert!(!create_exclusive(&d.join("y"), b"2", 0o600).unwrap());
        assert_eq!(read(&d.join("y")).unwrap().unwrap(), b"1");
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert_eq!(read(&p).unwrap(), None);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn store_semantics() {
        let d = tmpdir();
        let s = FileStore::new(&d);
        s.set("domain:rsa:a.test", b"{}", None, 100.0).unwrap();
        assert_eq!(
            read(&d.join(file_name("domain:rsa:a.test").unwrap()))
                .unwrap()
                .unwrap(),
            b"0::{}"
        );
        s.set("k", b"v", Some(10.5), 100.0).unwrap();
        assert_eq!(s.get("k", 109.0).unwrap().unwrap(), b"v");
        assert_eq!(s.get("k", 110.0).unwrap(), None);
        assert!(s.add("lock", b"1", Some(30.0), 100.0).unwrap());
        assert!(!s.add("lock", b"2", Some(30.0), 101.0).unwrap());
        assert!(s.add("lock", b"3", Some(30.0), 131.0).unwrap());
        assert_eq!(
            s.list("domain:").unwrap(),
            vec!["domain:rsa:a.test".to_string()]
        );
        s.delete("domain:rsa:a.test").unwrap();
        assert!(s.list("domain:").unwrap().is_empty());
        fs::write(d.join(file_name("bad").unwrap()), b"garbage").unwrap();
        assert_eq!(s.get("bad", 1.0).unwrap(), None);
        fs::remove_dir_all(&d).unwrap();
    }

    /// Racing adders and readers (the readers reap the expired entry): exactly one add wins
    /// every round. Before the lock, a reader's removal of an entry it had seen expired could
    /// delete a fresh winner's file and let a second adder win.
    #[test]
    fn racing_adds_have_one_winner_even_while_readers_reap() {
        use std::sync::{Arc, Barrier};
        let d = tmpdir();
        for round in 0..200 {
            let key = format!("update_lock:r{round}");
            // an expired holder, as a crashed node leaves it
            FileStore::new(&d)
                .set(&key, b"old", Some(1.0), 0.0)
                .unwrap();
            let barrier = Arc::new(Barrier::new(8));
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (d, key, barrier) = (d.clone(), key.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let s = FileStore::new(&d);
                        barrier.wait();
                        if i % 2 == 0 {
                            let _ = s.get(&key, 100.0).unwrap();
                            false
                        } else {
                            s.add(&key, format!("h{i}").as_bytes(), Some(30.0), 100.0)
                                .unwrap()
                        }
                    })
                })
                .collect();
            let winners = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|won| *won)
                .count();
            assert_eq!(winners, 1, "round {round}");
        }
        assert!(FileStore::new(&d)
            .list("")
            .unwrap()
            .iter()
            .all(|k| k.starts_with("update_lock:")));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn compare_and_set_and_delete_touch_only_the_expected_holder() {
        let d = tmpdir();
        let s = FileStore::new(&d);
        assert!(s.add("update_lock:a", b"me", Some(10.0), 100.0).unwrap());
        // extended: lives past its first expiry
        assert!(s
            .compare_and_set("update_lock:a", b"me", b"me", Some(10.0), 105.0)
            .unwrap());
        assert_eq!(s.get("update_lock:a", 112.0).unwrap().unwrap(), b"me");
        assert!(!s
            .compare_and_set("update_lock:a", b"other", b"x", Some(10.0), 112.0)
            .unwrap());
        assert!(!s
            .compare_and_delete("update_lock:a", b"other", 112.0)
            .unwrap());
        assert_eq!(s.get("update_lock:a", 112.0).unwrap().unwrap(), b"me");
        // expired, then taken by another: the old holder can neither extend nor delete it
        assert!(s.add("update_lock:a", b"next", Some(10.0), 116.0).unwrap());
        assert!(!s
            .compare_and_set("update_lock:a", b"me", b"me", Some(10.0), 117.0)
            .unwrap());
        assert!(!s.compare_and_delete("update_lock:a", b"me", 117.0).unwrap());
        assert_eq!(s.get("update_lock:a", 117.0).unwrap().unwrap(), b"next");
        assert!(s
            .compare_and_delete("update_lock:a", b"next", 117.0)
            .unwrap());
        assert_eq!(s.get("update_lock:a", 117.0).unwrap(), None);
        assert!(!s
            .compare_and_delete("update_lock:a", b"next", 117.0)
            .unwrap());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn list_removes_temp_files_a_killed_writer_left() {
        let dir = std::env::temp_dir().join(format!(
            "resty-acme-stale-{}-{}",
            std::process::id(),
            unique()
        ));
        fs::create_dir_all(&dir).unwrap();
        let old = dir.join(".a2V5.tmp.1.0");
        let fresh = dir.join(".a2V5.tmp.1.1");
        let other = dir.join(".hidden");
        for p in [&old, &fresh, &other] {
            fs::write(p, b"partial").unwrap();
        }
        let then = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(then)
            .unwrap();
        File::options()
            .write(true)
            .open(&other)
            .unwrap()
            .set_modified(then)
            .unwrap();
        fs::write(dir.join("a2V5"), b"0::v").unwrap();
        assert_eq!(list(&dir).unwrap(), vec!["a2V5".to_string()]);
        assert!(!old.exists(), "a stale temp file is removed");
        assert!(fresh.exists(), "a write in progress is left alone");
        assert!(other.exists(), "other hidden files are not ours");
        fs::remove_dir_all(&dir).unwrap();
    }
}
