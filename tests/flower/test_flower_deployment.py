"""Flower's deployment engine on loopback: one SuperLink, two SuperNodes, ``flwr run`` of examples/flower_app for
two rounds with the audit attacking one client in round 2; every process started here is stopped at the end."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("flwr")

pytestmark = [pytest.mark.flower, pytest.mark.slow]

APP = Path(__file__).resolve().parents[2] / "examples" / "flower_app"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pids: list[int]) -> set[int]:
    tree, found, todo = children(), set(), list(pids)
    while todo:
        pid = todo.pop()
        for child in tree.get(pid, []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop(processes: list[subprocess.Popen]) -> set[int]:
    """SIGTERM every started process group and every descendant (SuperExec detaches into its own session), then
    SIGKILL what is left after 15 s; returns the pids that were signalled."""
    pids = [p.pid for p in processes]
    targets = set(pids) | descendants(pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in targets:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(alive(pid) for pid in targets):
            for process in processes:
                process.poll()  # reap our own children
            time.sleep(0.2)
        if not any(alive(pid) for pid in targets):
            break
    for process in processes:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    return targets


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the processes to stop in /proc (Linux)")
def test_superlink_and_two_supernodes_run_the_example_app(tmp_path):
    home, logs, results = tmp_path / "flwr-home", tmp_path / "logs", tmp_path / "results"
    home.mkdir()
    logs.mkdir()
    link, ports = free_port(), [free_port(), free_port()]
    (home / "config.toml").write_text(f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\n'
                                      f'address = "127.0.0.1:{link}"\ninsecure = true\n')
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}
    processes: list[subprocess.Popen] = []

    def start(name: str, *command: str) -> None:
        with (logs / f"{name}.log").open("w") as log:
            processes.append(subprocess.Popen([str(BIN / command[0]), *command[1:]], env=env, cwd=tmp_path,
                                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    started = time.monotonic()
    signalled: set[int] = set()
    try:
        start("superlink", "flower-superlink", "--insecure", "--host", "127.0.0.1", "--port", str(link))
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{link}/health", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, (logs / "superlink.log").read_text()[-3000:]
                assert processes[0].poll() is None, (logs / "superlink.log").read_text()[-3000:]
                time.sleep(0.5)
        for index, port in enumerate(ports):
            start(f"supernode-{index}", "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link}",
                  "--host", "127.0.0.1", "--port", str(port),
                  "--node-config", f"partition-id={index} num-partitions=2")
        overrides = ("num-rounds=2 min-nodes=2 victims=1 attack-rounds='2' detect=true "
                     f"""model-options='{{"widths": [256, 32]}}' results='{results}'""")
        run = subprocess.run([str(BIN / "flwr"), "run", str(APP), "loopback", "--stream", "--run-config", overrides],
                             env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        rounds = [json.loads(line) for line in (results / "rounds.jsonl").read_text().splitlines()]
        audit = [json.loads(line) for line in (results / "audit" / "audit.jsonl").read_text().splitlines()]
    finally:
        signalled = stop(processes)
        seconds = time.monotonic() - started
    print(f"deployment test: {seconds:.1f} s from SuperLink start to the last process stopped")
    assert not [pid for pid in signalled if alive(pid)]
    assert len(signalled) >= 5  # SuperLink, two SuperNodes and the SuperExec each of them started

    assert [r["round"] for r in rounds] == [0, 1, 2]  # the global model, evaluated before and after each round
    assert [(a["round"], a["status"]) for a in audit] == [(2, "refused")]
    assert "warmup_zscore" in audit[0]["reason"] and "> threshold" in audit[0]["reason"]
