//! `acme-rs`: an operator CLI over the ACME core, writing lua-resty-acme's file storage format.
//!
//! Exit codes: 0 success, 1 the operation failed (`error: <cause>` on stderr), 2 usage error.
use resty_acme_core::acme::persist;
use resty_acme_core::acme::{
    Client, ClientConfig, Eab, Identifier, NewAccount, Operation, OrderRequest,
};
use resty_acme_core::blocking::{
    unix_now, updated_now, write_private_file, AnyStore, BlockingError, CertEntry,
    ChallengePublisher, DnsHookPublisher, Driver, DriverOptions, Http01Responder, NoPublisher,
    ACCOUNT_KEY_KEY,
};
use resty_acme_core::crypto::cert::{leaf_der, leaf_matches_key, parse_chain, CertInfo};
use resty_acme_core::crypto::csr::create_csr;
use resty_acme_core::crypto::encoding::b64url_decode;
use resty_acme_core::crypto::{KeyType, PrivateKey};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const HELP: &str = "\
acme-rs - ACME (RFC 8555) certificates from the command line, stored in
lua-resty-acme's storage formats (file, redis, etcd, consul, vault).

USAGE:
  acme-rs issue --directory URL --store DIR --domain NAME [--domain NAME ...]
                [--key-type rsa|ecc] [--email ADDR]
                [--http-listen ADDR:PORT | --dns-hook PROGRAM [--dns-delay SECS]]
                [--eab-kid KID --eab-hmac-key B64URL] [--preferred-chain CN]
                [--account-key FILE] [--ca-bundle FILE]
  acme-rs revoke --directory URL --store DIR --domain NAME [--key-type rsa|ecc]
                [--reason CODE] [--use-cert-key] [--account-key FILE] [--ca-bundle FILE]
  acme-rs renew --directory URL --store DIR --domain NAME [--key-type rsa|ecc]
                [issue's challenge and account options]
  acme-rs show FILE
  acme-rs show --store DIR --domain NAME [--key-type rsa|ecc]
  acme-rs list --store DIR [--key-type rsa|ecc]
  acme-rs check --store DIR
  acme-rs account rollover --directory URL --store DIR [--key-type rsa|ecc]
                [--account-key FILE] [--ca-bundle FILE]
  acme-rs account deactivate --directory URL --store DIR [--account-key FILE]
                [--ca-bundle FILE]
  acme-rs account persist-record --directory URL --store DIR --domain NAME [...]
                [--issuer NAME] [--persist-until UNIX] [--account-key FILE] [--ca-bundle FILE]
  acme-rs --help | --version

OPTIONS:
  --directory URL      ACME directory URL of the CA
  --ca-bundle FILE     PEM file of CA certificates to trust for the ACME server
                       (replaces the system trust store)
  --store DIR          directory of the file store (created for `issue` if missing),
                       or redis://[user:password@]host:port[/db][?namespace=NS],
                       or etcd://host:port[?prefix=P] (storage_config.key_prefix),
                       or consul://host:port[/kv_path] (token: $CONSUL_HTTP_TOKEN),
                       or vault://host:port[/mount[/path]] (KV v2; $VAULT_TOKEN)
  --domain NAME        certificate name; repeat for more names (the first one names
                       the store entry domain:<type>:<first name>); `*.` for wildcards
                       (needs --dns-hook)
  --key-type rsa|ecc   certificate key: rsa = RSA 4096, ecc = EC P-256 (default rsa);
                       for `account rollover` the type of the new account key
  --email ADDR         account contact (mailto:)
  --issuer NAME        dns-persist-01 issuer domain name (default: the directory's first
                       meta.caaIdentities entry)
  --persist-until UNIX dns-persist-01 persistUntil (Unix time)
  --http-listen A:P    answer http-01 on this address (default 0.0.0.0:80)
  --dns-hook PROGRAM   answer dns-01: runs `PROGRAM add <fqdn> <txt>` and
                       `PROGRAM del <fqdn> <txt>`; fqdn = _acme-challenge.<name>
  --dns-delay SECS     wait after a successful `add` (DNS propagation), default 0
  --eab-kid KID, --eab-hmac-key B64URL
                       external account binding credentials from the CA
  --preferred-chain CN issuer CN of the top certificate of the wanted chain
  --account-key FILE   account key PEM file instead of the store's account_key:
                       entry (created by `issue` if missing)
  --reason CODE        RFC 5280 revocation reason code
  --use-cert-key       sign the revocation with the certificate's key
  --verbose            print each request to stderr

EXIT STATUS: 0 ok, 1 the operation failed, 2 usage error.
";

/// A usage error (exit 2) or a failed operation (exit 1).
#[derive(Debug)]
enum CliError {
    Usage(String),
    Failed(String),
}

impl From<BlockingError> for CliError {
    fn from(e: BlockingError) -> Self {
        CliError::Failed(e.to_string())
    }
}

fn fail<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError::Failed(msg.into()))
}

fn usage<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError::Usage(msg.into()))
}

/// Options that take a value, and flags.
const VALUE_OPTS: &[&str] = &[
    "directory",
    "ca-bundle",
    "domain",
    "store",
    "key-type",
    "email",
    "http-listen",
    "dns-hook",
    "dns-delay",
    "eab-kid",
    "eab-hmac-key",
    "preferred-chain",
    "account-key",
    "reason",
    "issuer",
    "persist-until",
];
const FLAG_OPTS: &[&str] = &["use-cert-key", "verbose"];

fn utf8(s: OsString, what: &str) -> Result<String, CliError> {
    s.into_string()
        .or_else(|s| usage(format!("{what} is not valid UTF-8: {s:?}")))
}

/// Parsed command line: positional words and `--name value` / `--name=value` options.
#[derive(Default)]
struct Args {
    words: Vec<String>,
    values: HashMap<String, Vec<String>>,
    flags: Vec<String>,
}

impl Args {
    /// Parses with lexopt, which also handles `--name=value`, `--` and non-UTF-8 arguments.
    fn parse<I>(argv: I) -> Result<Args, CliError>
    where
        I: IntoIterator,
        I::Item: Into<OsString>,
    {
        use lexopt::Arg::{Long, Short, Value};
        let mut a = Args::default();
        let mut p = lexopt::Parser::from_args(argv);
        loop {
            let arg = match p.next() {
                Ok(Some(arg)) => arg,
                Ok(None) => return Ok(a),
                // Only a flag written as `--flag=value` leaves a value unread.
                Err(lexopt::Error::UnexpectedValue { option, .. }) => {
                    return usage(format!("{option} takes no value"))
                }
                Err(e) => return usage(e.to_string()),
            };
            match arg {
                Value(word) => a.words.push(utf8(word, "argument")?),
                Long(name) if VALUE_OPTS.contains(&name) => {
                    let name = name.to_string();
                    let Ok(v) = p.value() else {
                        return usage(format!("--{name} needs a value"));
                    };
                    let v = utf8(v, &format!("--{name}"))?;
                    a.values.entry(name).or_default().push(v);
                }
                Long(name) if FLAG_OPTS.contains(&name) => a.flags.push(name.to_string()),
                Long(name) => return usage(format!("unknown option --{name}")),
                Short(c) => return usage(format!("unknown option -{c}")),
            }
        }
    }

    /// Rejects options the command does not take.
    fn allow(&self, cmd: &str, allowed: &[&str]) -> Result<(), CliError> {
        for name in self.values.keys().chain(self.flags.iter()) {
            if !allowed.contains(&name.as_str()) && name != "verbose" {
                return usage(format!("{cmd} does not take --{name}"));
            }
        }
        for (name, vs) in &self.values {
            if vs.len() > 1 && name != "domain" {
                return usage(format!("--{name} given more than once"));
            }
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    fn need(&self, name: &str) -> Result<&str, CliError> {
        match self.get(name) {
            Some(v) => Ok(v),
            None => usage(format!("--{name} is required")),
        }
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    fn key_type(&self) -> Result<&str, CliError> {
        match self.get("key-type").unwrap_or("rsa") {
            t @ ("rsa" | "ecc") => Ok(t),
            other => usage(format!("--key-type must be rsa or ecc, got {other:?}")),
        }
    }

    fn domains(&self) -> Result<Vec<String>, CliError> {
        let names: Vec<String> = self
            .values
            .get("domain")
            .map(|v| {
                v.iter()
                    .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default();
        if names.is_empty() {
            return usage("--domain is required");
        }
        if let Some(bad) = names.iter().find(|n| n.is_empty()) {
            return usage(format!("invalid --domain {bad:?}"));
        }
        Ok(names)
    }
}

/// What every command talking to the CA needs.
struct Ctx {
    driver: Driver,
    client: Client,
    directory: String,
}

impl Ctx {
    fn new(args: &Args) -> Result<Ctx, CliError> {
        let directory = args.need("directory")?.to_string();
        if !directory.starts_with("https://") && !directory.starts_with("http://") {
            return usage(format!(
                "--directory must be an http(s) URL, got {directory:?}"
            ));
        }
        let driver = Driver::new(DriverOptions {
            ca_bundle: args.get("ca-bundle").map(PathBuf::from),
            verbose: args.flag("verbose"),
            ..DriverOptions::default()
        })?;
        let client = Client::new(ClientConfig {
            directory_url: directory.clone(),
            // A badNonce reply carries a fresh nonce (RFC 8555 §6.5); retrying is cheap, and a
            // CA rejecting nonces at random must not fail a whole order.
            bad_nonce_retries: 20,
            ..ClientConfig::default()
        });
        Ok(Ctx {
            driver,
            client,
            directory,
        })
    }

    fn run<T: 'static>(
        &mut self,
        op: Operation<T>,
        publisher: &mut dyn ChallengePublisher,
        what: &str,
    ) -> Result<T, CliError> {
        self.driver
            .run(&mut self.client, op, publisher)
            .map_err(|e| CliError::Failed(format!("{what} failed: {e}")))
    }

    /// Fetches the directory, so that an unreachable or untrusted CA is reported as such.
    fn directory(&mut self) -> Result<(), CliError> {
        let what = format!("fetching the ACME directory {}", self.directory);
        self.run(Operation::directory(), &mut NoPublisher, &what)?;
        Ok(())
    }

    /// newAccount (RFC 8555 §7.3); returns (account URL, created).
    fn account(&mut self, new: NewAccount) -> Result<(String, bool), CliError> {
        let existing = new.only_return_existing;
        let what = if existing {
            "looking up the account"
        } else {
            "creating the account"
        };
        let info = self.run(Operation::new_account(new), &mut NoPublisher, what)?;
        self.client.account_url = Some(info.url.clone());
        Ok((info.url, info.created))
    }

    fn existing_account(&mut self) -> Result<String, CliError> {
        self.account(NewAccount {
            only_return_existing: true,
            ..NewAccount::default()
        })
        .map(|(url, _)| url)
    }
}

fn crypto_err(what: &str) -> impl Fn(resty_acme_core::crypto::CryptoError) -> CliError + '_ {
    move |e| CliError::Failed(format!("{what}: {e}"))
}

fn generate_key(key_type: &str) -> Result<PrivateKey, CliError> {
    let kind = if key_type == "ecc" {
        KeyType::EcP256
    } else {
        KeyType::Rsa(4096)
    };
    PrivateKey::generate(kind).map_err(crypto_err("generating a key"))
}

/// The account key: from `--account-key FILE`, else the store's `account_key:` entry. With
/// `create`, a missing key is generated (RSA 4096, what the original signs with) and saved.
fn account_key(args: &Args, store: &mut AnyStore, create: bool) -> Result<PrivateKey, CliError> {
    let (pem, source) = match args.get("account-key") {
        Some(path) => match std::fs::read(path) {
            Ok(p) => (Some(p), path.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, path.to_string()),
            Err(e) => return fail(format!("cannot read account key {path}: {e}")),
        },
        None => (
            store.get(ACCOUNT_KEY_KEY)?.map(String::into_bytes),
            format!("{} (key {ACCOUNT_KEY_KEY})", store.describe()),
        ),
    };
    if let Some(pem) = pem {
        return PrivateKey::from_pem(&pem)
            .map_err(|e| CliError::Failed(format!("invalid account key in {source}: {e}")));
    }
    if !create {
        return fail(format!("no account key in {source}"));
    }
    let key = generate_key("rsa")?;
    let pem = key
        .to_pem()
        .map_err(crypto_err("encoding the account key"))?;
    save_account_key(args, store, &pem)?;
    eprintln!("created a new account key in {source}");
    Ok(key)
}

fn save_account_key(args: &Args, store: &mut AnyStore, pem: &str) -> Result<(), CliError> {
    match args.get("account-key") {
        Some(path) => write_private_file(Path::new(path), pem.as_bytes())
            .map_err(|e| CliError::Failed(format!("cannot write account key {path}: {e}"))),
        None => Ok(store.set(ACCOUNT_KEY_KEY, pem, None)?),
    }
}

fn identifier(name: &str) -> Identifier {
    // RFC 8738: IP addresses are `ip` identifiers; everything else is a DNS name.
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => Identifier::Ip(ip),
        Err(_) => Identifier::dns(name),
    }
}

fn cmd_issue(args: &Args, renew: bool) -> Result<(), CliError> {
    args.allow(
        if renew { "renew" } else { "issue" },
        &[
            "directory",
            "ca-bundle",
            "domain",
            "store",
            "key-type",
            "email",
            "http-listen",
            "dns-hook",
            "dns-delay",
            "eab-kid",
            "eab-hmac-key",
            "preferred-chain",
            "account-key",
        ],
    )?;
    let mut names = args.domains()?;
    let key_type = args.key_type()?;
    let store_dir = args.need("store")?;
    let mut store = AnyStore::open(store_dir, !renew)?;
    if renew {
        // the names of the stored certificate, under the same entry
        let (_, entry, name) = stored_cert(args, store_dir)?;
        let leaf = parse_chain(entry.cert.as_bytes())
            .ok()
            .and_then(|c| c.into_iter().next())
            .ok_or_else(|| CliError::Failed("the stored certificate is unreadable".into()))?;
        names = vec![name.clone()];
        for n in leaf.sans {
            if n != name {
                names.push(n);
            }
        }
    }
    let eab = match (args.get("eab-kid"), args.get("eab-hmac-key")) {
        (Some(kid), Some(hmac)) => Some(Eab {
            kid: kid.to_string(),
            hmac_key: b64url_decode(hmac)
                .map_err(|e| CliError::Usage(format!("--eab-hmac-key: {e}")))?,
        }),
        (None, None) => None,
        _ => return usage("--eab-kid and --eab-hmac-key go together"),
    };
    if args.get("http-listen").is_some() && args.get("dns-hook").is_some() {
        return usage("--http-listen and --dns-hook are exclusive");
    }
    let mut publisher: Box<dyn ChallengePublisher> = match args.get("dns-hook") {
        Some(hook) => {
            let delay = match args.get("dns-delay") {
                None => 0.0,
                Some(s) => match s.parse::<f64>() {
                    Ok(d) if d >= 0.0 && d.is_finite() => d,
                    _ => return usage(format!("--dns-delay must be seconds, got {s:?}")),
                },
            };
            Box::new(DnsHookPublisher::new(hook, Duration::from_secs_f64(delay)))
        }
        None => {
            if args.get("dns-delay").is_some() {
                return usage("--dns-delay needs --dns-hook");
            }
            if let Some(w) = names.iter().find(|n| n.starts_with("*.")) {
                return usage(format!("{w} is a wildcard: it needs --dns-hook (dns-01)"));
            }
            let addr = args.get("http-listen").unwrap_or("0.0.0.0:80");
            Box::new(Http01Responder::bind(addr)?)
        }
    };

    let mut ctx = Ctx::new(args)?;
    // The CA first: an unreachable or untrusted CA leaves no new key or store behind.
    ctx.directory()?;
    let account = account_key(args, &mut store, true)?;
    ctx.client.account_key = Some(account);
    let (account_url, created) = ctx.account(NewAccount {
        contact: args
            .get("email")
            .map(|e| vec![format!("mailto:{e}")])
            .unwrap_or_default(),
        // The operator runs this against a CA of their choice: agree to its terms (§7.3).
        terms_of_service_agreed: true,
        only_return_existing: false,
        eab,
    })?;
    eprintln!(
        "account {account_url} ({})",
        if created { "created" } else { "existing" }
    );

    let key = generate_key(key_type)?;
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let csr = create_csr(&key, &name_refs).map_err(crypto_err("creating the CSR"))?;
    let order = OrderRequest {
        identifiers: names.iter().map(|n| identifier(n)).collect(),
        challenge_types: publisher.challenge_types(),
        csr_der: csr,
        preferred_chain: args.get("preferred-chain").map(str::to_string),
        ..OrderRequest::default()
    };
    let pem = ctx
        .run(
            Operation::order(order),
            publisher.as_mut(),
            "ordering the certificate",
        )?
        .pem;
    drop(publisher);
    let matches = leaf_matches_key(pem.as_bytes(), &key)
        .map_err(crypto_err("checking the issued certificate"))?;
    if !matches {
        return fail("the issued certificate does not carry the requested key");
    }
    let entry = CertEntry {
        domain: names[0].clone(),
        pkey: key
            .to_pem()
            .map_err(crypto_err("encoding the certificate key"))?,
        cert: pem,
        key_type: key_type.to_string(),
        updated: updated_now(),
    };
    store.set_cert(&names[0], &entry)?;
    println!(
        "stored {} in {}",
        CertEntry::store_key(key_type, &names[0]),
        store.describe()
    );
    print_chain(entry.cert.as_bytes())
}

fn stored_cert(args: &Args, store_dir: &str) -> Result<(AnyStore, CertEntry, String), CliError> {
    let names = args.domains()?;
    if names.len() > 1 {
        return usage("give one --domain");
    }
    let key_type = args.key_type()?;
    let mut store = AnyStore::open(store_dir, false)?;
    match store.get_cert(&names[0], key_type)? {
        Some(e) => Ok((store, e, names[0].clone())),
        None => fail(format!(
            "no certificate stored under {} in {store_dir}",
            CertEntry::store_key(key_type, &names[0])
        )),
    }
}

fn cmd_revoke(args: &Args) -> Result<(), CliError> {
    args.allow(
        "revoke",
        &[
            "directory",
            "ca-bundle",
            "store",
            "domain",
            "key-type",
            "reason",
            "use-cert-key",
            "account-key",
        ],
    )?;
    let reason = match args.get("reason") {
        None => None,
        Some(r) => match r.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => return usage(format!("--reason must be a number, got {r:?}")),
        },
    };
    let mut ctx = Ctx::new(args)?;
    let (mut store, entry, name) = stored_cert(args, args.need("store")?)?;
    let der =
        leaf_der(entry.cert.as_bytes()).map_err(crypto_err("reading the stored certificate"))?;
    let cert_key = if args.flag("use-cert-key") {
        // RFC 8555 §7.6: the request may be signed with the certificate's key (JWK header).
        Some(
            PrivateKey::from_pem(entry.pkey.as_bytes())
                .map_err(crypto_err("reading the stored certificate key"))?,
        )
    } else {
        ctx.client.account_key = Some(account_key(args, &mut store, false)?);
        None
    };
    ctx.directory()?;
    if cert_key.is_none() {
        ctx.existing_account()?;
    }
    ctx.run(
        Operation::revoke(der, reason, cert_key),
        &mut NoPublisher,
        "revoking the certificate",
    )?;
    let serial = parse_chain(entry.cert.as_bytes())
        .ok()
        .and_then(|c| c.into_iter().next())
        .map(|c| c.serial_hex)
        .unwrap_or_default();
    println!("revoked certificate {serial} of {name}");
    Ok(())
}

fn cmd_show(args: &Args) -> Result<(), CliError> {
    args.allow("show", &["store", "domain", "key-type"])?;
    match (args.words.get(1), args.get("store")) {
        (Some(file), None) => {
            if args.words.len() > 2 || args.get("domain").is_some() {
                return usage("show takes one FILE, or --store DIR --domain NAME");
            }
            let pem = std::fs::read(file)
                .map_err(|e| CliError::Failed(format!("cannot read {file}: {e}")))?;
            print_chain(&pem)
        }
        (None, Some(dir)) => {
            let (store, entry, name) = stored_cert(args, dir)?;
            println!(
                "entry: {} in {}",
                CertEntry::store_key(&entry.key_type, &name),
                store.describe()
            );
            println!("domain: {}", entry.domain);
            println!("updated: {}", rfc3339(entry.updated.floor() as i64));
            let key_ok = PrivateKey::from_pem(entry.pkey.as_bytes())
                .ok()
                .and_then(|k| leaf_matches_key(entry.cert.as_bytes(), &k).ok());
            println!(
                "key matches certificate: {}",
                match key_ok {
                    Some(true) => "yes",
                    Some(false) => "NO",
                    None => "unreadable key or certificate",
                }
            );
            print_chain(entry.cert.as_bytes())
        }
        _ => usage("show takes one FILE, or --store DIR --domain NAME"),
    }
}

/// One line per stored certificate: name, key type, not after, days left, issuer CN.
fn cmd_list(args: &Args) -> Result<(), CliError> {
    args.allow("list", &["store", "key-type"])?;
    if args.words.len() > 1 {
        return usage(format!("unexpected argument {:?}", args.words[1]));
    }
    let only = args.get("key-type");
    let mut store = AnyStore::open(args.need("store")?, false)?;
    let now = unix_now();
    let mut bad = 0;
    for key in store.list("domain:")? {
        let Some((typ, name)) = key["domain:".len()..].split_once(':') else {
            continue;
        };
        if only.is_some_and(|t| t != typ) {
            continue;
        }
        let leaf = store.get(&key).ok().flatten().and_then(|v| {
            CertEntry::from_json(&v)
                .ok()
                .and_then(|e| parse_chain(e.cert.as_bytes()).ok())
                .and_then(|c| c.into_iter().next())
        });
        match leaf {
            Some(c) => println!(
                "{name}\t{typ}\t{}\t{:.1}\t{}",
                rfc3339(c.not_after),
                (c.not_after as f64 - now) / 86400.0,
                c.issuer_cn.unwrap_or_default()
            ),
            None => {
                bad += 1;
                println!("{name}\t{typ}\tunreadable\t-\t-");
            }
        }
    }
    if bad > 0 {
        return fail(format!("{bad} unreadable entries (see `acme-rs check`)"));
    }
    Ok(())
}

/// Every entry the library reads, checked as it reads it: certificate entries (JSON, chain,
/// key, key matching the leaf), the account key, and the numbers of the failure records.
fn cmd_check(args: &Args) -> Result<(), CliError> {
    args.allow("check", &["store"])?;
    if args.words.len() > 1 {
        return usage(format!("unexpected argument {:?}", args.words[1]));
    }
    let mut store = AnyStore::open(args.need("store")?, false)?;
    let mut problems = 0;
    let mut checked = 0;
    for key in store.list("")? {
        let value = match store.get(&key) {
            Ok(Some(v)) => v,
            Ok(None) => continue, // expired or deleted meanwhile
            Err(e) => {
                problems += 1;
                println!("{key}: {e}");
                continue;
            }
        };
        let problem = if key.starts_with("domain:") {
            checked += 1;
            match CertEntry::from_json(&value) {
                Err(m) => Some(m),
                Ok(e) => match (
                    parse_chain(e.cert.as_bytes()),
                    PrivateKey::from_pem(e.pkey.as_bytes()),
                ) {
                    (Err(c), _) => Some(format!("unreadable certificate: {c}")),
                    (_, Err(k)) => Some(format!("unreadable private key: {k}")),
                    (Ok(_), Ok(k)) => match leaf_matches_key(e.cert.as_bytes(), &k) {
                        Ok(true) => None,
                        Ok(false) => Some("the key does not belong to the certificate".into()),
                        Err(m) => Some(m.to_string()),
                    },
                },
            }
        } else if key == ACCOUNT_KEY_KEY {
            checked += 1;
            PrivateKey::from_pem(value.as_bytes())
                .err()
                .map(|e| format!("unreadable account key: {e}"))
        } else if key.starts_with("failed_attempts:") || key.starts_with("failure_lock:") {
            checked += 1;
            value.trim().parse::<f64>().err().map(|_| {
                format!(
                    "not a number: {:?}",
                    value.chars().take(40).collect::<String>()
                )
            })
        } else {
            None
        };
        if let Some(p) = problem {
            problems += 1;
            println!("{key}: {p}");
        }
    }
    println!("{checked} entries checked, {problems} unreadable");
    if problems > 0 {
        return fail(format!("{problems} entries the library cannot read"));
    }
    Ok(())
}

fn cmd_account(args: &Args) -> Result<(), CliError> {
    let sub = args.words.get(1).map(String::as_str);
    if args.words.len() > 2 {
        return usage(format!("unexpected argument {:?}", args.words[2]));
    }
    match sub {
        Some("rollover") => {
            args.allow(
                "account rollover",
                &["directory", "ca-bundle", "store", "key-type", "account-key"],
            )?;
            let key_type = args.key_type()?;
            let mut ctx = Ctx::new(args)?;
            let mut store = AnyStore::open(args.need("store")?, false)?;
            ctx.client.account_key = Some(account_key(args, &mut store, false)?);
            ctx.directory()?;
            let url = ctx.existing_account()?;
            let new_key = generate_key(key_type)?;
            let pem = new_key
                .to_pem()
                .map_err(crypto_err("encoding the new account key"))?;
            // Keep the new key on disk before the CA switches to it, so that an interruption
            // between the key change and the final save cannot lose the account.
            const PENDING: &str = "account_key:rollover";
            store.set(PENDING, &pem, None)?;
            match ctx.run(
                Operation::key_change(new_key),
                &mut NoPublisher,
                "changing the account key",
            ) {
                Ok(()) => {
                    save_account_key(args, &mut store, &pem)?;
                    store.delete(PENDING)?;
                    println!("account {url}: key changed ({key_type})");
                    Ok(())
                }
                Err(e) => {
                    let _ = store.delete(PENDING);
                    Err(e)
                }
            }
        }
        Some("deactivate") => {
            args.allow(
                "account deactivate",
                &["directory", "ca-bundle", "store", "account-key"],
            )?;
            let mut ctx = Ctx::new(args)?;
            let mut store = AnyStore::open(args.need("store")?, false)?;
            ctx.client.account_key = Some(account_key(args, &mut store, false)?);
            ctx.directory()?;
            let url = ctx.existing_account()?;
            ctx.run(
                Operation::deactivate_account(),
                &mut NoPublisher,
                "deactivating the account",
            )?;
            println!("account {url} deactivated");
            Ok(())
        }
        Some("persist-record") => {
            args.allow(
                "account persist-record",
                &[
                    "directory",
                    "ca-bundle",
                    "store",
                    "account-key",
                    "domain",
                    "issuer",
                    "persist-until",
                ],
            )?;
            let names = args.domains()?;
            let until = match args.get("persist-until") {
                Some(v) => Some(
                    v.parse::<i64>()
                        .map_err(|_| CliError::Usage(format!("invalid --persist-until {v:?}")))?,
                ),
                None => None,
            };
            let mut ctx = Ctx::new(args)?;
            let mut store = AnyStore::open(args.need("store")?, false)?;
            ctx.client.account_key = Some(account_key(args, &mut store, false)?);
            ctx.directory()?;
            let url = ctx.existing_account()?;
            let issuer = match args.get("issuer") {
                Some(i) => i.to_string(),
                None => ctx
                    .client
                    .directory
                    .as_ref()
                    .and_then(|d| d.raw.pointer("/meta/caaIdentities/0"))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        CliError::Failed(
                            "the directory lists no meta.caaIdentities: give --issuer".into(),
                        )
                    })?,
            };
            // draft-ietf-acme-dns-persist-01: one standing TXT record per name.
            for name in names {
                let rec = persist::PersistRecord::new(&issuer, &url, name.starts_with("*."), until)
                    .map_err(CliError::Failed)?;
                println!("{} TXT \"{}\"", persist::record_name(&name), rec.value());
            }
            Ok(())
        }
        Some(other) => usage(format!("unknown account command {other:?}")),
        None => usage("account needs rollover, deactivate or persist-record"),
    }
}

/// Unix seconds as RFC 3339 UTC (`2024-01-31T12:00:00Z`).
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn print_cert(i: usize, c: &CertInfo) {
    println!("certificate {i}:");
    match &c.subject_cn {
        Some(cn) => println!("  subject:     CN={cn}"),
        None => println!("  subject:     (no CN)"),
    }
    println!("  SANs:        {}", c.sans.join(", "));
    println!("  issuer:      {}", c.issuer);
    println!("  serial:      {}", c.serial_hex);
    println!("  not before:  {}", rfc3339(c.not_before));
    println!("  not after:   {}", rfc3339(c.not_after));
    println!("  key type:    {}", c.key_type);
    println!("  sha256:      {}", c.fingerprint_sha256);
}

fn print_chain(pem: &[u8]) -> Result<(), CliError> {
    let chain = parse_chain(pem).map_err(crypto_err("reading the certificate chain"))?;
    for (i, c) in chain.iter().enumerate() {
        print_cert(i, c);
    }
    Ok(())
}

fn run(argv: Vec<OsString>) -> Result<(), CliError> {
    let args = Args::parse(argv)?;
    match args.words.first().map(String::as_str) {
        Some("issue") if args.words.len() == 1 => cmd_issue(&args, false),
        Some("renew") if args.words.len() == 1 => cmd_issue(&args, true),
        Some("revoke") if args.words.len() == 1 => cmd_revoke(&args),
        Some("issue" | "renew" | "revoke") => {
            usage(format!("unexpected argument {:?}", args.words[1]))
        }
        Some("show") => cmd_show(&args),
        Some("list") => cmd_list(&args),
        Some("check") => cmd_check(&args),
        Some("account") => cmd_account(&args),
        Some(other) => usage(format!("unknown command {other:?}")),
        None => usage("no command given"),
    }
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    if argv.iter().any(|a| a == "--help" || a == "-h") || argv.first().is_some_and(|a| a == "help")
    {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    if argv.iter().any(|a| a == "--version") {
        println!("acme-rs {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    match run(argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Failed(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(1)
        }
        Err(CliError::Usage(m)) => {
            eprintln!("error: {m}\nsee `acme-rs --help`");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parsing() {
        let a = Args::parse(argv(
            "issue --domain A.example. --domain=b.example --store d --verbose",
        ))
        .unwrap();
        assert_eq!(a.words, vec!["issue"]);
        assert_eq!(a.domains().unwrap(), vec!["a.example", "b.example"]);
        assert!(a.flag("verbose"));
        assert!(a.allow("issue", &["domain", "store"]).is_ok());
        assert!(a.allow("show", &["store"]).is_err());
        // Every bad command line names the option at fault.
        for (line, want) in [
            ("issue --bogus", "unknown option --bogus"),
            ("issue -x", "unknown option -x"),
            ("issue --store", "--store needs a value"),
            ("issue --verbose=yes", "--verbose takes no value"),
        ] {
            match Args::parse(argv(line)) {
                Err(CliError::Usage(m)) => assert_eq!(m, want, "{line}"),
                _ => panic!("{line}: parsed"),
            }
        }
        // A value may start with a dash; after `--` everything is a word.
        let a = Args::parse(argv("issue --reason -1 -- --store")).unwrap();
        assert_eq!(a.get("reason"), Some("-1"));
        assert_eq!(a.words, vec!["issue", "--store"]);
        let a = Args::parse(argv("x --key-type dsa")).unwrap();
        assert!(a.key_type().is_err());
        let a = Args::parse(argv("x --store a --store b")).unwrap();
        assert!(a.allow("x", &["store"]).is_err());
    }
}
