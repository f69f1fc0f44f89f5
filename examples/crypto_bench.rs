//! Crypto rates on one core for `make bench` (P7 and the keygen/CSR table of
//! docs/BENCHMARKS.md): `crypto_bench [--quick] [CHAIN.pem [KEY.pem]]`.
//!
//! Prints one `name rate unit` line per measurement. Each operation runs back to back on this
//! thread until a time budget is spent (key generation also until a minimum count). With a PEM
//! chain argument it also times certificate parsing (what a renewal scan does per entry); with
//! its key too, loading the pair from the shared cache's compact form (a worker-cache miss)
//! and parsing the leaf with and without OpenSSL's provider decoders (src/crypto/leaf.rs).
use resty_acme_core::crypto::{cert, chain, csr, jws, leaf, KeyType, PrivateKey};
use resty_acme_core::tls::compact;
use std::time::{Duration, Instant};

/// Runs `op` until `budget` has passed and at least `min` times; returns operations per second.
fn rate<F: FnMut() -> Result<(), String>>(
    budget: Duration,
    min: u32,
    mut op: F,
) -> Result<f64, String> {
    let start = Instant::now();
    let mut n: u32 = 0;
    while n < min || start.elapsed() < budget {
        op()?;
        n += 1;
    }
    Ok(f64::from(n) / start.elapsed().as_secs_f64())
}

fn key(kind: KeyType) -> Result<PrivateKey, String> {
    PrivateKey::generate(kind).map_err(|e| e.to_string())
}

fn jws_rate(budget: Duration, k: &PrivateKey) -> Result<f64, String> {
    // A typical POST-as-GET with a kid, a nonce and an order URL.
    let url = "https://acme.example.test/acme/order/1234567/89012345678";
    let kid = "https://acme.example.test/acme/acct/1234567";
    let nonce = "oFvnlFP1wIhRlYS2jTaXbA";
    let payload = r#"{"identifiers":[{"type":"dns","value":"www.example.test"}]}"#;
    rate(budget, 1, || {
        jws::sign_flattened(k, url, Some(nonce), jws::KeyId::Kid(kid), Some(payload))
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut paths = args.iter().filter(|a| !a.starts_with("--"));
    let chain_path = paths.next();
    let key_path = paths.next();
    let budget = Duration::from_millis(if quick { 200 } else { 1500 });

    let p256 = key(KeyType::EcP256)?;
    let rsa2048 = key(KeyType::Rsa(2048))?;
    let rsa4096 = key(KeyType::Rsa(4096))?;

    println!("es256_jws {:.1} signatures/s", jws_rate(budget, &p256)?);
    println!(
        "rs256_jws_rsa2048 {:.1} signatures/s",
        jws_rate(budget, &rsa2048)?
    );
    println!(
        "rs256_jws_rsa4096 {:.1} signatures/s",
        jws_rate(budget, &rsa4096)?
    );

    println!(
        "keygen_p256 {:.1} keys/s",
        rate(budget, 1, || key(KeyType::EcP256).map(|_| ()))?
    );
    println!(
        "keygen_rsa2048 {:.2} keys/s",
        rate(budget * 2, if quick { 2 } else { 10 }, || key(
            KeyType::Rsa(2048)
        )
        .map(|_| ()))?
    );
    println!(
        "keygen_rsa4096 {:.3} keys/s",
        rate(budget * 3, if quick { 1 } else { 6 }, || key(KeyType::Rsa(
            4096
        ))
        .map(|_| ()))?
    );

    let names = ["www.example.test"];
    for (label, k) in [
        ("p256", &p256),
        ("rsa2048", &rsa2048),
        ("rsa4096", &rsa4096),
    ] {
        let r = rate(budget, 1, || {
            csr::create_csr(k, &names)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })?;
        println!("csr_{label} {r:.1} csrs/s");
    }

    if let Some(path) = chain_path {
        let pem = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let blocks = cert::split_pem_chain(&pem);
        let leaf = blocks
            .first()
            .ok_or("no certificate in the chain file")?
            .clone();
        let r = rate(budget, 1, || {
            cert::parse_chain(pem.as_bytes())
                .map(|_| ())
                .map_err(|e| e.to_string())
        })?;
        println!("cert_parse_chain{} {r:.1} chains/s", blocks.len());
        let r = rate(budget, 1, || {
            cert::parse_chain(leaf.as_bytes())
                .map(|_| ())
                .map_err(|e| e.to_string())
        })?;
        println!("cert_parse_leaf {r:.1} certs/s");
        let r = rate(budget, 1, || {
            cert::leaf_not_after(pem.as_bytes())
                .map(|_| ())
                .map_err(|e| e.to_string())
        })?;
        println!("cert_not_after {r:.1} certs/s");
        let der = openssl::x509::X509::from_pem(leaf.as_bytes())
            .and_then(|c| c.to_der())
            .map_err(|e| e.to_string())?;
        let r = rate(budget, 1, || {
            openssl::x509::X509::from_der(&der)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })?;
        println!("leaf_der_provider_decoders {r:.1} certs/s");
        let r = rate(budget, 1, || {
            leaf::parse_der(&der).map(|_| ()).map_err(|e| e.to_string())
        })?;
        println!("leaf_der_builtin_decoder {r:.1} certs/s");
        if let Some(kpath) = key_path {
            let kpem = std::fs::read(kpath).map_err(|e| format!("{kpath}: {e}"))?;
            let pkey =
                openssl::pkey::PKey::private_key_from_pem(&kpem).map_err(|e| e.to_string())?;
            let stack = chain::build_chain(pem.as_bytes()).map_err(|e| e.to_string())?;
            let blob = compact::encode(&stack, &pkey, &[0; 16], 0.0).map_err(|e| e.to_string())?;
            let r = rate(budget, 1, || {
                compact::decode(&blob)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })?;
            println!("compact_load_chain{} {r:.1} loads/s", blocks.len());
        }
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("crypto_bench: {e}");
        std::process::exit(1);
    }
}
