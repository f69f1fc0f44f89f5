"""Shared pieces of the benchmarks: config rendering, nginx processes, CPU and memory readings."""

import json
import os
import string
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(REPO, "t"))

from harness import Nginx, free_port  # noqa: E402,F401  (re-exported)
from harness.nginx import NGINX_BIN, lua_package_cpath, lua_package_path  # noqa: E402
from harness.paths import platform  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


class _Braced(string.Template):
    """Only ${UPPER_CASE} is a placeholder (as scripts/render-conf): nginx $variables stay."""

    pattern = (r"\$(?:(?P<escaped>(?!x)x)|(?P<named>(?!x)x)|{(?P<braced>[A-Z][A-Z0-9_]*)}"
               r"|(?P<invalid>(?!x)x))")


def results_name():
    """latest.json for Debian's nginx, latest-openresty.json for OPENRESTY=<prefix>."""
    return "latest.json" if platform.name() == "debian" else "latest-%s.json" % platform.name()


def render(template, values):
    with open(template) as f:
        tpl = _Braced(f.read())
    values = dict(values)
    values.setdefault("MODULES", "\n".join(platform.main_lines()))
    values.setdefault("LUA_PATH", lua_package_path())
    values.setdefault("LUA_CPATH", lua_package_cpath())
    return tpl.substitute(values)


def nginx_from_template(workdir, template, values, ports):
    """An unstarted harness Nginx whose nginx.conf is ``template`` rendered with ``values``."""
    n = Nginx(workdir, "", http_ports=ports)
    values = dict(values)
    values.setdefault("PREFIX", n.workdir)
    with open(n.conf_path, "w") as f:
        f.write(render(template, values))
    return n


def render_example(n, values, replace=()):
    """nginx-conf/autossl.conf through scripts/render-conf into ``n.conf_path``, then the
    ``(old, new)`` text replacements (each must match once)."""
    args = [os.path.join(REPO, "scripts", "render-conf"),
            os.path.join(REPO, "nginx-conf", "autossl.conf"), n.conf_path]
    args += ["%s=%s" % kv for kv in values.items()]
    subprocess.run(args, check=True)
    with open(n.conf_path) as f:
        text = f.read()
    for old, new in replace:
        if old not in text:
            raise SystemExit("bench: nginx-conf/autossl.conf no longer contains %r" % old)
        text = text.replace(old, new, 1)
    with open(n.conf_path, "w") as f:
        f.write(text)


def proc_cpu_ticks(pid):
    """utime + stime of ``pid`` in clock ticks (/proc/<pid>/stat fields 14 and 15)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def proc_cpu_ns(pid):
    """On-CPU time of every thread of ``pid`` in ns (/proc/<pid>/schedstat, first field)."""
    with open("/proc/%d/schedstat" % pid) as f:
        return int(f.read().split()[0])


def cpu_seconds(pids):
    return sum(proc_cpu_ticks(p) for p in pids) / CLK_TCK


def rss_kib(pid):
    with open("/proc/%d/statm" % pid) as f:
        return int(f.read().split()[1]) * PAGE_KIB


def proc_status_kib(pid, fields=("VmRSS", "RssAnon", "RssFile", "RssShmem")):
    """The ``kB`` fields of /proc/<pid>/status named in ``fields``."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in fields:
                out[name] = int(rest.split()[0])
    return out


def wait_idle(pids, quiet=1.0, timeout=60.0, min_wait=0.0):
    """Wait until ``pids`` used no CPU tick for ``quiet`` seconds (e.g. a startup scan ended)."""
    start = time.monotonic()
    last = cpu_seconds(pids)
    since = time.monotonic()
    while time.monotonic() - start < timeout:
        time.sleep(0.1)
        now_cpu = cpu_seconds(pids)
        if now_cpu != last:
            last, since = now_cpu, time.monotonic()
        elif time.monotonic() - since >= quiet and time.monotonic() - start >= min_wait:
            return
    raise TimeoutError("nginx workers did not go idle within %ss" % timeout)


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    def version(argv):
        try:
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, check=False)
            return r.stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "unknown"

    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": os.uname().release,
        "openssl": version(["openssl", "version"]),
        "nginx": version([NGINX_BIN, "-v"]),
        "platform": platform.describe(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.rename(tmp, path)


def median(xs):
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return float("nan")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def percentile(xs, p):
    s = sorted(xs)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


