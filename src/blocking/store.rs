//! The original library's `file` storage format (COMPAT §3.6, §5 "file") for the CLI: the
//! format and its atomic private writes live in `crate::filestore`, shared with the Lua file
//! storage; this adds directory handling, certificate entries and the CLI's error type.
use super::driver::unix_now;
use super::BlockingError;
use crate::filestore::{self, StoreError};
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The logical key of the account key (COMPAT §3.2): exactly this, nothing after the colon.
pub const ACCOUNT_KEY_KEY: &str = "account_key:";

impl From<StoreError> for BlockingError {
    fn from(e: StoreError) -> Self {
        BlockingError::Store(e.to_string())
    }
}

/// Writes a file atomically with mode 0600 (temp file, fsync, rename, fsync of the directory).
pub fn write_private_file(path: &Path, content: &[u8]) -> Result<(), BlockingError> {
    Ok(filestore::write_atomic(path, content, 0o600)?)
}

/// A certificate entry `domain:<type>:<name>` (COMPAT §3.1).
#[derive(Clone, PartialEq)]
pub struct CertEntry {
    /// The first name of the order.
    pub domain: String,
    /// PEM private key of the certificate.
    pub pkey: String,
    /// PEM chain as downloaded, leaf first.
    pub cert: String,
    /// `rsa` or `ecc`.
    pub key_type: String,
    /// Unix seconds with a millisecond fraction.
    pub updated: f64,
}

impl std::fmt::Debug for CertEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("CertEntry")
            .field("domain", &self.domain)
            .field("pkey", &"<redacted>")
            .field("cert", &format_args!("<{} bytes>", self.cert.len()))
            .field("key_type", &self.key_type)
            .field("updated", &self.updated)
            .finish()
    }
}

impl CertEntry {
    /// The logical store key of a certificate: `domain:<type>:<name>`.
    pub fn store_key(key_type: &str, name: &str) -> String {
        format!("domain:{key_type}:{name}")
    }

    /// The JSON text stored as the value.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "domain": self.domain,
            "pkey": self.pkey,
            "cert": self.cert,
            "type": self.key_type,
            "updated": self.updated,
        })
        .to_string()
    }

    /// Parses a stored value; `domain`, `pkey`, `cert` and `type` must be strings, `updated`
    /// a number when present.
    pub fn from_json(text: &str) -> Result<CertEntry, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("value is not JSON: {e}"))?;
        let field = |name: &str| -> Result<String, String> {
            match v.get(name) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(format!("field \"{name}\" is not a string")),
                None => Err(format!("field \"{name}\" is missing")),
            }
        };
        let updated = match v.get("updated") {
            None | Some(serde_json::Value::Null) => 0.0,
            Some(u) => u
                .as_f64()
                .ok_or_else(|| "field \"updated\" is not a number".to_string())?,
        };
        Ok(CertEntry {
            domain: field("domain")?,
            pkey: field("pkey")?,
            cert: field("cert")?,
            key_type: field("type")?,
            updated,
        })
    }
}

/// `updated` as the original writes it: `ngx.now()`, seconds with a millisecond fraction.
pub fn updated_now() -> f64 {
    (unix_now() * 1000.0).floor() / 1000.0
}

/// One directory of the `file` storage.
pub struct FileStore {
    inner: filestore::FileStore,
}

impl FileStore {
    /// Uses an existing directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<FileStore, BlockingError> {
        let dir = dir.into();
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => Ok(FileStore {
                inner: filestore::FileStore::new(dir),
            }),
            Ok(_) => Err(BlockingError::Store(format!(
                "store {} is not a directory",
                dir.display()
            ))),
            Err(e) => Err(BlockingError::Store(format!(
                "cannot open store {}: {e}",
                dir.display()
            ))),
        }
    }

    /// Uses the directory, creating it (mode 0700) when missing.
    pub fn create(dir: impl Into<PathBuf>) -> Result<FileStore, BlockingError> {
        let dir = dir.into();
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| {
                    BlockingError::Store(format!("cannot create store {}: {e}", dir.display()))
                })?;
        }
        FileStore::open(dir)
    }

    pub fn dir(&self) -> &Path {
        self.inner.dir()
    }

    /// The file that holds `key`.
    pub fn path_for(&self, key: &str) -> Result<PathBuf, BlockingError> {
        Ok(self.inner.path(key)?)
    }

    /// The value of `key`; `None` when absent or expired. Malformed content is an error (the
    /// file is left in place for the operator to inspect).
    pub fn get(&self, key: &str) -> Result<Option<String>, BlockingError> {
        match self.inner.get_strict(key, unix_now())? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
                BlockingError::Store(format!(
                    "malformed store entry for key {key:?}: not UTF-8 text"
                ))
            }),
        }
    }

    /// Writes `key` atomically with mode 0600; `ttl` in seconds, `None` = never expires.
    pub fn set(&self, key: &str, value: &str, ttl: Option<f64>) -> Result<(), BlockingError> {
        if value.is_empty() {
            // The format cannot represent an empty value (the original reads it as missing).
            return Err(BlockingError::Store(format!(
                "cannot store an empty value for key {key:?}"
            )));
        }
        Ok(self.inner.set(key, value.as_bytes(), ttl, unix_now())?)
    }

    /// Removes `key`; a missing key is not an error.
    pub fn delete(&self, key: &str) -> Result<(), BlockingError> {
        Ok(self.inner.delete(key)?)
    }

    /// Logical keys starting with `prefix`, sorted; foreign file names are skipped.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, BlockingError> {
        Ok(self.inner.list(prefix)?)
    }

    /// The certificate entry `domain:<type>:<name>`.
    pub fn get_cert(&self, name: &str, key_type: &str) -> Result<Option<CertEntry>, BlockingError> {
        let key = CertEntry::store_key(key_type, name);
        match self.get(&key)? {
            None => Ok(None),
            Some(v) => CertEntry::from_json(&v).map(Some).map_err(|m| {
                BlockingError::Store(format!("malformed certificate entry {key:?}: {m}"))
            }),
        }
    }

    /// Writes the certificate entry under `domain:<type>:<name>` without expiry.
    pub fn set_cert(&self, name: &str, entry: &CertEntry) -> Result<(), BlockingError> {
        self.set(
            &CertEntry::store_key(&entry.key_type, name),
            &entry.to_json(),
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::unix::fs::MetadataExt;
    use std::sync::atomic::{AtomicU64, Ordering};

    static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "acme-rs-store-{tag}-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip_and_file_layout() {
        let d = tempdir("rt");
        let s = FileStore::open(&d).unwrap();
        assert_eq!(s.get("domain:rsa:example.com").unwrap(), None);
        s.set("domain:rsa:example.com", "hello\nworld", None)
            .unwrap();
        assert_eq!(
            s.get("domain:rsa:example.com").unwrap().as_deref(),
            Some("hello\nworld")
        );
        let p = d.join("ZG9tYWluOnJzYTpleGFtcGxlLmNvbQ==");
        assert_eq!(fs::read_to_string(&p).unwrap(), "0::hello\nworld");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        // Only the entry is left behind: no temporary file.
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
        s.delete("domain:rsa:example.com").unwrap();
        s.delete("domain:rsa:example.com").unwrap();
        assert_eq!(s.get("domain:rsa:example.com").unwrap(), None);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn overwrite_replaces_the_file_by_rename() {
        let d = tempdir("atomic");
        let s = FileStore::open(&d).unwrap();
        s.set("k", "one", None).unwrap();
        let p = s.path_for("k").unwrap();
        let ino1 = fs::metadata(&p).unwrap().ino();
        // A reader holding the old file keeps seeing complete old content.
        let old = File::open(&p).unwrap();
        s.set("k", "two", None).unwrap();
        let ino2 = fs::metadata(&p).unwrap().ino();
        assert_ne!(ino1, ino2, "the file was rewritten in place");
        let mut buf = String::new();
        std::io::Read::read_to_string(&mut &old, &mut buf).unwrap();
        assert_eq!(buf, "0::one");
        assert_eq!(s.get("k").unwrap().as_deref(), Some("two"));
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn expiry_and_malformed_content() {
        let d = tempdir("exp");
        let s = FileStore::open(&d).unwrap();
        fs::write(s.path_for("old").unwrap(), "1::gone").unwrap();
        assert_eq!(s.get("old").unwrap(), None);
        fs::write(s.path_for("future").unwrap(), "99999999999::here").unwrap();
        assert_eq!(s.get("future").unwrap().as_deref(), Some("here"));
        s.set("ttl", "x", Some(3600.0)).unwrap();
        let (exp, _) = {
            let t = fs::read_to_string(s.path_for("ttl").unwrap()).unwrap();
            let (e, v) = filestore::decode_entry(t.as_bytes()).unwrap();
            (e, String::from_utf8_lossy(v).into_owned())
        };
        assert!(exp as f64 > unix_now() + 3500.0);
        for (i, bad) in ["legacy value", "12::", "abc::x"].iter().enumerate() {
            let key = format!("bad{i}");
            fs::write(s.path_for(&key).unwrap(), bad).unwrap();
            let err = s.get(&key).unwrap_err().to_string();
            assert!(err.contains("malformed store entry"), "{err}");
        }
        fs::write(s.path_for("bin").unwrap(), b"0::\xff\xfe").unwrap();
        assert!(s.get("bin").unwrap_err().to_string().contains("not UTF-8"));
        assert!(s.set("empty", "", None).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn list_skips_foreign_names() {
        let d = tempdir("list");
        let s = FileStore::open(&d).unwrap();
        s.set("domain:rsa:a.example", "1", None).unwrap();
        s.set("domain:ecc:b.example", "2", None).unwrap();
        s.set(ACCOUNT_KEY_KEY, "pem", None).unwrap();
        fs::write(d.join(".tmp.1.2"), "0::x").unwrap();
        fs::write(d.join("not base64!"), "0::x").unwrap();
        assert_eq!(
            s.list("domain:").unwrap(),
            vec!["domain:ecc:b.example", "domain:rsa:a.example"]
        );
        assert_eq!(s.list("").unwrap().len(), 3);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn cert_entries() {
        let d = tempdir("cert");
        let s = FileStore::open(&d).unwrap();
        let e = CertEntry {
            domain: "example.com".into(),
            pkey: "-----BEGIN PRIVATE KEY-----\nAAA\n-----END PRIVATE KEY-----\n".into(),
            cert: "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n".into(),
            key_type: "ecc".into(),
            updated: 1700000000.123,
        };
        s.set_cert("example.com", &e).unwrap();
        let raw = s.get("domain:ecc:example.com").unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(v["type"], "ecc");
        assert_eq!(v["updated"].as_f64().unwrap(), 1700000000.123);
        assert_eq!(s.get_cert("example.com", "ecc").unwrap().unwrap(), e);
        assert!(!format!("{e:?}").contains("AAA"));
        // What cjson writes (escaped slashes) reads back the same.
        let lua = r#"{"updated":1700000000.5,"type":"rsa","cert":"C","pkey":"-----BEGIN PRIVATE KEY-----\n\/K\n","domain":"x.test"}"#;
        s.set("domain:rsa:x.test", lua, None).unwrap();
        let got = s.get_cert("x.test", "rsa").unwrap().unwrap();
        assert_eq!(got.pkey, "-----BEGIN PRIVATE KEY-----\n/K\n");
        s.set("domain:rsa:y.test", r#"{"domain":"y.test"}"#, None)
            .unwrap();
        let err = s.get_cert("y.test", "rsa").unwrap_err().to_string();
        assert!(err.contains("\"pkey\" is missing"), "{err}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn create_makes_the_directory() {
        let d = tempdir("create").join("sub");
        let s = FileStore::create(&d).unwrap();
        assert_eq!(fs::metadata(s.dir()).unwrap().mode() & 0o777, 0o700);
        assert!(FileStore::open(d.join("missing")).is_err());
        fs::remove_dir_all(d.parent().unwrap()).unwrap();
    }
}
