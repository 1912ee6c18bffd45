"""A real Canopy cluster for the CI client programs: a master aggregator and leaves as `canopy server` processes on
free loopback ports in a temporary directory, formed over SQL (BOOTSTRAP AGGREGATOR, ADD LEAF). Used as a context
manager, so every process is stopped (SIGTERM, then SIGKILL) and the directory removed even when a check fails.
Also the small helpers both programs share: PyMySQL connections with a deadline and the `mariadb` command-line client.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pymysql


def free_port():
    """A free loopback port P whose RPC port P + 10000 is free too."""
    while True:
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as b:
                b.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue


def connect(port, deadline_s=60, **kw):
    deadline = time.time() + deadline_s
    while True:
        try:
            kw.setdefault("autocommit", True)
            return pymysql.connect(host="127.0.0.1", port=port, user="root", password="", **kw)
        except pymysql.err.OperationalError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def mariadb(port, sql, *args):
    """Runs `sql` with the mariadb client in batch mode; returns (exit code, stdout, stderr)."""
    out = subprocess.run(
        ["mariadb", "-h", "127.0.0.1", "-P", str(port), "-u", "root", "--batch", *args, "-e", sql],
        capture_output=True, text=True, timeout=60,
    )
    return out.returncode, out.stdout, out.stderr


def stop(procs, timeout_s=30):
    """SIGTERM to every process, then SIGKILL to those still running after `timeout_s`."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Cluster:
    """`with Cluster(binary, "name") as c:` gives a formed cluster; `c.port` is the master aggregator's MySQL port."""

    def __init__(self, binary, name, leaves=2):
        self.binary = os.path.abspath(binary)
        self.name = name
        self.leaves = leaves
        self.procs = []
        self.root = None
        self.ports = []

    @property
    def port(self):
        return self.ports[0]

    def __enter__(self):
        self.root = tempfile.mkdtemp(prefix=f"canopy-{self.name}-")
        try:
            self.ports = [free_port() for _ in range(self.leaves + 1)]
            for i, port in enumerate(self.ports):
                data = os.path.join(self.root, f"node{i}")
                os.makedirs(data)
                with open(os.path.join(data, "node.log"), "w") as log:
                    self.procs.append(subprocess.Popen(
                        [self.binary, "server", "--data-dir", data, "--host", "127.0.0.1", "--port", str(port)],
                        stdout=subprocess.DEVNULL, stderr=log))
            master = connect(self.port)
            for p in self.ports[1:]:
                connect(p).close()
            with master.cursor() as c:
                c.execute("BOOTSTRAP AGGREGATOR '127.0.0.1'")
                for p in self.ports[1:]:
                    c.execute(f"ADD LEAF root@'127.0.0.1':{p}")
            master.close()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        stop(self.procs)
        if exc and exc[0] is not None:
            # Show what the nodes said before their logs go.
            for i in range(len(self.procs)):
                log = os.path.join(self.root, f"node{i}", "node.log")
                if os.path.exists(log):
                    with open(log) as f:
                        tail = f.read()[-3000:]
                    print(f"--- node{i} log (tail) ---\n{tail}")
        shutil.rmtree(self.root, ignore_errors=True)
        return False
