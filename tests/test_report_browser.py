"""The HTML report in a real browser: headless Chromium over the DevTools protocol.

Chromium is driven through ``--remote-debugging-pipe`` (the DevTools protocol as
NUL-separated JSON on file descriptors 3 and 4), so the test needs no websocket package
and no network port. It loads the report of a small real sweep, collects every console
message, JavaScript exception and log entry of level error, decodes every image, counts
the leaderboard rows and takes a screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import require_component

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


class Browser:
    """A headless Chromium driven over the DevTools protocol on a pipe.

    Use as a context manager; ``load(path)`` opens a page and returns what it logged.
    """

    def __init__(self, executable: str = "chromium", *, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="appsleuth-chromium-")
        cmd_read, self._cmd_write = os.pipe()
        self._resp_read, resp_write = os.pipe()
        args = [
            executable,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={self._profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        # Chromium reads commands on fd 3 and writes replies on fd 4; bash moves the pipe
        # ends there (preexec_fn would be unsafe with the threads JAX has started).
        self._proc = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{cmd_read} 4>&{resp_write}', "chromium", *args],
            pass_fds=(cmd_read, resp_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(cmd_read)
        os.close(resp_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the browser (politely, then by force) and remove its profile."""
        try:
            if self._proc.poll() is None:
                with contextlib.suppress(RuntimeError, OSError, TimeoutError):
                    self.call("Browser.close", timeout=10)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        finally:
            for fd in (self._cmd_write, self._resp_read):
                with contextlib.suppress(OSError):
                    os.close(fd)
            shutil.rmtree(self._profile, ignore_errors=True)

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._resp_read], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._resp_read, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed the pipe (exit code {self._proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._cmd_write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, event: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Wait for an event (already received, or to come)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        seen = 0
        while True:
            for e in self.events[seen:]:
                if e.get("method") == event:
                    return e
            seen = len(self.events)
            self.events.append(self._read_message(deadline))

    def load(
        self,
        path: Path,
        *,
        width: int = 1200,
        height: int = 900,
        full_page: bool = False,
        media: str = "",
    ) -> dict[str, Any]:
        """Open a local file and report on it.

        Args:
            path: The HTML file.
            width: The window's width in CSS pixels. Defaults to 1200.
            height: The window's height. Defaults to 900.
            full_page: Screenshot the whole page, not the window. Defaults to False.
            media: ``print`` to lay the page out as for printing. Defaults to the screen.

        Returns:
            ``errors`` (console errors, exceptions, error log entries), ``images``
            (natural widths after decoding), ``leaderboard_rows``, ``overflowing`` (the
            ids of tables wider than their box), ``captions_cut`` (the ids of tables whose
            caption runs past their box's visible edge), ``page_width`` (of the content: more
            than ``width`` when it runs off the window), ``screenshot`` (PNG bytes) and ``title``.
        """
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        if media:
            self.call("Emulation.setEmulatedMedia", {"media": media}, session=session)
        self.events.clear()
        self.call("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        self.wait_for("Page.loadEventFired")
        # Evaluating a script through the protocol works even though the page's own
        # Content-Security-Policy forbids scripts: DevTools is not the page.
        probe = """(async () => {
            const widths = await Promise.all([...document.images].map(
                img => img.decode().then(() => img.naturalWidth, () => 0)));
            return {
                images: widths,
                leaderboard_rows: document.querySelectorAll('#leaderboard-table tbody tr').length,
                page_width: document.documentElement.scrollWidth,
                overflowing: [...document.querySelectorAll('.scroll')]
                    .filter(box => box.scrollWidth > box.clientWidth)
                    .map(box => box.querySelector('table').id),
                captions_cut: [...document.querySelectorAll('.scroll')]
                    .filter(box => {
                        const caption = box.querySelector('caption');
                        if (!caption) return false;
                        const text = document.createRange();
                        text.selectNodeContents(caption);
                        const edge = box.getBoundingClientRect().right;
                        return text.getBoundingClientRect().right > edge + 1;
                    })
                    .map(box => box.querySelector('table').id),
                title: document.title,
                scripts: document.scripts.length,
                height: document.documentElement.scrollHeight,
            };
        })()"""
        info = self.call(
            "Runtime.evaluate",
            {"expression": probe, "awaitPromise": True, "returnByValue": True},
            session=session,
        )["result"]["value"]
        shot = self.call(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": full_page},
            session=session,
        )
        errors = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(params.get("exceptionDetails", {}).get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value")) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                errors.append(params["entry"].get("text", "error"))
        self.call("Target.closeTarget", {"targetId": target})
        return {**info, "errors": errors, "screenshot": base64.b64decode(shot["data"])}


@pytest.fixture(scope="module")
def chromium() -> str:
    require_component("chromium", shutil.which("chromium") is not None)
    return shutil.which("chromium") or "chromium"


def _small_sweep(out: Path) -> Path:
    from appsleuth.sweep import SweepSpec, prepare_sweep_dir, run_trial

    spec = SweepSpec.from_dict(
        {
            "name": "browser-scan",
            "data": {"rows": 2000},
            "base": {
                "model": {"hidden": [6]},
                "train": {"epochs": 2, "batch_size": 64, "learning_rate": 0.003},
            },
            "grid": {"hidden_neurons": [3, 6]},
        }
    )
    sweep_dir = prepare_sweep_dir(spec, out)
    # In this process (the executor's worker processes would each import Keras again).
    for trial in range(2):
        assert run_trial(sweep_dir, trial).status == "complete"
    return sweep_dir


def test_report_renders_in_chromium(chromium: str, tmp_path: Path) -> None:
    from matplotlib.image import imread

    from appsleuth.report import write_report

    sweep_dir = _small_sweep(tmp_path)
    report = write_report(sweep_dir, log=lambda msg: None)
    with Browser(chromium) as browser:
        page = browser.load(report)
    assert page["errors"] == []
    assert page["title"] == "appsleuth report: sweep browser-scan"
    assert page["scripts"] == 0
    # The hyperparameter plot, two learning-curve figures and the confusion matrix.
    assert len(page["images"]) >= 4
    assert all(w > 0 for w in page["images"]), page["images"]
    assert page["leaderboard_rows"] == 2
    shot = tmp_path / "report.png"
    shot.write_bytes(page["screenshot"])
    pixels = imread(shot)
    assert pixels.shape[1] == 1200
    colours = np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)
    assert len(colours) > 1, "the screenshot is blank"


def test_browser_reports_console_errors(chromium: str, tmp_path: Path) -> None:
    # The checker itself must see errors and broken images, or the test above proves nothing.
    page_file = tmp_path / "broken.html"
    page_file.write_text(
        "<!DOCTYPE html><html><head><title>t</title></head><body>"
        "<img src='data:image/png;base64,AAAA'><script>console.error('boom')</script>"
        "</body></html>",
        encoding="utf-8",
    )
    with Browser(chromium) as browser:
        page = browser.load(page_file)
    assert any("boom" in e for e in page["errors"])
    assert page["images"] == [0]


def test_printed_report_keeps_every_column_of_a_wide_leaderboard(
    chromium: str, tmp_path: Path
) -> None:
    from appsleuth.report import write_report
    from tests.test_analysis import fake_sweep

    # Three varied settings and seeds: on screen the leaderboard scrolls sideways, but
    # paper does not scroll, and its right-hand columns (val_accuracy, macro F1,
    # Moriarty's recall) were cut off at the page's edge.
    grid = {"dropout": [0.0, 0.2], "activation": ["relu", "tanh"], "optimizer": ["adam"]}
    sweep_dir = fake_sweep(tmp_path, {"grid": grid}, lambda i, p: {"final_acc": 0.6 + i / 20})
    report = write_report(sweep_dir, log=lambda msg: None)
    with Browser(chromium) as browser:
        screen = browser.load(report, width=720)
        printed = browser.load(report, width=720, media="print")
    assert "leaderboard-table" in screen["overflowing"]  # the case: too wide for the page
    # Its caption, as wide as the table, ran past the box's edge, cut off mid-sentence.
    assert screen["captions_cut"] == []
    assert printed["errors"] == [] and printed["overflowing"] == []


def test_a_long_sweep_name_folds_instead_of_widening_the_page(
    chromium: str, tmp_path: Path
) -> None:
    from appsleuth.report import write_report
    from tests.test_analysis import fake_sweep

    # A name without spaces in the headline ran 250 px past a 900 px window, and every
    # line of the page then scrolled sideways with it.
    name = "a" * 60 + "-very-long-sweep-name-" + "b" * 60
    sweep_dir = fake_sweep(
        tmp_path,
        {"name": name, "grid": {"batch_size": [16]}},
        lambda i, p: {"status": "failed", "error": "RuntimeError: out of memory"},
    )
    with Browser(chromium) as browser:
        page = browser.load(write_report(sweep_dir, log=lambda msg: None), width=900)
    assert page["errors"] == [] and page["title"] == f"appsleuth report: sweep {name}"
    assert page["page_width"] <= 900
