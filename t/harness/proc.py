"""Ports and child processes shared by the server wrappers."""

import atexit
import os
import re
import signal
import socket
import subprocess
import time

_handed_out = set()
_live = {}  # pid -> Popen, everything started and not yet stopped


def free_port():
    """Return a TCP port on 127.0.0.1 that is free now (and free for UDP too).

    The OS picks an ephemeral port; ports already returned by this process are never
    returned again, so two calls in one test never collide with each other.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port in _handed_out:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
        except OSError:
            continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port found on 127.0.0.1")


def port_open(port, host="127.0.0.1", timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_ports(ports, proc, timeout, what, log_tail):
    """Wait until every port accepts TCP connections; raise with the log tail otherwise."""
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                "%s exited with code %s before listening on %s\n--- log tail ---\n%s"
                % (what, proc.returncode, pending, log_tail())
            )
        if port_open(pending[0]):
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise RuntimeError(
                "%s did not listen on %s within %.0fs\n--- log tail ---\n%s"
                % (what, pending, timeout, log_tail())
            )
        time.sleep(0.05)


def tail(path, lines=60):
    try:
        with open(path, "r", errors="replace") as f:
            data = f.read().splitlines()
    except OSError as e:
        return "(no log: %s)" % e
    return "\n".join(data[-lines:])


def read_text(path):
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def wait_regex(path, regex, timeout, since=0, what="log"):
    """Poll file ``path`` until ``regex`` matches text after offset ``since``; return the match."""
    pat = re.compile(regex) if isinstance(regex, str) else regex
    deadline = time.monotonic() + timeout
    while True:
        text = read_text(path)[since:]
        m = pat.search(text)
        if m:
            return m
        if time.monotonic() > deadline:
            raise TimeoutError(
                "%r not found in %s within %.1fs\n--- tail ---\n%s"
                % (pat.pattern, what, timeout, "\n".join(text.splitlines()[-40:]))
            )
        time.sleep(0.05)


def spawn(argv, log_path, env=None, cwd=None):
    """Start ``argv`` with stdout+stderr appended to ``log_path``; tracked for cleanup."""
    full_env = dict(os.environ)
    if env:
        full_env.update({k: str(v) for k, v in env.items()})
    logf = open(log_path, "ab")
    try:
        p = subprocess.Popen(
            argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=full_env, cwd=cwd, start_new_session=True,
        )
    finally:
        logf.close()
    _live[p.pid] = p
    return p


def children(pid):
    """Direct children of ``pid`` (Linux /proc)."""
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    out += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0); treat it as gone
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop(proc, sig=signal.SIGTERM, timeout=10.0):
    """Stop ``proc`` by PID: ``sig``, wait, then SIGKILL it and any children it left."""
    if proc is None:
        return None
    kids = children(proc.pid)
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kids = children(proc.pid) or kids
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
    deadline = time.monotonic() + 5
    for k in kids:
        while _pid_alive(k) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(k):
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _live.pop(proc.pid, None)
    return proc.returncode


@atexit.register
def _cleanup():
    for p in list(_live.values()):
        try:
            stop(p, timeout=3)
        except Exception:  # best effort at interpreter exit
            pass


class Server:
    """What every harness server shares: the process it started (``self.proc``), its log file
    (``self.log_path``), and stopping it by PID. Subclasses define ``start()``."""

    proc = None
    log_path = None

    def stop(self):
        stop(self.proc)
        self.proc = None

    def kill(self):
        """SIGKILL by PID (no clean shutdown)."""
        stop(self.proc, sig=signal.SIGKILL)
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def log(self):
        return read_text(self.log_path)

    def log_tail(self, lines=60):
        return tail(self.log_path, lines)
