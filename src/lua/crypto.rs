//! Glue for `crypto`: keys, JWS, CSR, certificates, digests, and key generation off the event
//! loop. Expected failures come back as `nil, err`; only wrong argument types raise.
use super::to_lua;
use crate::crypto::{
    self, cert, chain, challenge, csr, digest, encoding, jws, KeyType, PrivateKey,
};
use mlua::prelude::*;
use std::thread::JoinHandle;

type Ret<T> = LuaResult<Result<T, String>>;

/// A private key handle shared with Lua.
pub struct LuaKey(pub PrivateKey);

impl LuaUserData for LuaKey {
    fn add_methods<M: LuaUserDataMethods<Self>>(m: &mut M) {
        m.add_method("to_pem", |_, k, ()| -> Ret<String> {
            Ok(k.0.to_pem().map_err(|e| e.to_string()))
        });
        m.add_method("public_pem", |_, k, ()| -> Ret<String> {
            Ok(k.0.public_key_pem().map_err(|e| e.to_string()))
        });
        m.add_method("jwk", |_, k, ()| -> Ret<String> {
            Ok(k.0.jwk().map(|v| v.to_string()).map_err(|e| e.to_string()))
        });
        m.add_method("thumbprint", |_, k, ()| -> Ret<String> {
            Ok(k.0.thumbprint().map_err(|e| e.to_string()))
        });
        m.add_method("alg", |_, k, ()| Ok(k.0.jws_alg()));
        m.add_method("type", |_, k, ()| Ok(key_type_name(k.0.key_type())));
        m.add_method("bits", |_, k, ()| {
            Ok(match k.0.key_type() {
                KeyType::Rsa(bits) => bits,
                KeyType::EcP256 => 256,
                KeyType::EcP384 => 384,
            })
        });
        m.add_method("sign", |lua, k, data: LuaString| -> Ret<LuaString> {
            match k.0.sign_jws(&data.as_bytes()) {
                Ok(sig) => Ok(Ok(lua.create_string(sig)?)),
                Err(e) => Ok(Err(e.to_string())),
            }
        });
    }
}

/// `rsa` or `ecc`: the original's names for key types.
pub fn key_type_name(kind: KeyType) -> &'static str {
    match kind {
        KeyType::Rsa(_) => "rsa",
        KeyType::EcP256 | KeyType::EcP384 => "ecc",
    }
}

/// What a [`ThreadJob`] hands to Lua when its thread has finished.
pub trait JobOutput: Send + 'static {
    /// What the job computes, for error messages ("key generation", "signing").
    const WHAT: &'static str;
    fn into_lua_value(self, lua: &Lua) -> LuaResult<LuaValue>;
}

impl JobOutput for PrivateKey {
    const WHAT: &'static str = "key generation";
    fn into_lua_value(self, lua: &Lua) -> LuaResult<LuaValue> {
        Ok(LuaValue::UserData(lua.create_userdata(LuaKey(self))?))
    }
}

/// Bytes (a signature, a DER CSR) become a Lua string.
impl JobOutput for Vec<u8> {
    const WHAT: &'static str = "signing";
    fn into_lua_value(self, lua: &Lua) -> LuaResult<LuaValue> {
        Ok(LuaValue::String(lua.create_string(self)?))
    }
}

/// Work running on a Rust thread (key generation, RSA signatures); Lua polls it between
/// `ngx.sleep`s, so nginx's event loop goes on meanwhile.
pub struct ThreadJob<T: JobOutput>(Option<JoinHandle<Result<T, String>>>);

impl<T: JobOutput> ThreadJob<T> {
    /// Starts `work` on a new `SCHED_IDLE` thread named `name` (see [`background_priority`]);
    /// `Err` when no thread could be started.
    ///
    /// `heavy` work (RSA) first waits for the machine-wide slot ([`crate::cpu_slot`]), asleep.
    pub fn spawn(
        name: &str,
        heavy: bool,
        work: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<ThreadJob<T>, String> {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                background_priority();
                let slot = if heavy {
                    crate::cpu_slot::acquire()
                } else {
                    None
                };
                let result = work();
                drop(slot);
                result
            })
            .map(|h| ThreadJob(Some(h)))
            .map_err(|e| format!("cannot start {} thread: {e}", T::WHAT))
    }

    /// Starts `work` on a new thread of normal priority (waiting on a child process, whose
    /// policy it would pass on).
    pub fn spawn_plain(
        name: &str,
        work: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<ThreadJob<T>, String> {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(work)
            .map(|h| ThreadJob(Some(h)))
            .map_err(|e| format!("cannot start {} thread: {e}", T::WHAT))
    }

    /// The result, once: `Ok(None)` while the thread runs (unless `block`, which waits for it).
    /// A panic of the thread is an error, never a raise.
    fn take(&mut self, lua: &Lua, block: bool) -> LuaResult<Result<Option<LuaValue>, String>> {
        let Some(handle) = self.0.take_if(|h| block || h.is_finished()) else {
            return Ok(match self.0 {
                Some(_) => Ok(None),
                None => Err(format!("{} result already taken", T::WHAT)),
            });
        };
        Ok(match handle.join() {
            Ok(Ok(v)) => Ok(Some(v.into_lua_value(lua)?)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("{} thread panicked", T::WHAT)),
        })
    }
}

impl<T: JobOutput> LuaUserData for ThreadJob<T> {
    fn add_methods<M: LuaUserDataMethods<Self>>(m: &mut M) {
        // Returns `false` while running, then the result (or `nil, err`) exactly once.
        m.add_method_mut(
            "poll",
            |lua, job, ()| -> LuaResult<(LuaValue, Option<String>)> {
                Ok(match job.take(lua, false)? {
                    Ok(Some(v)) => (v, None),
                    Ok(None) => (LuaValue::Boolean(false), None),
                    Err(e) => (LuaValue::Nil, Some(e)),
                })
            },
        );
        // Blocks until the thread ends: for phases where ngx.sleep cannot yield.
        m.add_method_mut(
            "wait",
            |lua, job, ()| -> LuaResult<(LuaValue, Option<String>)> {
                Ok(match job.take(lua, true)? {
                    Ok(Some(v)) => (v, None),
                    Ok(None) => (LuaValue::Nil, Some(format!("{} did not finish", T::WHAT))),
                    Err(e) => (LuaValue::Nil, Some(e)),
                })
            },
        );
    }
}

/// Puts the calling thread in SCHED_IDLE: an RSA-4096 key takes about a second of CPU, and
/// nginx's event loops (the handshakes) must win every CPU they want from it. SCHED_IDLE rather
/// than nice 19 because a waking normal thread preempts an idle-policy one at once, where a
/// nice-19 thread may finish its slice first (measured: half the event-loop delays during a
/// burst of RSA orders). The key generation holds no lock nginx's thread waits for beyond
/// OpenSSL's brief internal ones. Best effort: where the call fails the thread keeps its policy.
fn background_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 names the calling thread; `param` is a valid sched_param that outlives
        // the call, and SCHED_IDLE needs no privilege.
        unsafe {
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
        }
    }
}

/// Signs on a thread (an RSA JWS or CSR; RSA-4096 about 3 ms each): `work` holds a key of its
/// own (a shared handle on the same OpenSSL key). `SCHED_IDLE` as key generation: measured
/// against the default policy, P3 and P9 did not change (0.55-0.57 s and 0.61 s either way)
/// and P8 stayed within its run-to-run noise.
pub fn sign_job(
    work: impl FnOnce() -> Result<Vec<u8>, crypto::CryptoError> + Send + 'static,
) -> Result<ThreadJob<Vec<u8>>, String> {
    ThreadJob::spawn("acme-sign", true, move || work().map_err(|e| e.to_string()))
}

fn parse_key_type(
    typ: Option<String>,
    bits: Option<u32>,
    curve: Option<String>,
) -> Result<KeyType, String> {
    KeyType::parse(typ.as_deref(), bits, curve.as_deref()).map_err(|e| e.to_string())
}

fn names_from_table(names: &LuaTable) -> LuaResult<Vec<String>> {
    names.sequence_values::<String>().collect()
}

/// A Lua function of one string (a PEM text) whose failure comes back as `nil, err`.
fn pem_fn<T: IntoLua + 'static>(
    lua: &Lua,
    f: fn(&[u8]) -> Result<T, crypto::CryptoError>,
) -> LuaResult<LuaFunction> {
    lua.create_function(move |_, pem: LuaString| -> Ret<T> {
        Ok(f(&pem.as_bytes()).map_err(|e| e.to_string()))
    })
}

fn bytes_ret(lua: &Lua, r: Result<Vec<u8>, crypto::CryptoError>) -> Ret<LuaString> {
    match r {
        Ok(b) => Ok(Ok(lua.create_string(b)?)),
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// Key handles: parse, generate (here or on a thread).
fn register_keys(lua: &Lua, t: &LuaTable) -> LuaResult<()> {
    t.set(
        "pkey_from_pem",
        pem_fn(lua, |pem| PrivateKey::from_pem(pem).map(LuaKey))?,
    )?;
    // Synchronous generation: for EC keys and tests. RSA keys in nginx go through pkey_generate_async.
    t.set(
        "pkey_generate",
        lua.create_function(
            |_, (typ, bits, curve): (Option<String>, Option<u32>, Option<String>)| -> Ret<LuaKey> {
                let kind = match parse_key_type(typ, bits, curve) {
                    Ok(k) => k,
                    Err(e) => return Ok(Err(e)),
                };
                Ok(PrivateKey::generate(kind)
                    .map(LuaKey)
                    .map_err(|e| e.to_string()))
            },
        )?,
    )?;
    t.set(
        "pkey_generate_async",
        lua.create_function(
            |_,
             (typ, bits, curve): (Option<String>, Option<u32>, Option<String>)|
             -> Ret<ThreadJob<PrivateKey>> {
                let kind = match parse_key_type(typ, bits, curve) {
                    Ok(k) => k,
                    Err(e) => return Ok(Err(e)),
                };
                let heavy = matches!(kind, KeyType::Rsa(_));
                Ok(ThreadJob::spawn("acme-keygen", heavy, move || {
                    PrivateKey::generate(kind).map_err(|e| e.to_string())
                }))
            },
        )?,
    )?;
    Ok(())
}

/// JWS request bodies and the EAB binding (RFC 8555 §6.2, §7.3.4).
fn register_jws(lua: &Lua, t: &LuaTable) -> LuaResult<()> {
    t.set(
        "jws",
        lua.create_function(
            |_,
             (key, url, nonce, kid, payload): (
                LuaUserDataRef<LuaKey>,
                String,
                Option<String>,
                Option<String>,
                Option<String>,
            )|
             -> Ret<String> {
                let key_id = match &kid {
                    Some(k) => jws::KeyId::Kid(k),
                    None => jws::KeyId::Jwk,
                };
                Ok(
                    jws::sign_flattened(&key.0, &url, nonce.as_deref(), key_id, payload.as_deref())
                        .map_err(|e| e.to_string()),
                )
            },
        )?,
    )?;
    t.set(
        "eab",
        lua.create_function(
            |_,
             (eab_kid, hmac_key, url, key): (String, LuaString, String, LuaUserDataRef<LuaKey>)|
             -> Ret<String> {
                let jwk = match key.0.jwk() {
                    Ok(j) => j,
                    Err(e) => return Ok(Err(e.to_string())),
                };
                Ok(jws::eab_binding(&eab_kid, &hmac_key.as_bytes(), &url, &jwk)
                    .map(|v| v.to_string())
                    .map_err(|e| e.to_string()))
            },
        )?,
    )?;
    Ok(())
}

/// CSRs: signed here, from pairs, or on a thread.
fn register_csrs(lua: &Lua, t: &LuaTable) -> LuaResult<()> {
    t.set(
        "csr",
        lua.create_function(
            |lua, (key, names): (LuaUserDataRef<LuaKey>, LuaTable)| -> Ret<LuaString> {
                let names = names_from_table(&names)?;
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                bytes_ret(lua, csr::create_csr(&key.0, &refs))
            },
        )?,
    )?;
    // The CSR signed on a thread (an RSA-4096 signature costs about 3 ms of the event loop).
    t.set(
        "csr_build",
        lua.create_function(
            |lua,
             (key, subject, sans): (
                LuaUserDataRef<LuaKey>,
                Vec<Vec<String>>,
                Vec<Vec<String>>,
            )| {
                // { {field, value}, ... } pairs from Lua
                let pairs = |v: Vec<Vec<String>>| -> Option<Vec<(String, String)>> {
                    v.into_iter()
                        .map(|p| match <[String; 2]>::try_from(p) {
                            Ok([a, b]) => Some((a, b)),
                            Err(_) => None,
                        })
                        .collect()
                };
                match (pairs(subject), pairs(sans)) {
                    (Some(subject), Some(sans)) => {
                        bytes_ret(lua, csr::build_csr(&key.0, &subject, &sans))
                    }
                    _ => Ok(Err("csr_build: entries must be {name, value} pairs".to_string())),
                }
            },
        )?,
    )?;
    t.set(
        "csr_async",
        lua.create_function(
            |_, (key, names): (LuaUserDataRef<LuaKey>, LuaTable)| -> Ret<ThreadJob<Vec<u8>>> {
                let names = names_from_table(&names)?;
                let key = key.0.clone();
                Ok(sign_job(move || {
                    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                    csr::create_csr(&key, &refs)
                }))
            },
        )?,
    )?;
    Ok(())
}

/// Reading certificates: their fields, the root's issuer, the leaf's DER, its ARI id.
fn register_cert_reading(lua: &Lua, t: &LuaTable) -> LuaResult<()> {
    t.set(
        "cert_parse",
        lua.create_function(|lua, pem: LuaString| -> Ret<LuaValue> {
            match cert::parse_chain(&pem.as_bytes()) {
                Ok(infos) => Ok(Ok(to_lua(lua, &infos)?)),
                Err(e) => Ok(Err(e.to_string())),
            }
        })?,
    )?;
    t.set(
        "cert_root_issuer_cn",
        lua.create_function(
            |_, pem: LuaString| -> LuaResult<(Option<String>, Option<String>)> {
                match cert::root_issuer_cn(&pem.as_bytes()) {
                    Ok(cn) => Ok((cn, None)),
                    Err(e) => Ok((None, Some(e.to_string()))),
                }
            },
        )?,
    )?;
    t.set(
        "cert_leaf_der",
        lua.create_function(|lua, pem: LuaString| bytes_ret(lua, cert::leaf_der(&pem.as_bytes())))?,
    )?;
    t.set("ari_cert_id", pem_fn(lua, cert::ari_cert_id)?)?;
    Ok(())
}

/// What serving and renewal ask of a stored chain: the chain for the handshake, the leaf's dates.
fn register_cert_serving(lua: &Lua, t: &LuaTable) -> LuaResult<()> {
    // The chain for ngx.ssl.set_cert: a STACK_OF(X509)* as a light userdata that owns one
    // reference to each certificate (intermediates shared between chains). The caller must
    // hand it to ffi.gc with ngx_http_lua_ffi_free_cert at once, or it leaks.
    t.set(
        "cert_chain",
        pem_fn(lua, |pem| chain::build_chain_raw(pem).map(LuaLightUserData))?,
    )?;
    // notAfter of the leaf without an X509 parse: what a renewal pass asks of every entry.
    t.set("cert_not_after", pem_fn(lua, cert::leaf_not_after)?)?;
    // The renewal rule (acme::renewal) for a stored certificate: due_at, not_before, not_after
    // (Unix seconds). `issued` is when the entry was stored, when known.
    t.set(
        "cert_renewal_due",
        lua.create_function(
            |_, (pem, threshold, issued): (LuaString, f64, Option<f64>)| {
                Ok(match cert::leaf_validity(&pem.as_bytes()) {
                    Ok(v) => (
                        Some(crate::acme::renewal::renewal_due_at(
                            v.not_before as f64,
                            v.not_after as f64,
                            issued,
                            threshold,
                            v.spread,
                        )),
                        Some(v.not_before),
                        Some(v.not_after),
                        None,
                    ),
                    Err(e) => (None, None, None, Some(e.to_string())),
                })
            },
        )?,
    )?;
    Ok(())
}

/// Challenge values and tls-alpn-01 serving (RFC 8555 §8, RFC 8737).
fn register_challenges(lua: &Lua, t: &LuaTable) -> LuaResult<()> {
    t.set(
        "key_authorization",
        lua.create_function(|_, (token, thumb): (String, String)| {
            Ok(challenge::key_authorization(&token, &thumb))
        })?,
    )?;
    t.set(
        "dns01_value",
        lua.create_function(|_, keyauth: String| Ok(challenge::dns01_txt_value(&keyauth)))?,
    )?;
    t.set(
        "tls_alpn01_cert",
        lua.create_function(
            |_,
             (ident, keyauth): (String, String)|
             -> LuaResult<(Option<String>, Option<String>)> {
                match challenge::tls_alpn01_certificate(&ident, &keyauth) {
                    Ok((cert, key)) => Ok((Some(cert), Some(key))),
                    Err(e) => Ok((None, Some(e.to_string()))),
                }
            },
        )?,
    )?;
    t.set(
        "tls_alpn_offered",
        lua.create_function(|_, ext: LuaString| {
            Ok(crate::tls::tls_alpn::offers_acme_tls_1(&ext.as_bytes()))
        })?,
    )?;
    // `ssl` is the address of the connection's SSL*, from ngx.ssl.get_req_ssl_pointer() cast to
    // a number by resty.acme.challenge.tls-alpn-01 (the only caller). The certificate is built
    // and installed here, not handed through Lua as PEM.
    t.set(
        "tls_alpn_serve",
        lua.create_function(
            |_, (ssl, ident, keyauth): (f64, String, String)| -> Ret<bool> {
                if !(ssl.is_finite() && ssl > 0.0 && ssl.fract() == 0.0 && ssl < 2f64.powi(53)) {
                    return Err(LuaError::runtime(
                        "tls_alpn_serve: expected an SSL* address",
                    ));
                }
                let ptr = ssl as usize as *mut openssl_sys::SSL;
                let r = challenge::tls_alpn01_cert(&ident, &keyauth).and_then(|(cert, key)| {
                    // SAFETY: the address comes from get_req_ssl_pointer() of the connection
                    // whose ClientHello phase is running; nginx holds no other reference to it
                    // during the call.
                    unsafe { crate::tls::tls_alpn::serve_challenge(ptr, &cert, &key) }
                });
                Ok(r.map(|_| true).map_err(|e| e.to_string()))
            },
        )?,
    )?;
    Ok(())
}

/// Digests, HMAC and base64url for the Lua modules.
fn register_encoding(lua: &Lua, t: &LuaTable) -> LuaResult<()> {
    t.set(
        "digest",
        lua.create_function(|lua, (alg, data): (String, LuaString)| {
            bytes_ret(lua, digest::digest(&alg, &data.as_bytes()))
        })?,
    )?;
    t.set(
        "hmac",
        lua.create_function(|lua, (alg, key, data): (String, LuaString, LuaString)| {
            bytes_ret(lua, digest::hmac(&alg, &key.as_bytes(), &data.as_bytes()))
        })?,
    )?;
    t.set(
        "b64url",
        lua.create_function(|_, data: LuaString| Ok(encoding::b64url(&data.as_bytes())))?,
    )?;
    t.set(
        "b64url_decode",
        lua.create_function(|lua, text: String| bytes_ret(lua, encoding::b64url_decode(&text)))?,
    )?;
    Ok(())
}

pub fn register(lua: &Lua, t: &LuaTable) -> LuaResult<()> {
    register_keys(lua, t)?;
    register_jws(lua, t)?;
    register_csrs(lua, t)?;
    register_cert_reading(lua, t)?;
    register_cert_serving(lua, t)?;
    register_challenges(lua, t)?;
    register_encoding(lua, t)?;
    Ok(())
}
