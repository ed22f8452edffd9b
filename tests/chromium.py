"""Open a page in real headless Chromium over the DevTools protocol and report what a person would see.

Drives Debian's ``chromium`` through its DevTools websocket with aiohttp (already a
dependency), so no WebDriver or extra Python package is needed. ``inspect_page`` returns
console errors, failed or external requests, the page's sections, every image's decoded
size, every SVG's rendered size, horizontal overflow, and writes a full-page screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-extensions", "--remote-debugging-port=0",
)

PROBE = """(() => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; };
  return JSON.stringify({
    sections: [...document.querySelectorAll('section[id]')].map(s => ({id: s.id, heading: (s.querySelector('h2') || {}).textContent, text: s.innerText.length})),
    images: [...document.images].map(i => ({alt: i.alt, complete: i.complete, natural: [i.naturalWidth, i.naturalHeight], shown: box(i)})),
    svgs: [...document.querySelectorAll('svg')].map(s => ({title: (s.querySelector('title') || {}).textContent, shown: box(s)})),
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    scripts: document.scripts.length,
    text: document.body.innerText,
  });
})()"""


def chromium_binary() -> Optional[str]:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageReport:
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    requested_urls: list[str] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)
    screenshot: Optional[Path] = None


class _Session:
    """One DevTools websocket: numbered commands, events collected as they arrive."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict] = []

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        my_id = self.next_id
        await self.ws.send_json({"id": my_id, "method": method, "params": params})
        while True:
            msg = json.loads((await self.ws.receive(timeout=60)).data)
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    async def wait_for(self, method: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(e["method"] == method for e in self.events):
            msg = json.loads((await self.ws.receive(timeout=max(0.1, deadline - time.monotonic()))).data)
            if "method" in msg:
                self.events.append(msg)

    async def drain(self, seconds: float) -> None:
        """Collect the events that arrive within ``seconds`` (late console messages, requests)."""
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                msg = json.loads((await self.ws.receive(timeout=max(0.05, deadline - time.monotonic()))).data)
                if "method" in msg:
                    self.events.append(msg)
        except asyncio.TimeoutError:
            pass


def _devtools_port(profile: Path, proc: subprocess.Popen, timeout: float = 60) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text().split()[0])
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.1)
    raise RuntimeError("chromium did not open its DevTools port")


async def _inspect(port: int, url: str, width: int, screenshot: Path) -> PageReport:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
            pages = [t for t in await r.json() if t["type"] == "page"]
        async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            s = _Session(ws)
            for domain in ("Page", "Runtime", "Log", "Network"):
                await s.call(f"{domain}.enable")
            await s.call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1,
                         mobile=width < 600)
            s.events.clear()
            await s.call("Page.navigate", url=url)
            await s.wait_for("Page.loadEventFired")
            await s.drain(1.0)
            probe = json.loads((await s.call("Runtime.evaluate", expression=PROBE, returnByValue=True))["result"]["value"])
            metrics = await s.call("Page.getLayoutMetrics")
            size = metrics["cssContentSize"]
            shot = await s.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
            screenshot.write_bytes(base64.b64decode(shot["data"]))
    out = PageReport(probe=probe, screenshot=screenshot)
    for e in s.events:
        p = e.get("params", {})
        if e["method"] == "Runtime.exceptionThrown":
            out.console_errors.append(p["exceptionDetails"].get("text", "exception"))
        elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
            out.console_errors.append(p["entry"].get("text", ""))
        elif e["method"] == "Network.loadingFailed":
            out.failed_requests.append(f"{p.get('errorText')} ({p.get('blockedReason', '')})")
        elif e["method"] == "Network.requestWillBeSent":
            out.requested_urls.append(p["request"]["url"])
    return out


def inspect_page(path: Path, screenshot: Path, width: int = 1024) -> PageReport:
    """Load ``path`` (a local file) at ``width`` CSS pixels in a fresh headless Chromium profile."""
    binary = chromium_binary()
    if binary is None:
        raise RuntimeError("chromium is not installed; `make test-deps` installs Debian's chromium")
    profile = tempfile.mkdtemp(prefix="lenspipe-chromium-")
    try:
        # A session of its own: the browser's helpers (zygote, GPU, network, crashpad) are stopped with it.
        proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            port = _devtools_port(Path(profile), proc)
            return asyncio.run(_inspect(port, path.resolve().as_uri(), width, screenshot))
        finally:
            _stop(proc)
    finally:
        _remove_profile(Path(profile))


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the browser's process group, SIGKILL it after 20 s; then SIGKILL any helper still there."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # helpers outlive the browser process by a moment
    except ProcessLookupError:
        pass
    proc.wait()


def _remove_profile(profile: Path, timeout: float = 10) -> None:
    """Remove the profile; a helper dying after the browser may still be writing into it (ENOTEMPTY)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            shutil.rmtree(profile)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
