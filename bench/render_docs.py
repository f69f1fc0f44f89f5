#!/usr/bin/env python3
"""Rewrites the numbers in docs/BENCHMARKS.md (between the bench:begin/bench:end markers) from
bench/results/latest.json (Debian's nginx) and, when present, latest-openresty.json
(`make bench OPENRESTY=<prefix>`): `python3 bench/render_docs.py` after full runs."""

import json
import os
import re
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(os.path.dirname(BENCH), "docs", "BENCHMARKS.md")
RESULTS = os.path.join(BENCH, "results", "latest.json")
RESULTS_OPENRESTY = os.path.join(BENCH, "results", "latest-openresty.json")

ROWS = [
    ("P1", "worker CPU per full handshake, autossl-cached ÷ static, same chain", "≤ 1.03"),
    ("P2", "the same over 10,000 names, steady state", "≤ 1.10"),
    ("P3", "first request → issued certificate, `blocking = true`, median of 10, s", "≤ 1.0"),
    ("P4", "100 new names at once, wall s", "≤ 20"),
    ("P5", "worker RSS per cached certificate (10,000 cached), KiB", "≤ 8"),
    ("P6", "renewal scan of 10,000 stored certificates, worker CPU s", "≤ 1.0"),
    ("P7", "ES256 JWS signatures per second, one core", "reported"),
    ("P8", "p99 handshake latency while 20 names get RSA-4096 keys ÷ idle p99", "≤ 1.5"),
    ("P9", "first request → issued certificate, `blocking = false`, retry every 0.2 s, "
           "median of 10, s", "≤ 1.5"),
    ("P10", "worker CPU per full handshake ÷ static, 100,000 names in redis, all in use, "
            "cache_size 10,000 + shared_cache", "≤ 1.5"),
    ("P11", "renewal CPU per cluster pass over 100,000 stored certificates in one redis, "
            "none due, 3 nodes ÷ 1 node", "≤ 1.1"),
    ("P12", "worker RSS per cached certificate, 100,000 cached (cache_size 10,000 + "
            "shared_cache), KiB", "≤ 6"),
]

CRYPTO = [
    ("es256_jws", "JWS ES256 (P-256 account key): P7"),
    ("rs256_jws_rsa2048", "JWS RS256, RSA-2048 account key"),
    ("rs256_jws_rsa4096", "JWS RS256, RSA-4096 account key (the default, as the original)"),
    ("keygen_p256", "key generation, P-256"),
    ("keygen_rsa2048", "key generation, RSA-2048"),
    ("keygen_rsa4096", "key generation, RSA-4096"),
    ("csr_p256", "CSR, P-256 key"),
    ("csr_rsa2048", "CSR, RSA-2048 key"),
    ("csr_rsa4096", "CSR, RSA-4096 key"),
    ("cert_parse_chain2", "certificate parse, leaf + intermediate (`core.cert_parse`)"),
    ("cert_parse_leaf", "certificate parse, leaf only"),
    ("cert_not_after", "leaf notAfter (`core.cert_not_after`)"),
    ("leaf_der_provider_decoders", "leaf DER parse, OpenSSL's provider decoders (`X509::from_der`)"),
    ("leaf_der_builtin_decoder", "leaf DER parse, built-in key decoder (`crypto::leaf::parse_der`)"),
    ("compact_load_chain2", "shared-cache entry load, leaf + intermediate + P-256 key (P10's miss)"),
]


def num(v, digits=3):
    if v is None:
        return "error"
    if isinstance(v, (int, float)) and abs(v) >= 1000:
        return "{:,.0f}".format(v)
    return ("%." + str(digits) + "f") % v


def render(d):
    m = d["machine"]
    figs, det, met = d["figures"], d["details"], d["met"]
    out = []
    out.append("Taken with `make bench` on %s: %d cores (`nproc`), CPU `%s` (`/proc/cpuinfo` "
               "model name), Linux %s, %s, %s; the run took %.0f s (a VM "
               "whose cores may be shared; the figures are ratios taken side by side)." % (
                   m["date"], m["nproc"], m["cpu"], m["kernel"], m.get("openssl", "?"),
                   m.get("nginx", "?"), d["seconds"]))
    out.append("")
    out.append("| figure | what | value | target | met |")
    out.append("|---|---|---|---|---|")
    for f, what, target in ROWS:
        ok = "" if f == "P7" else ("yes" if met.get(f) else "**no**")
        out.append("| %s | %s | **%s** | %s | %s |" % (f, what, num(figs.get(f)), target, ok))
    out.append("")
    p1 = det.get("P1", {})
    if p1:
        out.append("P1 per side (median µs of worker CPU per handshake; median of per-round ratios "
                   "to static; ratio of totals; handshakes/s of the client):")
        out.append("")
        out.append("| side | µs/handshake | ratio | ratio of totals | handshakes/s |")
        out.append("|---|---|---|---|---|")
        for side in ("static", "autossl", "lua", "empty", "min"):
            s = p1.get(side)
            if s:
                out.append("| %s | %.1f | %.3f | %.3f | %.0f |" % (
                    side, s["cpu_us_per_handshake"], s["ratio"], s["ratio_of_totals"],
                    s["handshakes_per_s"]))
        out.append("")
    p2 = det.get("P2", {})
    if p2:
        a, s = p2["autossl"], p2["static"]
        out.append("P2: %d handshakes per side; autossl %.1f µs/handshake (median round), static "
                   "%.1f; ratio of totals %.3f, median of rounds %.3f; %.0f handshakes/s."
                   % (a["handshakes"], a["cpu_us_per_handshake"], s["cpu_us_per_handshake"],
                      a["ratio_of_totals"], a["ratio"], a["handshakes_per_s"]))
        out.append("")
    p5 = det.get("P5", {})
    if p5:
        out.append("P5: worker RSS %d → %d KiB for %d certificates, of which the Lua heap "
                   "%d → %d KiB (%.2f KiB per certificate); filling the cache from the store ran "
                   "at %.0f handshakes/s." % (
                       p5["rss_before_kib"], p5["rss_after_kib"], p5["certs"],
                       p5["lua_heap_before_kib"], p5["lua_heap_after_kib"],
                       p5["lua_heap_per_cert_kib"], p5["fill_handshakes_per_s"]))
        out.append("")
    p6 = det.get("P6", {})
    if p6:
        out.append("P6: passes of %s CPU s over %d entries." % (
            ", ".join("%.3f" % p["cpu_s"] for p in p6["passes"]), p6["entries"]))
        out.append("")
    p11 = det.get("P11", {})
    if p11:
        out.append("P11: %.3f CPU s per pass on 1 node, %.3f summed over 3 nodes (%d entries)." % (
            p11["one"]["cpu_s_per_pass"], p11["three"]["cpu_s_per_pass"], p11["entries"]))
        out.append("")
    for f in ("P3", "P9"):
        if det.get(f):
            out.append("%s: %s s." % (f, ", ".join("%.2f" % x for x in det[f]["seconds"])))
            out.append("")
    if det.get("P4"):
        out.append("P4: median name served after %.2f s." % det["P4"]["median_s"])
        out.append("")
    p8 = det.get("P8", {})
    if p8:
        ratios = p8.get("cycle_ratios")
        cycles = (" Cycles: %s; the median cycle:" % ", ".join("%.3f" % r for r in ratios)
                  if ratios else "")
        out.append("P8:%s p99 %.2f ms idle, %.2f ms while issuing (p50 %.2f / %.2f ms, max while "
                   "issuing %.1f ms; %d and %d handshakes; issuing took %.1f s)." % (
                       cycles, p8["p99_ms_idle"], p8["p99_ms_issuing"], p8["p50_ms_idle"],
                       p8["p50_ms_issuing"], p8["max_ms_issuing"], p8["samples_idle"],
                       p8["samples_issuing"], p8["issuing_seconds"]))
        out.append("")
    p7 = det.get("P7", {})
    if p7:
        out.append("Crypto rates (`examples/crypto_bench.rs`, one core):")
        out.append("")
        out.append("| operation | per second | per operation |")
        out.append("|---|---|---|")
        for key, label in CRYPTO:
            if key in p7:
                r = p7[key]["rate"]
                per = 1.0 / r if r else 0
                unit = "%.2f s" % per if per >= 0.1 else (
                    "%.2f ms" % (per * 1e3) if per >= 1e-3 else "%.1f µs" % (per * 1e6))
                out.append("| %s | %s | %s |" % (label, num(r, 2), unit))
    return "\n".join(out).rstrip() + "\n"


def side_by_side(deb, ores):
    """Both platforms' figures in one table (each column from its own run)."""
    out = ["Both platforms, each column from its own `make bench` run on this machine:", "",
           "| figure | what | Debian: %s | OpenResty: %s | target |" % (
               deb["machine"].get("nginx", "?"), ores["machine"].get("nginx", "?")),
           "|---|---|---|---|---|"]
    for f, what, target in ROWS:
        def cell(d):
            v = num(d["figures"].get(f))
            if f != "P7" and not d["met"].get(f):
                v += " (not met)"
            return v
        out.append("| %s | %s | %s | %s | %s |" % (f, what, cell(deb), cell(ores), target))
    return "\n".join(out) + "\n"


def load(path):
    with open(path) as f:
        d = json.load(f)
    if d.get("quick"):
        sys.exit("render_docs: %s comes from a --quick run; run `make bench` first" % path)
    return d


def main():
    d = load(RESULTS)
    text = render(d)
    if os.path.exists(RESULTS_OPENRESTY):
        o = load(RESULTS_OPENRESTY)
        text = (side_by_side(d, o) + "\n### Debian nginx 1.22\n\n" + text
                + "\n### OpenResty (`make bench OPENRESTY=<prefix>`)\n\n" + render(o))
    with open(DOC) as f:
        doc = f.read()
    block = "<!-- bench:begin (bench/render_docs.py) -->\n" + text + "<!-- bench:end -->"
    new, n = re.subn(r"<!-- bench:begin.*?<!-- bench:end -->", lambda _: block, doc, flags=re.S)
    if n != 1:
        sys.exit("render_docs: markers not found in %s" % DOC)
    with open(DOC, "w") as f:
        f.write(new)
    print("render_docs: %s updated from %s%s" % (
        DOC, RESULTS, " and " + RESULTS_OPENRESTY if os.path.exists(RESULTS_OPENRESTY) else ""))


if __name__ == "__main__":
    main()
