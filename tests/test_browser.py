"""Real browser: `streamlit run` on localhost, Playwright drives Debian's Chromium, uploads a face on
the Explain page, waits for the probabilities and three maps, and saves a screenshot."""
import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image


from app_latency import free_port, stop_server, wait_healthy

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.browser


@contextlib.contextmanager
def _serve(checkpoints: Path, **extra_env):
    """`streamlit run` on a free port; yields its URL, stops it afterwards."""
    port = free_port()
    env = dict(os.environ, FER_CHECKPOINTS=str(checkpoints), **extra_env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    if not wait_healthy(url, 60):
        proc.kill()
        pytest.fail("streamlit did not start")
    try:
        yield url
    finally:
        stop_server(proc)  # its shutdown is not what is tested


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    if not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed")
    pytest.importorskip("playwright.sync_api")
    from fer_core.checkpoints import ModelSpec, save_checkpoint
    from fer_core.models import create_model

    d = tmp_path_factory.mktemp("browser")
    torch.manual_seed(0)
    save_checkpoint(create_model("fernet"), ModelSpec(arch="fernet"), d / "fernet.safetensors")
    return d


@pytest.fixture(scope="module")
def server(checkpoints):
    with _serve(checkpoints) as url:
        yield url


def _browser(p):
    return p.chromium.launch(executable_path=shutil.which("chromium"), args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])


def test_a_fresh_server_opened_at_a_page_url_shows_the_app_navigation(checkpoints):
    """Streamlit runs a page opened by its URL before the entry point ever ran as a legacy pages/ page (the
    files' names in the sidebar, no page config) unless ui leaves that mode."""
    from playwright.sync_api import sync_playwright

    with _serve(checkpoints) as url:  # a server of its own: this must be its first session
        with sync_playwright() as p:
            browser = _browser(p)
            page = browser.new_page()
            page.goto(url + "/model_card", timeout=60_000)
            page.get_by_role("heading", name="Model card").wait_for(timeout=60_000)
            nav = page.eval_on_selector_all('[data-testid="stSidebarNav"] a', "els => els.map(e => e.innerText)")
            browser.close()
        assert any(n.endswith("Explain a face") for n in nav) and len(nav) == 6, nav


def test_upload_face_shows_probabilities_and_maps(server, astronaut, tmp_path):
    from playwright.sync_api import sync_playwright

    img = tmp_path / "face.png"
    Image.fromarray(astronaut).save(img)
    out_dir = Path(os.environ.get("SCREENSHOT_DIR", tmp_path))
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1500})
        page.goto(server, timeout=60_000)
        page.get_by_text("Why does the model think so?").wait_for(timeout=60_000)
        page.locator('input[type="file"]').first.set_input_files(str(img))
        page.get_by_text("Face 1:").first.wait_for(timeout=90_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        for label in ("Grad-CAM", "Integrated Gradients", "Occlusion"):
            page.get_by_text(label, exact=True).first.wait_for(timeout=60_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out_dir / "explain.png"), full_page=True)
        # .streamlit/config.toml's toolbarMode: even on localhost, no Streamlit "Deploy" button for a visitor
        deploy = (page.locator('[data-testid="stAppDeployButton"]').count()
                  + page.get_by_text("Deploy", exact=True).count())
        browser.close()
    assert (out_dir / "explain.png").stat().st_size > 10_000
    assert deploy == 0


def test_the_no_face_button_holds_for_one_picture(server, tmp_path):
    """After "Use the whole image as the face" on a faceless picture, the next upload (a group photo) is looked at
    for faces. When the button switched the page's toggle on and the new picture's callback switched it off, the
    upload's rerun in Chromium came back with the toggle on, and the group was scored as one face."""
    from playwright.sync_api import sync_playwright

    from fer_core.examples import group_photo, no_face

    Image.fromarray(no_face()).save(tmp_path / "coffee.png")
    Image.fromarray(group_photo()).save(tmp_path / "group.png")
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1500})
        page.goto(server, timeout=60_000)
        page.get_by_text("Why does the model think so?").wait_for(timeout=60_000)
        upload = page.locator('input[type="file"]').first
        upload.set_input_files(str(tmp_path / "coffee.png"))
        button = page.get_by_role("button", name="Use the whole image as the face")
        button.wait_for(timeout=60_000)
        button.click()
        page.get_by_text("coffee.png: 1 face(s)").wait_for(timeout=60_000)
        upload.set_input_files(str(tmp_path / "group.png"))
        page.get_by_text("group.png:").first.wait_for(timeout=60_000)
        page.wait_for_timeout(3000)  # any late rerun has come and gone
        caption = page.get_by_text("group.png:").first.inner_text()
        browser.close()
    assert caption.startswith("group.png: 3 face(s)"), caption


def _y4m(path: Path, rgb, frames: int = 30) -> Path:
    """A raw YUV4MPEG2 clip of one picture, what Chromium's fake camera plays in a loop."""
    import cv2

    h, w = rgb.shape[:2]
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes()
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F15:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            fh.write(b"FRAME\n" + i420)
    return path


def test_live_page_streams_a_fake_camera_and_labels_its_face(checkpoints, tmp_path):
    """Chromium's fake camera plays a face (made from scikit-image's astronaut) into the Live page over WebRTC on
    localhost: the page counts processed frames and names the tracked face's emotion; "freeze" opens that frame on the
    Explain page with every method."""
    pytest.importorskip("streamlit_webrtc")
    import re

    import cv2
    import numpy as np
    from playwright.sync_api import sync_playwright

    from fer_core.examples import astronaut

    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[90:390, 170:470] = cv2.resize(astronaut()[:300, 100:400], (300, 300))
    clip = _y4m(tmp_path / "face.y4m", frame)
    with _serve(checkpoints, FER_RTC_ICE_SERVERS="[]") as url:  # localhost: host candidates suffice
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={clip}",
                "--disable-features=WebRtcHideLocalIpsWithMdns"])  # plain host addresses, which aiortc can reach
            page = browser.new_page()
            page.goto(url + "/live", timeout=60_000)
            page.frame_locator("iframe").get_by_role("button", name="START").click(timeout=60_000)
            page.wait_for_function(r"""() => {
                const m = document.body.innerText.match(/(\d+) processed\)/);
                return m && Number(m[1]) >= 3;
            }""", timeout=90_000, polling=250)
            page.wait_for_timeout(1500)  # two more refreshes: no error box may follow
            text = page.inner_text("body")
            page.get_by_role("button", name="Freeze: explain this frame with every method").click()
            page.get_by_text("live-frame.png: 1 face(s)").wait_for(timeout=120_000)  # the Explain page, that frame
            explained = page.inner_text("body")
            browser.close()
    assert re.search(r"#1\s+(happiness|surprise|sadness|anger|disgust|fear|neutral) \d+%", text), text[-1500:]
    assert "Error" not in text and "Traceback" not in text, text[-1500:]
    assert "Integrated Gradients" in explained and "Score-CAM" in explained  # every method, not the three defaults
