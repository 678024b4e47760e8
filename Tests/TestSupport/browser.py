#!/usr/bin/env python3
"""Drives a real headless Chromium through the DevTools protocol over a pipe (no extra Python
packages): opens URL, waits until a JavaScript condition holds (live updates included), then
prints the value of an expression as JSON and optionally saves a screenshot.

  browser.py URL --until 'document.querySelector(...) !== null' --eval 'JSON.stringify(...)'
             [--screenshot out.png] [--timeout 20]
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--until", default="true")
    parser.add_argument("--eval", default="document.documentElement.outerHTML")
    parser.add_argument("--screenshot")
    parser.add_argument("--timeout", type=float, default=20)
    parser.add_argument("--cookie", action="append", default=[], help="name=value for the URL's host")
    options = parser.parse_args()
    browser = Browser()
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for cookie in options.cookie:
            name, value = cookie.split("=", 1)
            browser.send("Network.setCookie", {"name": name, "value": value, "url": options.url}, session)
        browser.send("Page.navigate", {"url": options.url}, session)
        deadline = time.time() + options.timeout
        holds = False
        while time.time() < deadline:
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
        print(json.dumps({"held": holds, "value": value.get("result", {}).get("value")}))
    finally:
        browser.close()


if __name__ == "__main__":
    main()
