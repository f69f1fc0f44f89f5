"""nginx with this repository's Lua code and cdylib: Debian 12's nginx 1.22 with its dynamic
lua modules, or an OpenResty prefix when ``OPENRESTY`` is set (scripts/nginx_platform.py)."""

import os
import signal
import time

from . import proc
from .paths import BUILD_CPATH, REPO, platform

NGINX_BIN = platform.nginx_bin()
find_module = platform.find_module

# The node id of the running test while it is marked platform_independent (t/conftest.py): such
# a test runs on one platform only, so starting nginx there is an error, not a silent gap.
platform_independent_test = [None]


def _platform_bound():
    if platform_independent_test[0]:
        raise AssertionError("%s is marked platform_independent (it runs on one platform only) "
                             "but runs nginx" % platform_independent_test[0])


def lua_package_path():
    return platform.lua_path([os.path.join(REPO, "lua")])


def lua_package_cpath():
    return platform.lua_cpath([BUILD_CPATH])


class Nginx:
    """One nginx master (+ workers) in ``workdir`` (its prefix, ``-p``).

    ``Nginx(workdir, conf_body, *, http_ports=(), env=None, main_extra="", stream="",
    worker_processes=1, lua_path=None, lua_cpath=None, http_extra_top="")``

    Renders ``<workdir>/nginx.conf``::

        load_module .../ndk_http_module.so; load_module .../ngx_http_lua_module.so;
        [load_module .../ngx_stream_module.so;  when ``stream`` is given]
                                # (no load_module lines on OpenResty: its modules are static)
        user root;  (only when running as root, so workers can read the test's files)
        daemon off; master_process on; worker_processes N;
        error_log <workdir>/error.log info; pid <workdir>/nginx.pid;
        <main_extra>            # e.g. "env FOO;" lines
        events { worker_connections 1024; }
        http {
            lua_package_path  "<REPO>/lua/?.lua;<REPO>/lua/?/init.lua;[<OPENRESTY>/lualib/...;]
                               /usr/share/lua/5.1/?.lua;;";
            lua_package_cpath "<BUILD_CPATH>/?.so;;";
            access_log <workdir>/access.log; *_temp_path inside <workdir>/tmp;
            <conf_body>
        }
        stream { <stream> }     # when given

    ``lua_path``/``lua_cpath`` replace the two package paths (e.g. to test a luarocks tree);
    "" leaves the line out (the module's default paths).
    ``http_ports``: ports on 127.0.0.1 that ``start()`` waits for (TCP connect succeeds).
    ``env``: extra environment for the nginx process (use ``env NAME;`` in main_extra to expose
    it to Lua).
    Methods: ``start(timeout=15)``, ``stop()`` (SIGQUIT = graceful, then SIGTERM/SIGKILL),
    ``reload(timeout=15)`` (SIGHUP; returns when new workers run and the old ones are gone),
    ``error_log() -> str``, ``wait_log(regex, timeout=10, since=0) -> re.Match``,
    ``log_offset() -> int`` (current error.log size, to pass as ``since``), ``log_tail(n)``.
    Attributes: ``workdir``, ``conf_path``, ``error_log_path``, ``access_log_path``,
    ``pid`` (master), ``http_ports``.
    """

    def __init__(self, workdir, conf_body, *, http_ports=(), env=None, main_extra="",
                 stream="", worker_processes=1, lua_path=None, lua_cpath=None,
                 http_extra_top=""):
        self.workdir = str(workdir)
        os.makedirs(os.path.join(self.workdir, "tmp"), exist_ok=True)
        self.conf_path = os.path.join(self.workdir, "nginx.conf")
        self.error_log_path = os.path.join(self.workdir, "error.log")
        self.access_log_path = os.path.join(self.workdir, "access.log")
        self.stdout_path = os.path.join(self.workdir, "nginx.stdout.log")
        self.pid_path = os.path.join(self.workdir, "nginx.pid")
        self.http_ports = list(http_ports)
        self.env = env
        self.proc = None
        self.pid = None
        self.conf_text = self._render(conf_body, main_extra, stream, worker_processes,
                                      lua_package_path() if lua_path is None else lua_path,
                                      lua_package_cpath() if lua_cpath is None else lua_cpath,
                                      http_extra_top)
        with open(self.conf_path, "w") as f:
            f.write(self.conf_text)

    def _render(self, body, main_extra, stream, workers, lpath, lcpath, http_top):
        w = self.workdir
        lines = platform.main_lines(stream=bool(stream))
        lines += [
            "daemon off;",
            "master_process on;",
            "worker_processes %s;" % workers,
            "error_log %s info;" % self.error_log_path,
            "pid %s;" % self.pid_path,
            main_extra,
            "events { worker_connections 1024; }",
            "http {",
            '    lua_package_path "%s";' % lpath if lpath else "",
            '    lua_package_cpath "%s";' % lcpath if lcpath else "",
            "    access_log %s;" % self.access_log_path,
            "    client_body_temp_path %s/tmp/client_body;" % w,
            "    proxy_temp_path %s/tmp/proxy;" % w,
            "    fastcgi_temp_path %s/tmp/fastcgi;" % w,
            "    uwsgi_temp_path %s/tmp/uwsgi;" % w,
            "    scgi_temp_path %s/tmp/scgi;" % w,
            http_top,
            body,
            "}",
        ]
        if stream:
            lines += ["stream {", stream, "}"]
        return "\n".join(lines) + "\n"

    # -- lifecycle -----------------------------------------------------------------------

    def test_config(self):
        """Run ``nginx -t`` on the rendered config; returns (ok, output)."""
        import subprocess

        _platform_bound()

        r = subprocess.run(
            [NGINX_BIN, "-t", "-p", self.workdir, "-c", self.conf_path, "-e",
             self.error_log_path],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self._env(),
        )
        return r.returncode == 0, r.stdout

    def _env(self):
        e = dict(os.environ)
        if self.env:
            e.update({k: str(v) for k, v in self.env.items()})
        return e

    def start(self, timeout=15):
        _platform_bound()
        argv = [NGINX_BIN, "-p", self.workdir, "-c", self.conf_path, "-e", self.error_log_path]
        self.proc = proc.spawn(argv, self.stdout_path, env=self.env, cwd=self.workdir)
        self.pid = self.proc.pid
        try:
            proc.wait_ports(self.http_ports, self.proc, timeout, "nginx", self._fail_tail)
        except Exception:
            self.stop()
            raise
        return self

    def _fail_tail(self):
        return "%s\n%s" % (proc.tail(self.stdout_path, 20), self.log_tail(60))

    def workers(self):
        return proc.children(self.pid) if self.pid else []

    def stop(self, graceful=True):
        if self.proc is None:
            return
        proc.stop(self.proc, signal.SIGQUIT if graceful else signal.SIGTERM)
        self.proc = None

    def reload(self, timeout=15):
        """SIGHUP the master; wait for new workers and for the old ones to exit."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError("nginx is not running\n" + self.log_tail(40))
        old = set(self.workers())
        since = self.log_offset()
        os.kill(self.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = proc.read_text(self.error_log_path)[since:]
            if "[emerg]" in text:
                raise RuntimeError("nginx reload failed:\n" + text[-3000:])
            now = set(self.workers())
            if now and not (now & old) and "start worker process" in text:
                return
            time.sleep(0.05)
        raise TimeoutError("nginx reload did not finish in %ss\n%s" % (timeout, self.log_tail(40)))

    # -- logs --------------------------------------------------------------------------

    def error_log(self):
        return proc.read_text(self.error_log_path)

    def log_offset(self):
        return len(self.error_log())

    def log_tail(self, lines=60):
        return proc.tail(self.error_log_path, lines)

    def wait_log(self, regex, timeout=10, since=0):
        return proc.wait_regex(self.error_log_path, regex, timeout, since, "nginx error.log")
