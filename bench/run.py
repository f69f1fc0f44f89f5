#!/usr/bin/env python3
"""make bench: every figure of docs/BENCHMARKS.md (issue 8), then one `NAME VALUE` line each.

usage: bench/run.py [--only P1,P5,...] [--quick] [--keep] [--scale N]

Writes bench/results/latest.json (figures, details, targets, machine). --quick runs shortened
rounds (a smoke test, not numbers to publish); --keep leaves the work directory in place.
Run through `make bench` (it builds core.so and the crypto bench binary first).
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lib  # noqa: E402

FIGURES = ["P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9", "P10", "P11", "P12"]
TARGETS = {
    "P1": ("<=", 1.03), "P2": ("<=", 1.10), "P3": ("<=", 1.0), "P9": ("<=", 1.5),
    "P4": ("<=", 20.0), "P5": ("<=", 8.0), "P6": ("<=", 1.0), "P7": None,
    "P8": ("<=", 1.5), "P10": ("<=", 1.5), "P11": ("<=", 1.1), "P12": ("<=", 6.0),
}
UNITS = {"P1": "ratio", "P2": "ratio", "P3": "s", "P9": "s", "P4": "s", "P5": "KiB",
         "P6": "CPU s", "P7": "signatures/s", "P8": "ratio", "P10": "ratio", "P11": "ratio", "P12": "KiB"}


def run_serving(only, workdir, quick, results, details):
    import serving

    want = [f for f in ("P1", "P5", "P2", "P6") if f in only]
    if not want:
        return
    s = serving.Serving(os.path.join(workdir, "serving"), quick=quick)
    s.start()
    try:
        names = serving.p2_names(2000 if quick else serving.P2_COUNT)
        if any(f in only for f in ("P5", "P2", "P6")):
            lib.log("P5: storing %d entries and caching them all" % len(names))
            per, d = s.p5_fill(names)
            results["P5"] = round(per, 3)
            details["P5"] = d
            lib.log("P5 %s" % d)
        if "P2" in only:
            lib.log("P2: interleaved rounds over %d names for 2 x cache_ttl" % len(names))
            d = s.p2(names)
            # the ratio of totals: the rounds that re-read expired entries weigh as they
            # should (a median of rounds would pass over them)
            results["P2"] = d["autossl"]["ratio_of_totals"]
            details["P2"] = d
            lib.log("P2 %s" % d)
        if "P1" in only:
            lib.log("P1: interleaved h2load rounds (static, autossl, references)")
            d = s.p1()
            results["P1"] = d["autossl"]["ratio"]
            details["P1"] = d
            lib.log("P1 %s" % d)
        if "P6" in only:
            lib.log("P6: check_renew over the store")
            v, d = s.p6()
            results["P6"] = round(v, 3)
            details["P6"] = d
            lib.log("P6 %s" % d)
    finally:
        s.stop()


def run_crypto(only, workdir, quick, results, details):
    if "P7" not in only:
        return
    import cryptobench

    lib.log("P7: crypto rates on one core")
    v, d = cryptobench.run(quick)
    results["P7"] = v
    details["P7"] = d
    lib.log("P7 %s" % d)


def run_scale(only, workdir, quick, results, details, count):
    want = [f for f in ("P10", "P12") if f in only]
    if not want:
        return
    import scale

    scale.run(want, os.path.join(workdir, "scale"), count, quick, results, details)


def run_issuance(only, workdir, quick, results, details):
    want = [f for f in ("P3", "P9", "P4", "P8") if f in only]
    if not want:
        return
    import issuance

    issuance.run(want, os.path.join(workdir, "issuance"), quick, results, details)


def run_renewal_scale(only, workdir, quick, results, details, count):
    if "P11" not in only:
        return
    import renewal_scale

    lib.log("P11: renewal CPU per cluster pass, 3 nodes / 1 node on one redis")
    renewal_scale.run(os.path.join(workdir, "renewal_scale"), quick, results, details, count)


def fmt(v):
    if isinstance(v, float):
        return ("%.3f" % v) if abs(v) < 100 else ("%.0f" % v)
    return str(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(FIGURES))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--keep", action="store_true")
    # names for P10 and P12 (docs/BENCHMARKS.md: --scale 1000000 is the 10^6 run)
    ap.add_argument("--scale", type=int, default=100000)
    # one file per platform (OPENRESTY=<prefix> or Debian's nginx): render_docs shows both
    ap.add_argument("--out", default=os.path.join(lib.BENCH, "results", lib.results_name()))
    args = ap.parse_args()
    only = [f.strip().upper() for f in args.only.split(",") if f.strip()]
    unknown = [f for f in only if f not in FIGURES]
    if unknown:
        sys.exit("unknown figure(s): %s" % ", ".join(unknown))

    workdir = tempfile.mkdtemp(prefix="acme-bench-")
    results, details, errors = {}, {}, {}
    t0 = time.monotonic()
    groups = (("run_crypto", run_crypto), ("run_serving", run_serving),
              ("run_issuance", run_issuance),
              ("run_scale", lambda *a: run_scale(*a, count=2000 if args.quick else args.scale)),
              ("run_renewal_scale", lambda *a: run_renewal_scale(*a, count=args.scale)))
    for name, group in groups:
        try:
            group(only, workdir, args.quick, results, details)
        except Exception as e:  # one group failing must not hide the others' figures
            traceback.print_exc()
            errors[name] = "%s: %s" % (type(e).__name__, e)
    elapsed = time.monotonic() - t0
    if not args.keep and not errors:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        lib.log("work directory kept: %s" % workdir)

    data = {
        "figures": {f: results.get(f) for f in only},
        "units": {f: UNITS[f] for f in only},
        "targets": {f: ("%s %s" % TARGETS[f]) if TARGETS[f] else "reported" for f in only},
        "met": {f: _met(f, results.get(f)) for f in only},
        "details": details,
        "errors": errors,
        "machine": lib.machine(),
        "quick": args.quick,
        "scale": args.scale,
        "seconds": round(elapsed, 1),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    lib.write_json(args.out, data)
    lib.log("bench: %.0f s, results in %s" % (elapsed, args.out))
    for f in only:
        v = results.get(f)
        print("%s %s" % (f, fmt(v) if v is not None else "ERROR"), flush=True)
    sys.exit(1 if errors or any(results.get(f) is None for f in only) else 0)


def _met(f, v):
    t = TARGETS[f]
    if v is None:
        return False
    if t is None:
        return True
    return v <= t[1]


if __name__ == "__main__":
    main()
