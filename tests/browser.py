"""Headless Chromium driven over the DevTools protocol: the page tests' browser.

A minimal client over the websockets library (no Playwright or Selenium: nothing to download).
It collects console errors, uncaught exceptions and log entries while it runs, clicks and types
through real input events, intercepts requests (to stand in for APIs that do not exist yet),
saves screenshots at fixed sizes, and checks the Lighthouse-style basics (labels, alt texts).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import tempfile
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import websockets

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROOT = Path(__file__).resolve().parent.parent
# where the screenshots go: CI keeps this folder as an artifact
SCREENSHOTS = Path(os.environ.get("CAMSERVER_SCREENSHOTS", ROOT / "test-artifacts" / "screenshots"))
DESKTOP = (1400, 1000)
PHONE = (390, 844)

# what the page must have: a label for every input, an alt text on every image, a name on every button
AUDIT = """(() => {
  const visible = (el) => el.getClientRects().length > 0;
  const named = (el) => (el.labels && el.labels.length) || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || el.title;
  const inputs = [...document.querySelectorAll('input, select, textarea')]
    .filter((el) => el.type !== 'hidden' && !named(el)).map((el) => el.outerHTML.slice(0, 120));
  const images = [...document.querySelectorAll('img')].filter((el) => !el.hasAttribute('alt')).map((el) => el.outerHTML.slice(0, 120));
  const buttons = [...document.querySelectorAll('button, a[href]')]
    .filter((el) => visible(el) && !(el.textContent.trim() || el.getAttribute('aria-label') || el.querySelector('img[alt]:not([alt=""])')))
    .map((el) => el.outerHTML.slice(0, 120));
  const current = [...document.querySelectorAll('nav [aria-current="page"]')].length;
  const tables = [...document.querySelectorAll('table')].filter((t) => !t.querySelector('th')).length;
  return {inputs, images, buttons, current, tables};
})()"""


# cumulative layout shift, as Lighthouse counts it: shifts not caused by the user's input
CLS_SCRIPT = """window.__cls = 0;
new PerformanceObserver((list) => { for (const e of list.getEntries()) if (!e.hadRecentInput) window.__cls += e.value; })
  .observe({type: 'layout-shift', buffered: true});"""


class DevToolsError(Exception):
    """A DevTools command failed."""


class Browser:
    """One Chromium page."""

    def __init__(self, ws: websockets.ClientConnection, proc: asyncio.subprocess.Process) -> None:
        self.ws = ws
        self.proc = proc
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None] | None]] = {}
        self.errors: list[str] = []  # console errors, exceptions, error log entries
        self.network_errors: list[str] = []  # failed loads (expected while a server is down)
        self.tasks: set[asyncio.Task[None]] = set()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                msg = json.loads(raw)
                if "id" in msg:
                    future = self.pending.pop(msg["id"], None)
                    if future is not None and not future.done():
                        future.set_result(msg)
                    continue
                self._event(msg["method"], msg.get("params", {}))
        for future in self.pending.values():
            if not future.done():
                future.set_exception(DevToolsError("the browser closed the connection"))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(f"exception: {details.get('exception', {}).get('description', details.get('text'))}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            text = f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}"
            (self.network_errors if entry.get("source") == "network" else self.errors).append(text)
        handler = self.handlers.get(method)
        if handler is not None:
            result = handler(params)
            if asyncio.iscoroutine(result):
                task = asyncio.create_task(result)
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command and wait for its result."""
        msg_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = future
        await self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        async with asyncio.timeout(30):
            reply = await future
        if "error" in reply:
            raise DevToolsError(f"{method}: {reply['error']}")
        return reply["result"]

    async def js(self, expression: str) -> Any:
        """Evaluate in the page (promises awaited) and return the value."""
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression[:80]}: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result["result"].get("value")

    async def wait(self, expression: str, timeout: float = 15.0, what: str | None = None) -> Any:
        """Poll `expression` until it is truthy (an exception, e.g. an element not there yet, counts as false)."""
        value: Any = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        value = await self.js(expression)
                    except DevToolsError as exc:
                        value = exc
                    else:
                        if value:
                            return value
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what or expression} (last value {value!r})") from None

    async def goto(self, url: str) -> None:
        """Navigate and wait for the document to load."""
        await self.call("Page.navigate", url=url)
        await self.wait("document.readyState === 'complete'", what="the page to load")

    async def viewport(self, size: tuple[int, int]) -> None:
        """Resize the page (a phone size turns on mobile emulation)."""
        width, height = size
        await self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                        mobile=width < 600)

    async def screenshot(self, name: str, sizes: tuple[tuple[int, int], ...] = (DESKTOP, PHONE),
                         ready: str | None = None, dark: bool = False) -> list[Path]:
        """Save `<name>-<w>x<h>.png` for each size into SCREENSHOTS (scrolled to the top, as a person
        arriving sees it); back to the first size after."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        paths = []
        if dark:
            await self.call("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": "dark"}])
        for size in sizes:
            await self.viewport(size)
            await self.js("window.scrollTo(0, 0)")
            await self.js("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
            if ready:
                await self.wait(ready, what=f"{name} to be ready for its screenshot")
            shot = await self.call("Page.captureScreenshot", format="png")
            path = SCREENSHOTS / f"{name}-{size[0]}x{size[1]}.png"
            path.write_bytes(base64.b64decode(shot["data"]))
            paths.append(path)
        await self.viewport(sizes[0])
        if dark:
            await self.call("Emulation.setEmulatedMedia", features=[])
        return paths

    async def center(self, selector: str) -> tuple[float, float]:
        """The viewport coordinates of an element's centre (scrolled into view first)."""
        box = await self.js(f"""(() => {{
            const el = document.querySelector({json.dumps(selector)});
            if (!el) return null;
            el.scrollIntoView({{block: 'center', inline: 'center'}});
            const r = el.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2];
        }})()""")
        assert box, f"no element {selector}"
        return box[0], box[1]

    async def mouse(self, kind: str, x: float, y: float, clicks: int = 1, buttons: int = 1) -> None:
        """One real mouse event (mousePressed, mouseReleased, mouseMoved) at (x, y)."""
        button = "none" if kind == "mouseMoved" and not buttons else "left"
        await self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button=button, buttons=buttons,
                        clickCount=clicks, pointerType="mouse")

    async def click_at(self, x: float, y: float, clicks: int = 1) -> None:
        """Press and release the left button at (x, y)."""
        await self.mouse("mouseMoved", x, y, buttons=0)
        for n in range(1, clicks + 1):
            await self.mouse("mousePressed", x, y, clicks=n)
            await self.mouse("mouseReleased", x, y, clicks=n, buttons=0)

    async def click(self, selector: str, clicks: int = 1) -> None:
        """Click the centre of the element matching `selector`."""
        x, y = await self.center(selector)
        await self.click_at(x, y, clicks)

    async def drag(self, start: tuple[float, float], end: tuple[float, float], steps: int = 5) -> None:
        """Press at `start`, move to `end` in steps, release."""
        await self.mouse("mouseMoved", *start, buttons=0)
        await self.mouse("mousePressed", *start)
        for i in range(1, steps + 1):
            x = start[0] + (end[0] - start[0]) * i / steps
            y = start[1] + (end[1] - start[1]) * i / steps
            await self.mouse("mouseMoved", x, y)
        await self.mouse("mouseReleased", *end, buttons=0)

    async def type(self, selector: str, text: str) -> None:
        """Focus a field, clear it and type `text` into it."""
        await self.js(f"(() => {{ const el = document.querySelector({json.dumps(selector)}); el.focus(); el.select && el.select(); }})()")
        await self.call("Input.insertText", text=text)

    async def key(self, key: str, code: str | None = None, key_code: int = 0) -> None:
        """Press and release one key (e.g. "ArrowRight", "Enter", "Escape", "Delete")."""
        codes = {"Enter": 13, "Escape": 27, "ArrowLeft": 37, "ArrowUp": 38, "ArrowRight": 39, "ArrowDown": 40, "Delete": 46}
        params = {"key": key, "code": code or key, "windowsVirtualKeyCode": key_code or codes.get(key, 0)}
        if key == "Enter":
            params["text"] = "\r"
        await self.call("Input.dispatchKeyEvent", type="keyDown", **params)
        await self.call("Input.dispatchKeyEvent", type="keyUp", **{k: v for k, v in params.items() if k != "text"})

    async def layout_shift(self) -> float:
        """The page's cumulative layout shift since it loaded (Lighthouse's "good" is under 0.1)."""
        return float(await self.js("window.__cls"))

    async def audit(self) -> dict[str, Any]:
        """Inputs without a label, images without alt, unnamed buttons and links, nav aria-current count."""
        return await self.js(AUDIT)

    def on(self, method: str, handler: Callable[[dict[str, Any]], Awaitable[None] | None]) -> None:
        """Call `handler(params)` for every DevTools event `method` (a coroutine runs as a task)."""
        self.handlers[method] = handler

    async def close(self) -> None:
        """Close the connection and the browser."""
        for task in list(self.tasks):
            task.cancel()
        with suppress(Exception):
            await self.ws.close()
        self.reader.cancel()
        with suppress(asyncio.CancelledError):
            await self.reader
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@asynccontextmanager
async def chromium(url: str = "about:blank", size: tuple[int, int] = DESKTOP) -> AsyncIterator[Browser]:
    """A headless Chromium page (console and errors recorded) that opened `url`."""
    assert CHROMIUM is not None
    # chromium's helper processes may still be writing the profile for a moment after it exits
    with tempfile.TemporaryDirectory(prefix="camserver-chromium-", ignore_cleanup_errors=True) as profile:
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
            "--disable-features=Translate,MediaRouter", "--autoplay-policy=no-user-gesture-required",
            f"--user-data-dir={profile}", "--remote-debugging-port=0", f"--window-size={size[0]},{size[1]}", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        browser: Browser | None = None
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            async with asyncio.timeout(30):
                while not (port_file.exists() and port_file.read_text().strip()):
                    await asyncio.sleep(0.1)  # chromium writes the file when its DevTools server listens
                port = int(port_file.read_text().split()[0])
                async with aiohttp.ClientSession() as session:
                    while True:
                        async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                            pages = [t for t in await resp.json() if t["type"] == "page"]
                        if pages:
                            break
                        await asyncio.sleep(0.1)
            ws = await websockets.connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
            browser = Browser(ws, proc)
            for domain in ("Page", "Runtime", "Log"):
                await browser.call(f"{domain}.enable")
            await browser.call("Page.addScriptToEvaluateOnNewDocument", source=CLS_SCRIPT)
            await browser.call("Emulation.setFocusEmulationEnabled", enabled=True)  # focus() works unwatched
            await browser.viewport(size)
            if url != "about:blank":
                await browser.goto(url)
            yield browser
        finally:
            if browser is not None:
                await browser.close()
            elif proc.returncode is None:
                proc.kill()
                await proc.wait()
