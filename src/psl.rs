//! The public suffix list (publicsuffix.org): which part of a host name is a public suffix
//! (`com`, `co.uk`, `*.ck`), and so which name is the registered domain (`example.co.uk`).
//! Used to keep on-demand issuance budgets per registered domain.
//!
//! The list is read once from a file in the list's own format (Debian's `publicsuffix`
//! package installs it as `/usr/share/publicsuffix/public_suffix_list.dat`). Rules are
//! matched on ASCII names as a TLS client sends them: rules written in Unicode never match
//! an `xn--` label, so such a name falls back to the default rule (`*`: its last label).
use std::collections::HashSet;
use std::fmt;

/// The parsed list.
#[derive(Debug, Default)]
pub struct PublicSuffixList {
    /// `co.uk` from `co.uk`.
    normal: HashSet<String>,
    /// `ck` from `*.ck`: any one label below `ck` is a public suffix.
    wildcard: HashSet<String>,
    /// `www.ck` from `!www.ck`: not a public suffix, although a wildcard covers it.
    exception: HashSet<String>,
}

#[derive(Debug)]
pub struct PslError(String);

impl fmt::Display for PslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PslError {}

impl PublicSuffixList {
    /// Parses the list's text: one rule per line, `//` comments, blank lines ignored; only
    /// the first whitespace-separated word of a line counts.
    pub fn parse(text: &str) -> Result<Self, PslError> {
        let mut list = PublicSuffixList::default();
        for line in text.lines() {
            let Some(rule) = line.split_whitespace().next() else {
                continue;
            };
            if rule.starts_with("//") {
                continue;
            }
            let rule = rule.to_ascii_lowercase();
            if let Some(rest) = rule.strip_prefix('!') {
                list.exception.insert(rest.to_string());
            } else if let Some(rest) = rule.strip_prefix("*.") {
                list.wildcard.insert(rest.to_string());
            } else {
                list.normal.insert(rule);
            }
        }
        if list.is_empty() {
            return Err(PslError("the public suffix list has no rules".into()));
        }
        Ok(list)
    }

    /// Reads and parses a list file.
    pub fn from_file(path: &str) -> Result<Self, PslError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PslError(format!("cannot read public suffix list {path}: {e}")))?;
        Self::parse(&text)
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.normal.len() + self.wildcard.len() + self.exception.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of trailing labels of `labels` that form the public suffix (at least 1).
    fn suffix_labels(&self, labels: &[&str]) -> usize {
        let n = labels.len();
        // candidate suffixes from the longest (the whole name) to the last label
        let candidate = |i: usize| labels[i..].join(".");
        // an exception rule wins over every other rule; its suffix is the rule minus its
        // first label
        for i in 0..n {
            if self.exception.contains(&candidate(i)) {
                return n - i - 1;
            }
        }
        for i in 0..n {
            if self.normal.contains(&candidate(i)) {
                return n - i;
            }
            if i + 1 < n && self.wildcard.contains(&candidate(i + 1)) {
                return n - i;
            }
        }
        1
    }

    /// The public suffix of `name` (lower-case ASCII, no trailing dot).
    pub fn public_suffix<'a>(&self, name: &'a str) -> &'a str {
        let labels: Vec<&str> = name.split('.').collect();
        let k = self.suffix_labels(&labels);
        tail(name, &labels, k)
    }

    /// The registered domain of `name`: its public suffix and one label more, or `None` when
    /// `name` is itself a public suffix.
    pub fn registered_domain<'a>(&self, name: &'a str) -> Option<&'a str> {
        let labels: Vec<&str> = name.split('.').collect();
        let k = self.suffix_labels(&labels);
        if k >= labels.len() {
            return None;
        }
        Some(tail(name, &labels, k + 1))
    }
}

/// The last `k` labels of `name`, as a slice of it.
fn tail<'a>(name: &'a str, labels: &[&str], k: usize) -> &'a str {
    let skip: usize = labels[..labels.len() - k].iter().map(|l| l.len() + 1).sum();
    &name[skip.min(name.len())..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "// comment\n\ncom\nuk\nco.uk\n*.ck\n!www.ck\njp\n*.kobe.jp\n\
                        !city.kobe.jp\n github.io  trailing words\nGITHUB.io\n";

    fn psl() -> PublicSuffixList {
        PublicSuffixList::parse(LIST).expect("list")
    }

    #[test]
    fn registered_domains() {
        let p = psl();
        let cases = [
            ("example.com", Some("example.com")),
            ("a.b.example.com", Some("example.com")),
            ("com", None),
            ("example.co.uk", Some("example.co.uk")),
            ("www.example.co.uk", Some("example.co.uk")),
            ("co.uk", None),
            ("uk", None),
            ("a.b.ck", Some("a.b.ck")),
            ("b.ck", None),
            ("www.ck", Some("www.ck")),
            ("x.www.ck", Some("www.ck")),
            ("city.kobe.jp", Some("city.kobe.jp")),
            ("a.city.kobe.jp", Some("city.kobe.jp")),
            ("other.kobe.jp", None),
            ("a.other.kobe.jp", Some("a.other.kobe.jp")),
            ("user.github.io", Some("user.github.io")),
            // not in the list: the default rule makes the last label the suffix
            ("example.test", Some("example.test")),
            ("deep.er.example.test", Some("example.test")),
            ("test", None),
        ];
        for (name, want) in cases {
            assert_eq!(p.registered_domain(name), want, "{name}");
        }
        assert_eq!(p.public_suffix("a.example.co.uk"), "co.uk");
        assert_eq!(p.public_suffix("a.b.ck"), "b.ck");
        assert_eq!(p.public_suffix("nothing.test"), "test");
    }

    #[test]
    fn empty_list_is_an_error() {
        assert!(PublicSuffixList::parse("// only a comment\n").is_err());
        assert!(PublicSuffixList::from_file("/nonexistent/psl.dat").is_err());
    }

    #[test]
    fn system_list_when_installed() {
        let path = "/usr/share/publicsuffix/public_suffix_list.dat";
        if std::path::Path::new(path).exists() {
            let p = PublicSuffixList::from_file(path).expect("system list");
            assert!(p.len() > 5000);
            assert_eq!(p.registered_domain("www.bbc.co.uk"), Some("bbc.co.uk"));
            assert_eq!(p.registered_domain("a.b.example.com"), Some("example.com"));
            assert_eq!(p.registered_domain("foo.github.io"), Some("foo.github.io"));
        }
    }
}
