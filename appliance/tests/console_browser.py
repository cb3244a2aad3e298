#!/usr/bin/env python3
"""Drives the web console in a real browser (Debian's chromium through Playwright, no browser
download) against `sentinel serve --no-tls` on a fresh data directory, with the loopback fake
GitHub and fake model of the Swift tests (started as the one test `ConsoleBrowserFakes`, which
serves them until this script is done): sets up the first admin, creates a workspace, adds an AI
provider, connects a GitHub App through the App manifest flow, delivers a signed pull request
webhook, watches the run appear and opens it with its findings, checks the overview's charts
have data points, and signs out. Saves a screenshot of each page to $SCREENSHOTS (default: a new
temporary directory, named at the end), never into docs/: the README's screenshots under
docs/screenshots/ are committed copies of some of them.

Usage: console_browser.py PATH/TO/sentinel   (run from anywhere; the package is this file's ../..)
"""
import hashlib
import hmac
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

from playwright.sync_api import expect, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PACKAGE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def free_port():
    """A port below the kernel's ephemeral range (outbound connections take their local ports from
    it, and one could take a port picked there before the server binds it), free now."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    while True:
        port = random.randrange(10000, low - 200)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


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


def start_fakes(directory, log):
    """The fake GitHub and fake model, from the already built tests (`swift test --skip-build`)."""
    os.makedirs(directory)
    env = dict(os.environ, SENTINEL_BROWSER_FAKES=directory)
    fakes = subprocess.Popen(["swift", "test", "--skip-build", "--filter", "ConsoleBrowserFakes"], cwd=PACKAGE, env=env,
                             stdout=log, stderr=log)
    path = os.path.join(directory, "fakes.json")
    for _ in range(1200):
        if os.path.exists(path):
            return fakes, json.load(open(path))
        if fakes.poll() is not None:
            raise SystemExit(f"the fakes exited with {fakes.returncode} before starting")
        time.sleep(0.1)
    raise SystemExit("the fakes did not start")


def deliver(url, secret, event, payload):
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signature})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def main():
    binary = sys.argv[1]
    shots = os.environ.get("SCREENSHOTS") or tempfile.mkdtemp(prefix="sentinel-screenshots-")
    os.makedirs(shots, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sentinel-browser-") as tmp:
        fakes_log = open(os.path.join(tmp, "fakes.log"), "w")
        fakes, info = start_fakes(os.path.join(tmp, "fakes"), fakes_log)
        data = os.path.join(tmp, "data")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = dict(os.environ, SENTINEL_AUTH_BCRYPT_COST="4", SENTINEL_EXPORT_ENABLED="false")
        log = open(os.path.join(tmp, "server.log"), "w")
        server = subprocess.Popen([binary, "serve", "--data-dir", data, "--no-tls", "--host", "127.0.0.1", "--port", str(port)],
                                  stdout=log, stderr=log, env=env)
        try:
            wait_ready(base, server)
            run(base, data, shots, info)
        except BaseException:
            log.flush()
            print(open(os.path.join(tmp, "server.log")).read()[-4000:], file=sys.stderr)
            raise
        finally:
            server.terminate()
            server.wait(timeout=30)
            open(os.path.join(tmp, "fakes", "stop"), "w").close()
            try:
                fakes.wait(timeout=120)
            except subprocess.TimeoutExpired:
                fakes.kill()
            fakes_log.flush()
        if fakes.returncode != 0:
            print(open(os.path.join(tmp, "fakes.log")).read()[-4000:], file=sys.stderr)
            raise SystemExit(f"the fakes' checks failed ({fakes.returncode})")
    print(f"console browser test passed; screenshots in {shots}")


def run(base, data, shots, fakes):
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

        # Add an AI provider (the fake model): the key is write-only, only its last 4 characters are shown.
        page.get_by_role("link", name="AI providers").click()
        page.get_by_label("Kind").select_option("openai")
        page.get_by_label("API key (write-only").fill(fakes["llm_key"])
        page.get_by_label("Base URL").fill(fakes["llm"])
        page.get_by_role("button", name="Add provider").click()
        expect(page.get_by_role("cell", name="…" + fakes["llm_key"][-4:])).to_be_visible()
        assert fakes["llm_key"] not in page.content()
        # Test it: the fake model's models endpoint accepts the key (no tokens spent).
        page.get_by_role("button", name=re.compile(r"^Test provider")).click()
        expect(page.get_by_text("Passed: the connection works.")).to_be_visible()
        expect(page.get_by_text(re.compile("answers and accepts its key"))).to_be_visible()
        page.screenshot(path=os.path.join(shots, "providers.png"), full_page=True)

        # Connect a GitHub App through the manifest flow: the console posts the manifest to (fake)
        # GitHub, which creates the App and sends the browser back with a code the server converts.
        page.get_by_role("link", name="Integrations").click()
        page.get_by_label("GitHub Enterprise Server API URL").fill(fakes["github"])
        page.get_by_role("button", name="Continue to GitHub").click()
        expect(page.get_by_role("heading", name="Create the GitHub App")).to_be_visible()
        page.screenshot(path=os.path.join(shots, "manifest.png"), full_page=True)
        page.get_by_role("button", name=re.compile("Create the App on")).click()
        expect(page.get_by_role("heading", name="Integrations")).to_be_visible()
        hook = page.locator("td code", has_text="/webhooks/github/int_").first
        expect(hook).to_be_visible()
        webhook_url = hook.inner_text()
        assert webhook_url.startswith(base + "/webhooks/github/int_"), webhook_url
        page.screenshot(path=os.path.join(shots, "integrations.png"), full_page=True)

        # The App's page tests the connection: (fake) GitHub accepts the App's id and key.
        page.get_by_role("link", name=re.compile(r"github integration int_")).click()
        page.get_by_role("button", name="Test connection").click()
        expect(page.get_by_text("Passed: the connection works.")).to_be_visible()
        expect(page.get_by_text(re.compile("accepts the App's credentials"))).to_be_visible()
        page.screenshot(path=os.path.join(shots, "integration-test.png"), full_page=True)

        # A signed pull request webhook, as GitHub would send it.
        repo, number = fakes["repository"], fakes["pr"]
        status = deliver(webhook_url, fakes["webhook_secret"], "pull_request", {
            "action": "opened", "number": number,
            "pull_request": {"number": number, "draft": False, "state": "open",
                             "head": {"sha": fakes["head"], "ref": "feature", "repo": {"id": 1001, "full_name": repo}},
                             "base": {"sha": fakes["base"], "ref": "main", "repo": {"id": 1001, "full_name": repo}},
                             "user": {"login": "octocat", "type": "User"}},
            "repository": {"id": 1001, "full_name": repo, "private": False},
            "installation": {"id": 55}, "sender": {"login": "octocat", "type": "User"}})
        assert status == 202, status

        # Watch the run appear on the runs page and finish, then open it with its findings.
        page.get_by_role("link", name="Runs", exact=True).click()
        expect(page.get_by_label("State")).to_be_visible()
        for _ in range(60):
            if page.locator("td", has_text="completed").count() > 0:
                break
            time.sleep(0.5)
            page.reload()
        expect(page.get_by_role("cell", name="completed")).to_be_visible()
        page.screenshot(path=os.path.join(shots, "runs.png"), full_page=True)
        page.get_by_role("link", name=re.compile(r"^#\d+$")).first.click()
        expect(page.get_by_role("heading", name=re.compile(r"^Run #\d+"))).to_be_visible()
        main = page.locator("main")
        expect(main).to_contain_text("app.py:3")
        expect(main).to_contain_text("KEY may be missing")
        expect(main).to_contain_text(repo)
        page.screenshot(path=os.path.join(shots, "run.png"), full_page=True)

        # The overview's charts have the run's data points.
        page.goto(workspace_url)
        charts = page.locator("figure.chart svg")
        expect(charts).to_have_count(3)
        points = page.locator('svg[aria-labelledby^="runs-chart"]').get_attribute("data-points")
        assert points is not None and int(points) >= 1, f"the runs chart has {points} data points"
        page.screenshot(path=os.path.join(shots, "overview.png"), full_page=True)

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
