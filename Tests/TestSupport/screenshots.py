#!/usr/bin/env python3
"""Screenshots of every dashboard page: logs in with the admin token, follows the top
navigation's links (whatever pages the dashboard has today) and, on each page, the first links
to pages below it (a machine, a deployment, an image, a sequence, the summary...), and saves one
PNG of each whole page into a folder. Only links are followed (GET): no form is sent, no button
pressed, so crawling changes nothing on the server.

  screenshots.py BASE_URL OUT_DIR [--token-file FILE] [--per-page 3] [--max-pages 60] [--timeout 20]

The admin token comes from --token-file or the environment's IMPRINT_ADMIN_TOKEN (not the
command line, which other users of the machine can read). Prints a JSON list of what it saw
({"url", "status", "file", "title"}); exits 1 when a page did not answer 200 or nothing was
crawled, 2 when the login failed.
"""
import argparse
import base64
import json
import os
import re
import sys
import time
from urllib.parse import urljoin, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser import Browser  # noqa: E402  (the same DevTools pipe as the Chromium tests)


def evaluate(browser, session, expression):
    try:
        value = browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}, session)
    except RuntimeError:
        return None  # a page being replaced has no context for a moment
    return value.get("result", {}).get("value")


def wait(browser, session, condition, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if evaluate(browser, session, f"Boolean({condition})") is True:
            return True
        time.sleep(0.2)
    return False


def load(browser, session, url, timeout):
    """Navigates and waits until the new document has loaded; its HTTP status (0: unknown)."""
    # The old document is marked: the new one, once it has replaced it, has no mark.
    evaluate(browser, session, "window.crawlOld = true")
    browser.send("Page.navigate", {"url": url}, session)
    wait(browser, session, "window.crawlOld === undefined && document.readyState === 'complete'", timeout)
    # Pages that draw with their script (progress bars' widths) get a moment to do it.
    time.sleep(0.5)
    status = evaluate(browser, session, "(performance.getEntriesByType('navigation')[0] || {}).responseStatus || 0")
    return int(status or 0)


def screenshot(browser, session, path):
    size = browser.send("Page.getLayoutMetrics", {}, session).get("cssContentSize", {})
    clip = {"x": 0, "y": 0, "width": size.get("width", 1280), "height": min(size.get("height", 900), 10000), "scale": 1}
    shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}, session)
    with open(path, "wb") as out:
        out.write(base64.b64decode(shot["data"]))


def file_name(number, url):
    parts = urlsplit(url)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", parts.path.strip("/")).strip("-") or "root"
    return f"{number:02d}-{slug[:80]}.png"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("out")
    parser.add_argument("--token-file")
    parser.add_argument("--per-page", type=int, default=3, help="links to pages below each top page that are followed")
    parser.add_argument("--max-pages", type=int, default=60)
    parser.add_argument("--timeout", type=float, default=20)
    options = parser.parse_args()
    token = os.environ.get("IMPRINT_ADMIN_TOKEN", "")
    if options.token_file:
        with open(options.token_file) as source:
            token = source.read().strip()
    if not token:
        print("screenshots.py: no admin token (--token-file or IMPRINT_ADMIN_TOKEN)", file=sys.stderr)
        return 2
    os.makedirs(options.out, exist_ok=True)
    base = options.base.rstrip("/")
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(base))
    browser = Browser()
    seen = []
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.send("Page.enable", {}, session)
        load(browser, session, base + "/dashboard", options.timeout)
        evaluate(browser, session, f"""(function () {{
            const form = document.querySelector('form[action="/dashboard/login"]');
            if (form === null) return false;
            form.elements.namedItem('token').value = {json.dumps(token)};
            form.submit();
            return true;
        }})()""")
        if not wait(browser, session, "document.querySelector('nav.top') !== null", options.timeout):
            print("screenshots.py: the login with the admin token failed (no dashboard after it)", file=sys.stderr)
            return 2
        top = evaluate(browser, session, "Array.from(document.querySelectorAll('nav.top a')).map(a => a.href)") or []
        top = [url for url in dict.fromkeys(top) if url.startswith(origin + "/dashboard")]
        visited = set()
        queue = []
        for url in top:
            queue.append((url, True))
        while queue and len(seen) < options.max_pages:
            url, is_top = queue.pop(0)
            if url in visited:
                continue
            visited.add(url)
            status = load(browser, session, url, options.timeout)
            title = evaluate(browser, session, "document.title") or ""
            name = file_name(len(seen) + 1, url)
            screenshot(browser, session, os.path.join(options.out, name))
            seen.append({"url": url, "status": status, "file": name, "title": title})
            if not is_top:
                continue
            # The first links to pages below this one: a path of three parts or more under
            # /dashboard, no query (filters of the same page), no download, not the live feed.
            path = urlsplit(url).path.rstrip("/")
            links = evaluate(browser, session, "Array.from(document.querySelectorAll('main a[href], body a[href]'))"
                             ".filter(a => !a.closest('nav.top') && !a.hasAttribute('download')).map(a => a.href)") or []
            below = []
            for link in dict.fromkeys(links):
                parts = urlsplit(link)
                if "{0.scheme}://{0.netloc}".format(parts) != origin or parts.query or parts.fragment:
                    continue
                segments = [s for s in parts.path.split("/") if s]
                if len(segments) < 3 or segments[0] != "dashboard" or parts.path.endswith("/log") or parts.path == "/dashboard/live":
                    continue
                if path != "/dashboard" and not parts.path.startswith(path + "/"):
                    continue
                full = urljoin(origin, parts.path)
                if full in visited or full in top or full in below:
                    continue
                below.append(full)
                if len(below) >= options.per_page:
                    break
            queue = [(link, False) for link in below] + queue
    finally:
        browser.close()
    print(json.dumps(seen, indent=1))
    bad = [page for page in seen if page["status"] != 200]
    return 1 if bad or not seen else 0


if __name__ == "__main__":
    sys.exit(main())
