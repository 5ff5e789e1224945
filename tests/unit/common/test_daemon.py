import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from swiftlite.common.daemon import parse_args

APP = textwrap.dedent(
    """
    import dataclasses, os, sys
    from aiohttp import web
    from swiftlite.common.config import ServerConfig
    from swiftlite.common.daemon import server_main

    @dataclasses.dataclass
    class Conf(ServerConfig):
        greeting: str = "hello"

    def make_app(conf):
        app = web.Application()

        async def handler(request):
            return web.Response(text=f"{conf.greeting} {os.getpid()}")

        app.router.add_get("/", handler)
        return app

    sys.exit(server_main(sys.argv[1:], Conf, make_app, "test-server"))
    """
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
        return resp.read().decode()


def wait_for(port, want=None, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            body = get(port)
            if want is None or body.startswith(want):
                return body
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server on {port} did not answer {want!r}")


@pytest.fixture
def server(tmp_path):
    procs = []

    def start(conf_text):
        conf = tmp_path / "server.yaml"
        conf.write_text(conf_text)
        script = tmp_path / "app.py"
        script.write_text(APP)
        proc = subprocess.Popen(
            [sys.executable, str(script), str(conf)],
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        procs.append(proc)
        return proc, conf

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_workers_serve_reload_and_stop(server):
    port = free_port()
    proc, conf = server(f"bind_ip: 127.0.0.1\nbind_port: {port}\nworkers: 2\n")
    wait_for(port, "hello")
    pids = {get(port).split()[1] for _ in range(40)}
    assert str(proc.pid) not in pids  # the parent only supervises
    conf.write_text(f"bind_ip: 127.0.0.1\nbind_port: {port}\nworkers: 2\ngreeting: bonjour\n")
    proc.send_signal(signal.SIGHUP)
    wait_for(port, "bonjour")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    with pytest.raises(OSError):
        get(port)


def test_dead_worker_is_replaced(server):
    port = free_port()
    proc, _ = server(f"bind_ip: 127.0.0.1\nbind_port: {port}\nworkers: 1\n")
    pid = int(wait_for(port).split()[1])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if int(get(port).split()[1]) != pid:
                break
        except OSError:
            time.sleep(0.1)
    else:
        raise AssertionError("worker was not replaced")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0


def test_bad_config_exits_with_message(server):
    proc, conf = server("bind_port: 1\nworkerz: 2\n")
    assert proc.wait(timeout=30) == 1
    err = proc.stderr.read().decode()
    assert "workerz" in err and str(conf) in err


def test_parse_args():
    assert parse_args(["x.yaml"]) == ("x.yaml", False, False)
    assert parse_args(["x.yaml", "once", "-v"]) == ("x.yaml", True, True)
    with pytest.raises(SystemExit):
        parse_args(["x.yaml", "twice"])
