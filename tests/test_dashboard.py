"""The local SwanLab dashboard (`swanlab watch`, the `dashboard` extra) shows a run the train
stage logged with ``tracking=local``. Loopback only; skipped where swanboard is not installed."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("swanboard", reason="the SwanLab dashboard is not installed: pip install -e '.[dashboard]'")

import swanlab  # noqa: E402

from medsft.train.tracking import swanlab_run  # noqa: E402

LOSSES = {2: 3.5, 4: 2.25, 6: 1.75}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str, str]:
    """Status, content type and body of a GET (raises URLError while nothing listens)."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode("utf-8")


@pytest.fixture
def local_run(tmp_path, monkeypatch):
    """A run logged the way the train stage logs it with tracking=local: swanlog/<variant>/."""
    # SwanLab's local mode points SWANLAB_LOG_DIR at the run's folder in this process.
    monkeypatch.setenv("SWANLAB_LOG_DIR", str(tmp_path))
    tracking = {"mode": "local", "project": "medsft-dashboard-test", "logdir": str(tmp_path / "swanlog")}
    logdir = tmp_path / "swanlog" / "v2"
    with swanlab_run(tracking, "v2", {"variant": "v2"}):
        for step, loss in LOSSES.items():
            swanlab.log({"train/loss": loss}, step=step)  # as transformers' integration logs it
    assert (logdir / "runs.swanlab").exists()  # the dashboard's database, one per variant
    return logdir


@pytest.fixture
def dashboard(local_run, tmp_path):
    """`swanlab watch swanlog/v2` on a free loopback port; its base URL. Stopped afterwards."""
    port = free_port()
    log = (tmp_path / "watch.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "swanlab", "watch", str(local_run), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"swanlab watch exited with {proc.returncode}:\n{(tmp_path / 'watch.log').read_text()}")
            try:
                get(base + "/")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    pytest.fail(f"swanlab watch did not answer in 60 s:\n{(tmp_path / 'watch.log').read_text()}")
                time.sleep(0.25)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_dashboard_serves_its_page_and_lists_the_logged_run(dashboard, local_run):
    status, content_type, page = get(dashboard + "/")
    assert status == 200 and content_type.startswith("text/html")
    assert page.lstrip().lower().startswith("<!doctype html") and "</html>" in page.lower()

    _, _, body = get(dashboard + "/api/v1/project")
    project = json.loads(body)
    assert project["code"] == 0, project
    data = project["data"]
    assert data["name"] == "medsft-dashboard-test" and Path(data["logdir"]).resolve() == local_run.resolve()
    (experiment,) = data["experiments"]
    assert experiment["name"] == "v2" and experiment["run_id"].startswith("run-")
    assert (local_run / experiment["run_id"]).is_dir()

    # The scalars, under the names the callback logs them with.
    _, _, body = get(f"{dashboard}/api/v1/experiment/{experiment['id']}/tag/train/loss")
    points = json.loads(body)["data"]["list"]
    assert {p["index"]: p["data"] for p in points} == LOSSES
