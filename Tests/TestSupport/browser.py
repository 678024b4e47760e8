#!/usr/bin/env python3
"""Drives a real headless Chromium through the DevTools protocol over a pipe (no extra Python
packages): opens URL, waits until a JavaScript condition holds (live updates included), then
prints the value of an expression as JSON and optionally saves a screenshot.

  browser.py URL --until 'document.querySelector(...) !== null' --eval 'JSON.stringify(...)'
             [--screenshot out.png] [--timeout 20] [--steps STEPS.json]

--steps names a JSON file with a list of steps run in order after the page loads and before
--until: {"run": JS} evaluates JS (promises awaited), {"wait": JS, "timeout": S} waits until JS
is true, {"file": CSS selector, "path": P} puts a file in a file input (as a user choosing it),
{"navigate": URL}, {"screenshot": P}. Each may have a "label". The first wait that times out
(or step that throws) stops the steps; the output says which ("failed") and what each gave.
"""
import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time


class Browser:
    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="imprint-chromium-")
        commands_read, self.commands = os.pipe()
        self.answers, answers_write = os.pipe()
        # Chromium reads commands from fd 3 and writes answers to fd 4; posix_spawn's dup2
        # actions put the pipe ends there (and nothing else is inherited: Python's pipes are
        # close-on-exec).
        null = os.open(os.devnull, os.O_RDWR)
        self.pid = os.posix_spawnp("chromium", [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
            "--no-first-run", "--no-default-browser-check", "--window-size=1280,900",
            "--user-data-dir=" + self.profile, "about:blank"], os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2),
            (os.POSIX_SPAWN_DUP2, commands_read, 3), (os.POSIX_SPAWN_DUP2, answers_write, 4)])
        os.close(null)
        os.close(commands_read)
        os.close(answers_write)
        self.buffer = b""
        self.next_id = 0

    def send(self, method, params=None, session=None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self.receive()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def receive(self):
        while b"\0" not in self.buffer:
            chunk = os.read(self.answers, 65536)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self):
        try:
            self.send("Browser.close")
        except Exception:
            pass
        deadline = time.time() + 10
        while time.time() < deadline:
            if os.waitpid(self.pid, os.WNOHANG)[0] != 0:
                break
            time.sleep(0.1)
        else:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        subprocess.run(["rm", "-rf", self.profile])


def run_steps(browser, session, steps):
    """Runs the --steps; returns (what each gave, the label of the step that failed or None)."""
    results = []
    for number, step in enumerate(steps):
        label = step.get("label", f"step {number + 1}")
        try:
            if "run" in step:
                value = browser.send("Runtime.evaluate", {"expression": step["run"], "awaitPromise": True, "returnByValue": True}, session)
                if "exceptionDetails" in value:
                    raise RuntimeError(json.dumps(value["exceptionDetails"].get("exception", {}).get("description")
                                                  or value["exceptionDetails"].get("text")))
                results.append({"label": label, "value": value.get("result", {}).get("value")})
            elif "wait" in step:
                deadline = time.time() + float(step.get("timeout", 30))
                held = False
                while time.time() < deadline:
                    try:
                        result = browser.send("Runtime.evaluate", {"expression": f"Boolean({step['wait']})", "returnByValue": True}, session)
                    except RuntimeError:
                        result = {}  # a page being replaced (navigation) has no context for a moment
                    if result.get("result", {}).get("value") is True:
                        held = True
                        break
                    time.sleep(0.2)
                results.append({"label": label, "held": held})
                if not held:
                    return results, label
            elif "file" in step:
                element = browser.send("Runtime.evaluate", {"expression": f"document.querySelector({json.dumps(step['file'])})"}, session)
                object_id = element.get("result", {}).get("objectId")
                if not object_id:
                    raise RuntimeError(f"no element matches {step['file']}")
                browser.send("DOM.setFileInputFiles", {"files": [step["path"]], "objectId": object_id}, session)
                results.append({"label": label})
            elif "navigate" in step:
                browser.send("Page.navigate", {"url": step["navigate"]}, session)
                results.append({"label": label})
            elif "screenshot" in step:
                # The whole page, not only what the window shows.
                size = browser.send("Page.getLayoutMetrics", {}, session).get("cssContentSize", {})
                clip = {"x": 0, "y": 0, "width": size.get("width", 1280), "height": min(size.get("height", 900), 10000), "scale": 1}
                shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}, session)
                with open(step["screenshot"], "wb") as out:
                    out.write(base64.b64decode(shot["data"]))
                results.append({"label": label})
        except Exception as error:  # the test reads what went wrong from the output
            results.append({"label": label, "error": str(error)})
            return results, label
    return results, None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--until", default="true")
    parser.add_argument("--eval", default="document.documentElement.outerHTML")
    parser.add_argument("--screenshot")
    parser.add_argument("--timeout", type=float, default=20)
    parser.add_argument("--cookie", action="append", default=[], help="name=value for the URL's host")
    parser.add_argument("--steps", help="a JSON file: steps to run before --until (see above)")
    options = parser.parse_args()
    browser = Browser()
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for cookie in options.cookie:
            name, value = cookie.split("=", 1)
            browser.send("Network.setCookie", {"name": name, "value": value, "url": options.url}, session)
        browser.send("Page.navigate", {"url": options.url}, session)
        steps, failed = [], None
        if options.steps:
            with open(options.steps) as source:
                steps, failed = run_steps(browser, session, json.load(source))
        deadline = time.time() + options.timeout
        holds = False
        while failed is None and time.time() < deadline:
            result = browser.send("Runtime.evaluate", {"expression": f"Boolean({options.until})", "returnByValue": True}, session)
            if result.get("result", {}).get("value") is True:
                holds = True
                break
            time.sleep(0.2)
        value = browser.send("Runtime.evaluate", {"expression": options.eval, "returnByValue": True}, session)
        if options.screenshot:
            shot = browser.send("Page.captureScreenshot", {"format": "png"}, session)
            with open(options.screenshot, "wb") as out:
                out.write(base64.b64decode(shot["data"]))
        answer = {"held": holds, "value": value.get("result", {}).get("value")}
        if options.steps:
            answer["steps"] = steps
            answer["failed"] = failed
        print(json.dumps(answer))
    finally:
        browser.close()


if __name__ == "__main__":
    main()
