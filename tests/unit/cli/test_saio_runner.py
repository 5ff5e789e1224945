"""The process side of ``swiftlite saio``: start, readiness, stop, output."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swiftlite.cli import main as cli_main
from swiftlite.cli import saio
from swiftlite.cli.saio_layout import DAEMONS, DaemonSpec, Layout


def _child(tmp_path: Path, code: str, name: str = "x-server", port: int | None = None) -> saio.Child:
    log = tmp_path / f"{name}.log"
    with open(log, "ab") as fp:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=fp, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    spec = DaemonSpec(name, "m", "c", "C", None)
    return saio.Child(spec=spec, proc=proc, port=port, log_path=str(log))


def test_version_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["version"]) == 0
    assert capsys.readouterr().out.startswith("swiftlite ")


def test_no_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main([]) == 2
    assert "saio" in capsys.readouterr().err


def test_saio_options_parse() -> None:
    args = cli_main.build_parser().parse_args(["saio", "--data", "/d", "--port", "9000"])
    assert (args.command, args.data, args.port) == ("saio", "/d", 9000)
    args = cli_main.build_parser().parse_args(["saio"])
    assert args.data is None and args.port is None


def test_stop_all_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    stubborn = _child(
        tmp_path,
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('up', flush=True)\ntime.sleep(600)",
        "stubborn",
    )
    polite = _child(tmp_path, "import time\ntime.sleep(600)", "polite")
    # Let the stubborn one install its handler before the SIGTERM comes.
    while "up" not in Path(stubborn.log_path).read_text():
        assert stubborn.proc.poll() is None
        time.sleep(0.05)
    saio.stop_all([stubborn, polite], timeout=0.5)
    assert polite.proc.returncode == -signal.SIGTERM
    assert stubborn.proc.returncode == -signal.SIGKILL


def test_wait_ready_reports_a_daemon_that_died(tmp_path: Path) -> None:
    dead = _child(tmp_path, "import sys\nprint('boom: bad setting')\nsys.exit(3)", "dead-server",
                  port=1)
    dead.proc.wait()
    out = io.StringIO()
    assert not saio.wait_ready([dead], out, timeout=5)
    text = out.getvalue()
    assert "dead-server exited at start-up (status 3)" in text
    assert "boom: bad setting" in text


def test_wait_ready_gives_up_on_silent_server(tmp_path: Path) -> None:
    from swiftlite.cli.saio_layout import free_port

    idle = _child(tmp_path, "import time\ntime.sleep(600)", "idle-server", port=free_port())
    try:
        out = io.StringIO()
        assert not saio.wait_ready([idle], out, timeout=0.3)
        assert "no answer from idle-server" in out.getvalue()
    finally:
        saio.stop_all([idle], timeout=5)


def test_describe_without_proxy_says_so(tmp_path: Path) -> None:
    layout = Layout(data_dir=str(tmp_path), created=True,
                    ports={"proxy": 8080, "object": 1, "container": 2, "account": 3})
    obj = next(s for s in DAEMONS if s.name == "object-server")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    child = saio.Child(spec=obj, proc=proc, port=1, log_path="/l/object-server.log")
    proxy = next(s for s in DAEMONS if s.name == "proxy-server")
    text = saio.describe(layout, [child], [proxy])
    assert "only the storage servers were started" in text
    assert "no client endpoint yet" in text
    assert "not in this swiftlite yet: proxy-server" in text
    assert f"pid {proc.pid}" in text and "port 1" in text
    assert "Auth URL" not in text


def test_describe_with_proxy_prints_auth_and_users(tmp_path: Path) -> None:
    layout = Layout(data_dir=str(tmp_path), created=False,
                    ports={"proxy": 8081, "object": 1, "container": 2, "account": 3})
    proxy = next(s for s in DAEMONS if s.name == "proxy-server")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    text = saio.describe(layout, [saio.Child(proxy, proc, 8081, "/l/p.log")], [])
    assert "Auth URL: http://127.0.0.1:8081/auth/v1.0" in text
    for user, key in (("test:tester", "testing"), ("test2:tester2", "testing2"),
                      ("test:tester3", "testing3"), ("test5:tester5", "testing5"),
                      ("test:tester6", "testing6")):
        assert user in text and key in text
    assert "(reused)" in text


def test_run_reports_a_bad_data_dir(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "saio.yaml").write_text("version: 1\nports: nonsense\n")
    out = io.StringIO()
    assert saio.run(str(tmp_path), None, out) == 1
    assert "saio.yaml" in out.getvalue()


def test_launcher_runs_main_with_the_args(tmp_path: Path) -> None:
    mod = tmp_path / "fake_daemon_mod.py"
    mod.write_text(
        "import sys\n"
        "def main(argv):\n"
        "    print('argv', list(argv), sys.argv[0])\n"
        "    return 7\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "swiftlite.cli.saio_launch", "fake_daemon_mod", "conf.yaml"],
        capture_output=True, text=True, cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
    )
    assert proc.returncode == 7
    assert "argv ['conf.yaml'] fake_daemon_mod" in proc.stdout


def test_launcher_usage() -> None:
    from swiftlite.cli.saio_launch import launch

    assert launch([]) == 2
