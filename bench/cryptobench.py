"""P7: ES256 JWS signatures per second on one core, with key generation, CSR and certificate
parsing rates beside it (examples/crypto_bench.rs, built by `make bench`)."""

import os
import subprocess
import tempfile

import certs
import lib

CLIENT_CORE = "1"


def binary():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(lib.REPO, "target")
    path = os.path.join(target, "release", "examples", "crypto_bench")
    if not os.path.exists(path):
        raise RuntimeError("%s missing: cargo build --release --example crypto_bench" % path)
    return path


def run(quick):
    with tempfile.TemporaryDirectory(prefix="acme-bench-crypto-") as d:
        chain = certs.BenchChain(d)
        argv = ["taskset", "-c", CLIENT_CORE, binary(), chain.chain_path, chain.key_path]
        if quick:
            argv.insert(4, "--quick")
        out = subprocess.run(argv, stdout=subprocess.PIPE, check=True, text=True).stdout
    rates = {}
    for line in out.splitlines():
        name, value, unit = line.split(None, 2)
        rates[name] = {"rate": float(value), "unit": unit}
    return round(rates["es256_jws"]["rate"]), rates
