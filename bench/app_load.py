"""The app under load: N browser sessions (Chromium via Playwright, one browser context each, so N separate
Streamlit sessions) upload different photos to the Explain page at once and keep doing so for a while. Reports
each upload's time until its photo and Grad-CAM / CAM / occlusion maps are shown, the errors (a timeout, or an
exception box on the page), the server process's peak resident memory (VmHWM from /proc) and what limits it: the
CPU time the server used during the load beside the CPU time the whole machine used (the browsers run on the same
cores).

  python bench/app_load.py                          # a lone session first (the reference), then 10 for 120 s
  python bench/app_load.py --sessions=6 --seconds=60

The lone session's median is measured on the same warm server just before the load, so the ratio
"p95 under load / lone median" compares like with like.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


from app_latency import IMAGES, free_port, stop_server, wait_healthy

from fer_core.examples import astronaut

ROOT = Path(__file__).resolve().parent.parent

PAGE_ERROR = '[data-testid="stException"]'
# resolves once the new photo's caption is shown and four images not on the page before the upload (the boxed photo,
# three maps) have loaded. Checked when the page changes or an image loads, not by polling: ten pages each polling
# document.body.innerText (a layout) every 50 ms for the 10-30 s an upload takes under load cost the browsers more CPU
# than the pages themselves, on the cores the server needs
MAPS_SHOWN = f"""([before, caption]) => new Promise(resolve => {{
  const shown = () => {{
    const fresh = [...document.querySelectorAll('{IMAGES}')].filter(e => !before.includes(e.src));
    return fresh.length >= 4 && fresh.every(e => e.complete && e.naturalWidth > 0)
      && document.body.textContent.includes(caption);
  }};
  const check = () => {{
    if (!shown()) return;
    observer.disconnect();
    document.removeEventListener('load', check, true);
    resolve(true);
  }};
  const observer = new MutationObserver(check);
  observer.observe(document.body, {{subtree: true, childList: true, characterData: true, attributes: true}});
  document.addEventListener('load', check, true);
  check();
}})"""


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size so far (Linux VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) used so far by process `pid` (its threads included), or by the whole machine."""
    tick = os.sysconf("SC_CLK_TCK")
    if pid is not None:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / tick


def photos(folder: Path, sessions: int, per_session: int) -> list[list[Path]]:
    """Distinct photos for every session and upload (the astronaut shifted and mirrored): nothing is served from
    another session's cache."""
    base = astronaut()
    out = []
    for s in range(sessions):
        mine = []
        for k in range(per_session):
            img = np.roll(base, 2 * (s * per_session + k) + 1, axis=1)
            if k % 2:
                img = img[:, ::-1]
            p = folder / f"s{s}_{k}.png"
            Image.fromarray(np.ascontiguousarray(img)).save(p)
            mine.append(p)
        out.append(mine)
    return out


async def session(browser, url: str, imgs: list[Path], until: float, log: list, sid: int, timeout_ms: int,
                  limit: int | None = None) -> None:
    """One browser session: open the app, then upload its photos one after another until `until` (or `limit`
    uploads)."""
    context = await browser.new_context(viewport={"width": 1200, "height": 1200})
    page = await context.new_page()
    try:
        await page.goto(url, timeout=timeout_ms)
        await page.get_by_text("Why does the model think so?").wait_for(timeout=timeout_ms)
    except Exception as e:  # the page never came up: one error for this session
        log.append({"session": sid, "seconds": None, "error": f"page did not open: {type(e).__name__}"})
        await context.close()
        return
    k = 0
    while time.perf_counter() < until and (limit is None or k < limit):
        img = imgs[k % len(imgs)]
        k += 1
        before = await page.eval_on_selector_all(IMAGES, "els => els.map(e => e.src)")
        t0 = time.perf_counter()
        try:
            await page.locator('input[type="file"]').first.set_input_files(str(img))
            await asyncio.wait_for(page.evaluate(MAPS_SHOWN, [before, f"{img.name}: 1 face(s)"]), timeout_ms / 1000)
            error = None
            if await page.locator(PAGE_ERROR).count():
                error = "exception shown on the page"
        except Exception as e:
            error = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}"
        log.append({"session": sid, "seconds": time.perf_counter() - t0, "error": error, "at": t0})
    await context.close()


async def run(url: str, groups: list[list[Path]], seconds: float, timeout_ms: int,
              limit: int | None = None) -> list[dict]:
    from playwright.async_api import async_playwright

    log: list[dict] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        until = time.perf_counter() + seconds
        await asyncio.gather(*(session(browser, url, imgs, until, log, sid, timeout_ms, limit)
                               for sid, imgs in enumerate(groups)))
        await browser.close()
    return log


def summary(name: str, log: list[dict]) -> dict:
    t = np.array([r["seconds"] for r in log if r["seconds"] is not None and not r["error"]])
    errors = [r for r in log if r["error"]]
    s = {"uploads": len(log), "errors": len(errors), "median": float(np.median(t)) if len(t) else float("nan"),
         "p95": float(np.percentile(t, 95)) if len(t) else float("nan"), "max": float(t.max()) if len(t) else float("nan")}
    print(f"{name}: {s['uploads']} uploads, {s['errors']} errors; upload -> maps median {s['median']:.2f} s, "
          f"95th percentile {s['p95']:.2f} s, max {s['max']:.2f} s")
    for r in errors[:10]:
        print(f"  session {r['session']}: {r['error']}")
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=10, help="browser sessions at once")
    ap.add_argument("--seconds", type=float, default=120, help="how long the sessions keep uploading")
    ap.add_argument("--lone", type=int, default=4, help="uploads of the lone reference session (the first is a "
                                                          "warm-up and not counted)")
    ap.add_argument("--timeout", type=float, default=180, help="seconds an upload may take before it is an error")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp())
    groups = photos(tmp, args.sessions + 1, 12)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                             "--server.headless", "true"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ))
    try:
        if not wait_healthy(url, 120):
            raise SystemExit("the app did not start within 120 s")
        timeout_ms = int(args.timeout * 1000)
        # the lone reference: a fixed number of uploads on the warm server, the first one not counted
        asyncio.run(run(url, [groups[-1]], float("inf"), timeout_ms, limit=1))  # the warm-up upload, not counted
        lone0 = cpu_seconds(proc.pid)
        warm = asyncio.run(run(url, [groups[-1][1:]], float("inf"), timeout_ms, limit=args.lone - 1))
        ref = summary(f"lone session (after one warm-up upload, {len(warm)} uploads)", warm)
        print(f"  the app server's CPU time per lone upload (page load included): "
              f"{(cpu_seconds(proc.pid) - lone0) / max(1, len(warm)):.2f} s")
        mem_before = peak_rss_mb(proc.pid)
        t0, server0, machine0 = time.perf_counter(), cpu_seconds(proc.pid), cpu_seconds()
        log = asyncio.run(run(url, groups[:args.sessions], args.seconds, timeout_ms))
        wall = time.perf_counter() - t0
        server, machine = cpu_seconds(proc.pid) - server0, cpu_seconds() - machine0
        s = summary(f"{args.sessions} sessions for {args.seconds:.0f} s (ran {wall:.0f} s)", log)
        peak = peak_rss_mb(proc.pid)
        print(f"server peak memory: {peak / 1024:.2f} GB (after the lone session: {mem_before / 1024:.2f} GB)")
        done = sum(1 for r in log if not r["error"])
        print(f"p95 under load / lone median: {s['p95'] / ref['median']:.1f}x; throughput "
              f"{done / wall * 60:.1f} uploads a minute; host: {os.cpu_count()} CPUs")
        print(f"CPU during the load: the machine {machine:.0f} s of {wall * os.cpu_count():.0f} available "
              f"({machine / (wall * os.cpu_count()):.0%} busy); the app server {server:.0f} s ({server / machine:.0%}; "
              f"{server / max(1, done):.2f} s per upload), the rest the browsers and this script")
    finally:
        stop_server(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
