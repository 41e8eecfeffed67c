"""Loads the host's dashboard in headless Chromium and reports what it rendered.

usage: dashboard_check.py URL STREAM_ID MIN_LINES SCREENSHOT

Waits until the session row of STREAM_ID and at least MIN_LINES transcript lines are in the
DOM, saves a screenshot, and prints {"rows": [...], "transcript": [...], "plugins": [...]}
as JSON. Exits non-zero with the page's state when they do not appear within 20 s."""
import json
import sys

from playwright.sync_api import sync_playwright

url, stream_id, min_lines, shot = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    try:
        page.wait_for_selector(f'#sessions tr[data-stream="{stream_id}"]', timeout=20000)
        page.click(f'#sessions tr[data-stream="{stream_id}"]')
        page.wait_for_function(
            "n => document.querySelectorAll('#transcript div[data-seq]').length >= n",
            arg=min_lines, timeout=20000)
    except Exception as e:
        page.screenshot(path=shot, full_page=True)
        print(page.content(), file=sys.stderr)
        raise SystemExit(f"the dashboard did not show the session: {e}")
    page.screenshot(path=shot, full_page=True)
    rows = page.eval_on_selector_all("#sessions tr[data-stream]", "rs => rs.map(r => r.dataset.stream)")
    lines = page.eval_on_selector_all("#transcript div[data-seq]", "ds => ds.map(d => d.textContent)")
    plugins = page.eval_on_selector_all("#plugins tr[data-plugin]", "rs => rs.map(r => r.dataset.plugin)")
    status = page.inner_text("#status")
    browser.close()
print(json.dumps({"rows": rows, "transcript": lines, "plugins": plugins, "status": status}))
