"""Drives the host's Zoom App page in headless Chromium with the Zoom Apps SDK stubbed.

usage: zoom_app_check.py URL CONTEXT SCREENSHOT

The stub (served in place of https://appssdk.zoom.us/sdk.min.js) records every SDK call and
lets the script fire onRTMSStatusChange. Prints {"calls", "statuses", "server_result",
"error"} as JSON."""
import json
import sys
import time

from playwright.sync_api import sync_playwright

url, context, shot = sys.argv[1], sys.argv[2], sys.argv[3]
STUB = """
window.__calls = [];
window.zoomSdk = {
  config: async (o) => { __calls.push(["config", o.capabilities]); return {}; },
  getRTMSStatus: async () => { __calls.push(["getRTMSStatus"]); return {rtmsStatus: []}; },
  onRTMSStatusChange: (cb) => { __calls.push(["onRTMSStatusChange"]); window.__emit = cb; },
  startRTMS: async () => { __calls.push(["startRTMS"]); return {}; },
  stopRTMS: async () => { __calls.push(["stopRTMS"]); return {}; },
  getAppContext: async () => { __calls.push(["getAppContext"]); return {context: %s}; },
};
""" % json.dumps(context)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

statuses = []


def until(page, expression, timeout_s=10):
    """Polls `expression` (evaluated in the page) until it is truthy. The app's CSP forbids
    eval, which Playwright's own waiting for a JavaScript condition needs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if page.evaluate(expression):
            return
        page.wait_for_timeout(50)
    raise TimeoutError("still false after %s s: %s" % (timeout_s, expression))


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
    page = browser.new_page(viewport={"width": 480, "height": 640})
    console = []
    page.on("console", lambda m: console.append(m.text))
    page.route("https://appssdk.zoom.us/**", lambda route: route.fulfill(
        status=200, content_type="text/javascript", body=STUB))
    page.goto(url)
    status = lambda: page.inner_text("#status")
    until(page, "document.getElementById('status').dataset.status === 'stopped'")
    statuses.append(status())
    page.click("#start")
    until(page, "__calls.some(c => c[0] === 'startRTMS')")
    statuses.append(status())
    page.evaluate("__emit({status: 'started'})")
    until(page, "document.getElementById('status').dataset.status === 'started'")
    statuses.append(status())
    page.click("#stop")
    until(page, "__calls.some(c => c[0] === 'stopRTMS')")
    page.evaluate("__emit({status: 'stopped'})")
    until(page, "document.getElementById('status').dataset.status === 'stopped'")
    statuses.append(status())
    page.click("details summary")
    page.click("#server-start")
    try:
        until(page,
              "document.getElementById('server-result').textContent.startsWith('streaming as') || document.getElementById('error').textContent",
              30)
    except Exception as e:
        page.screenshot(path=shot, full_page=True)
        raise SystemExit("the server start did not finish: %s\nresult=%r error=%r console=%r" % (
            e, page.inner_text("#server-result"), page.inner_text("#error"), console))
    page.screenshot(path=shot, full_page=True)
    out = {
        "calls": page.evaluate("__calls.map(c => c[0])"),
        "capabilities": page.evaluate("__calls.find(c => c[0] === 'config')[1]"),
        "statuses": statuses,
        "server_result": page.inner_text("#server-result"),
        "error": page.inner_text("#error"),
    }
    browser.close()
print(json.dumps(out))
