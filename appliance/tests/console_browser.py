#!/usr/bin/env python3
"""Drives the web console in a real browser (Debian's chromium through Playwright, no browser
download) against `sentinel serve --no-tls` on a fresh data directory: sets up the first admin,
creates a workspace, adds an AI provider, opens the runs, checks the overview's charts and signs
out. Saves a screenshot of each page to docs/screenshots/ (or $SCREENSHOTS).

Usage: console_browser.py PATH/TO/sentinel
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from playwright.sync_api import expect, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, server):
    for _ in range(150):
        if server.poll() is not None:
            raise SystemExit(f"sentinel serve exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("sentinel serve did not become healthy")


def main():
    binary = sys.argv[1]
    shots = os.environ.get("SCREENSHOTS", os.path.join(os.path.dirname(__file__), "..", "..", "docs", "screenshots"))
    os.makedirs(shots, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sentinel-browser-") as tmp:
        data = os.path.join(tmp, "data")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = dict(os.environ, SENTINEL_AUTH_BCRYPT_COST="4", SENTINEL_EXPORT_ENABLED="false")
        log = open(os.path.join(tmp, "server.log"), "w")
        server = subprocess.Popen([binary, "serve", "--data-dir", data, "--no-tls", "--host", "127.0.0.1", "--port", str(port)],
                                  stdout=log, stderr=log, env=env)
        try:
            wait_ready(base, server)
            run(base, data, shots)
        except BaseException:
            log.flush()
            print(open(os.path.join(tmp, "server.log")).read()[-4000:], file=sys.stderr)
            raise
        finally:
            server.terminate()
            server.wait(timeout=30)
    print("console browser test passed")


def run(base, data, shots):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.set_default_timeout(15000)

        # First start: / leads to the setup page, which names the token file.
        page.goto(base + "/")
        expect(page).to_have_url(base + "/setup")
        expect(page.get_by_role("heading", name="Set up Sentinel")).to_be_visible()
        expect(page.locator("main")).to_contain_text("data/secrets/setup-token")
        page.screenshot(path=os.path.join(shots, "setup.png"), full_page=True)
        token = open(os.path.join(data, "secrets", "setup-token")).read().strip()
        page.get_by_label("Setup token").fill(token)
        page.get_by_label("Admin email").fill("admin@example.com")
        page.get_by_label("Password").fill("browser admin password")
        page.get_by_role("button", name="Create the admin").click()
        expect(page).to_have_url(base + "/workspaces")

        # Create a workspace (by keyboard: type the name and press Enter).
        page.get_by_label("Name", exact=True).fill("acme")
        page.get_by_label("Name", exact=True).press("Enter")
        expect(page.get_by_role("heading", name="acme: overview")).to_be_visible()
        workspace_url = page.url
        assert re.search(r"/workspaces/ws_[a-z0-9]+$", workspace_url), workspace_url
        charts = page.locator("figure.chart svg")
        expect(charts).to_have_count(3)
        page.screenshot(path=os.path.join(shots, "overview.png"), full_page=True)

        # Add an AI provider: the key is write-only, only its last 4 characters are shown.
        page.get_by_role("link", name="AI providers").click()
        page.get_by_label("Kind").select_option("openai")
        page.get_by_label("API key (write-only").fill("sk-browser-test-4321")
        page.get_by_role("button", name="Add provider").click()
        expect(page.get_by_role("cell", name="…4321")).to_be_visible()
        assert "sk-browser-test-4321" not in page.content()
        page.screenshot(path=os.path.join(shots, "providers.png"), full_page=True)

        # Runs: none yet, the filters are labelled.
        page.get_by_role("link", name="Runs", exact=True).click()
        expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        expect(page.get_by_label("State")).to_be_visible()
        page.screenshot(path=os.path.join(shots, "runs.png"), full_page=True)

        # A narrow window: one column, nothing needs horizontal scrolling of the page.
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(workspace_url)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the overview is {width}px wide in a 390px window"
        page.screenshot(path=os.path.join(shots, "overview-narrow.png"), full_page=True)
        page.set_viewport_size({"width": 1200, "height": 900})

        # An unknown page answers the console's 404 page.
        response = page.goto(base + "/no/such/page")
        assert response.status == 404
        expect(page.get_by_role("heading", name="Page not found")).to_be_visible()

        # Sign out: back to the sign-in page, and the workspace needs signing in again.
        page.goto(workspace_url)
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(base + "/sign-in")
        page.screenshot(path=os.path.join(shots, "sign-in.png"), full_page=True)
        page.goto(workspace_url)
        expect(page).to_have_url(base + "/sign-in")
        browser.close()


if __name__ == "__main__":
    main()
