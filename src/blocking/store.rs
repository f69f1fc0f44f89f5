//! The original library's `file` storage format (COMPAT §3.6, §5 "file"), so that a store
//! written here is read as-is by lua-resty-acme and the other way round.
//!
//! Each logical key is one file directly under the directory, named by the standard base64 of
//! the key (`+`, `/`, `=` padding, no escaping); the content is `<expiry>::<value>` where
//! `<expiry>` is integer Unix seconds and `0` means "never expires".
use super::driver::unix_now;
use super::BlockingError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The logical key of the account key (COMPAT §3.2): exactly this, nothing after the colon.
pub const ACCOUNT_KEY_KEY: &str = "account_key:";

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The file name of a logical key: its standard base64 with padding.
///
/// A key whose base64 contains `/` (only possible with `?` or DEL in the key) cannot be a file
/// name under the directory; the original fails on such keys too, here it is an error.
pub fn key_file_name(key: &str) -> Result<String, BlockingError> {
    if key.is_empty() {
        return Err(BlockingError::Store("store key is empty".into()));
    }
    let name = STANDARD.encode(key.as_bytes());
    if name.contains('/') {
        return Err(BlockingError::Store(format!(
            "store key {key:?} cannot be a file name (its base64 contains '/')"
        )));
    }
    Ok(name)
}

/// The file content for `value` with absolute expiry `expiry` (Unix seconds, 0 = never).
pub fn encode_entry(value: &str, expiry: u64) -> String {
    format!("{expiry}::{value}")
}

/// Splits file content into (expiry, value). The format is one or more ASCII digits, `::`, then a
/// non-empty value (which may contain anything, newlines included).
pub fn decode_entry(content: &str) -> Result<(u64, &str), String> {
    let digits = content.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err("expected \"<expiry>::<value>\", no leading expiry digits".into());
    }
    let (num, rest) = content.split_at(digits);
    let value = rest
        .strip_prefix("::")
        .ok_or_else(|| "expected \"::\" after the expiry".to_string())?;
    if value.is_empty() {
        return Err("the value is empty".into());
    }
    let expiry = num
        .parse::<u64>()
        .map_err(|_| format!("expiry {num} is out of range"))?;
    Ok((expiry, value))
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

/// Writes a file atomically with mode 0600: a temporary file in the same directory is written,
/// synced and renamed over `path`, then the directory is synced.
pub fn write_private_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // A leading '.' never occurs in base64, so readers listing a store directory skip it.
    let tmp = dir.join(format!(
        ".tmp.{}.{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // The umask may only clear bits; set the mode explicitly anyway.
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(content)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// One directory of the `file` storage.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// Uses an existing directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<FileStore, BlockingError> {
        let dir = dir.into();
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => Ok(FileStore { dir }),
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
        &self.dir
    }

    /// The file that holds `key`.
    pub fn path_for(&self, key: &str) -> Result<PathBuf, BlockingError> {
        Ok(self.dir.join(key_file_name(key)?))
    }

    /// The value of `key`; `None` when absent or expired. Malformed content is an error (the
    /// file is left in place for the operator to inspect).
    pub fn get(&self, key: &str) -> Result<Option<String>, BlockingError> {
        let path = self.path_for(key)?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(BlockingError::Store(format!(
                    "cannot read {} (key {key:?}): {e}",
                    path.display()
                )))
            }
        };
        let text = String::from_utf8(bytes).map_err(|_| {
            BlockingError::Store(format!(
                "malformed store entry {} (key {key:?}): not UTF-8 text",
                path.display()
            ))
        })?;
        let (expiry, value) = decode_entry(&text).map_err(|m| {
            BlockingError::Store(format!(
                "malformed store entry {} (key {key:?}): {m}",
                path.display()
            ))
        })?;
        if expiry != 0 && unix_now() >= expiry as f64 {
            return Ok(None);
        }
        Ok(Some(value.to_string()))
    }

    /// Writes `key` atomically: a temporary file in the same directory (mode 0600) is written,
    /// synced and renamed over the target, then the directory is synced. `ttl` in seconds;
    /// `None` = never expires.
    pub fn set(&self, key: &str, value: &str, ttl: Option<f64>) -> Result<(), BlockingError> {
        if value.is_empty() {
            // The format cannot represent an empty value (the original reads it as missing).
            return Err(BlockingError::Store(format!(
                "cannot store an empty value for key {key:?}"
            )));
        }
        let path = self.path_for(key)?;
        let expiry = match ttl {
            None => 0,
            Some(t) => (unix_now() + t).floor().max(1.0) as u64,
        };
        let content = encode_entry(value, expiry);
        write_private_file(&path, content.as_bytes())
            .map_err(|e| BlockingError::Store(format!("cannot write key {key:?}: {e}")))
    }

    /// Removes `key`; a missing key is not an error.
    pub fn delete(&self, key: &str) -> Result<(), BlockingError> {
        let path = self.path_for(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BlockingError::Store(format!(
                "cannot delete key {key:?}: {e}"
            ))),
        }
    }

    /// Logical keys starting with `prefix`, sorted. Names that are not base64 of UTF-8 text
    /// (temporary files, foreign files) are skipped, as the original does.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, BlockingError> {
        let rd = fs::read_dir(&self.dir).map_err(|e| {
            BlockingError::Store(format!("cannot list store {}: {e}", self.dir.display()))
        })?;
        let mut keys = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| {
                BlockingError::Store(format!("cannot list store {}: {e}", self.dir.display()))
            })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(raw) = STANDARD.decode(name) else {
                continue;
            };
            let Ok(key) = String::from_utf8(raw) else {
                continue;
            };
            if key.starts_with(prefix) {
                keys.push(key);
            }
        }
        keys.sort();
        Ok(keys)
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
    use std::os::unix::fs::MetadataExt;

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
    fn key_names_are_standard_base64_with_padding() {
        assert_eq!(
            key_file_name("domain:rsa:example.com").unwrap(),
            "ZG9tYWluOnJzYTpleGFtcGxlLmNvbQ=="
        );
        assert_eq!(key_file_name("account_key:").unwrap(), "YWNjb3VudF9rZXk6");
        assert_eq!(
            key_file_name("domain:ecc:*.example.com").unwrap(),
            STANDARD.encode("domain:ecc:*.example.com")
        );
        // '>' at a 3k+2 position yields '+', which is kept as-is.
        assert_eq!(key_file_name("ab>").unwrap(), "YWI+");
        // '?' there would yield '/', which cannot be a file name.
        assert!(key_file_name("ab?").is_err());
        assert!(key_file_name("").is_err());
    }

    #[test]
    fn entry_format() {
        assert_eq!(encode_entry("v", 0), "0::v");
        assert_eq!(decode_entry("0::v").unwrap(), (0, "v"));
        assert_eq!(
            decode_entry("1700000000::a::b\n").unwrap(),
            (1700000000, "a::b\n")
        );
        for bad in [
            "",
            "v",
            "::v",
            "12:v",
            "12::",
            "-1::v",
            " 1::v",
            "1a::v",
            "99999999999999999999999::v",
        ] {
            assert!(decode_entry(bad).is_err(), "{bad:?} accepted");
        }
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
            let (e, v) = decode_entry(&t).unwrap();
            (e, v.to_string())
        };
        assert!(exp as f64 > unix_now() + 3500.0);
        for (i, bad) in ["legacy value", "12::", "abc::x"].iter().enumerate() {
            let key = format!("bad{i}");
            fs::write(s.path_for(&key).unwrap(), bad).unwrap();
            let err = s.get(&key).unwrap_err().to_string();
            assert!(err.starts_with("malformed store entry"), "{err}");
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
