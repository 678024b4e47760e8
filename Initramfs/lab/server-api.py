#!/usr/bin/env python3
"""The lab's client of imprint-server's admin API (run inside the lab's network namespace).

  server-api.py load BASE TOKEN SEQUENCES_DIR RULES.json   # PUT every sequence (validated by the server), then the rules
  server-api.py wait BASE TOKEN MAC SECONDS OUT.json [--quiet] [--while-pid PID] [--console LOG]
      waits until the deployment of the machine with MAC has ended (succeeded or failed), printing
      its step and percent as they change (stops early when process PID, the machine, has ended, or 15 s after the console LOG shows the boot environment's failure box); writes {"deployment": ..., "events": [...]} to OUT.json
  server-api.py until BASE TOKEN MAC SECONDS STEP_REGEX OCCURRENCE MIN_PERCENT [--then SECONDS] [--while-pid PID]
      waits until the machine's deployment has started a step whose name matches STEP_REGEX for
      the OCCURRENCE-th time (a resumed run starts its interrupted step again; "next": the
      first start after the call, the one the machine's current run makes) and reported at
      least MIN_PERCENT of its data written (an apply's "writing data" progress, not its
      "creating files"; polling fast: the moment to cut the power); prints where it was;
      with --then, returns that many seconds later (the data an apply wrote sits in the
      machine's page cache until its disk takes it: the cut falls while it does) and prints the
      step the run had reached by then;
      1 when the deployment ended, the machine stopped or SECONDS passed first
  server-api.py library BASE TOKEN FILE INDEX NAME
      imports FILE (under the server's content folder) into the image library and extracts image
      INDEX of it as the library image NAME (its next version); waits for both jobs
  server-api.py library-use BASE TOKEN NAME OUT.json
      checks that the library image NAME lists the deployment of OUT.json (from wait) among the
      deployments that applied it, and prints the version
  server-api.py point BASE TOKEN NAME URL SUBNET PRIORITY TOKEN_FILE
      creates (or updates) the distribution point NAME serving URL to SUBNET with PRIORITY and
      writes the token the server answers once to TOKEN_FILE (mode 0600)
  server-api.py points BASE TOKEN NAME...
      checks that each named point reported its last sync complete and is in sync with the
      content as it is now; prints each one's URL, priority and what it holds
  server-api.py point-delete BASE TOKEN NAME...
      removes the named points (their tokens stop working; check-ins no longer get them)
  server-api.py served OUT.json STEP_NAME FIRST_URL SECOND_URL
      the step's "served by" log line (the agent's sources of a transfer): FIRST_URL then
      SECOND_URL each served part of it, in that order, and the server (any other source) none;
      prints the line and each source's share
  server-api.py multicast-check BASE TOKEN RULE FILE OUT.json...
      the multicast sessions the rule made: exactly one, finished; its members are the machines
      of the deployments in OUT.json... (one each, nobody else), each reported done; each
      deployment's image step joined that session, logged "multicast: N blocks from the group"
      with N > 0 and did not fall back to HTTP; the sender sent about one copy of FILE (at
      least its size, under twice it: the passes again for datagrams a machine lost, never a
      copy for each machine); prints the session and each machine's line
  server-api.py multicast-cancel BASE TOKEN RULE
      cancels the rule's sessions still open (a scenario that failed leaves none behind)
  server-api.py check OUT.json succeeded|failed [STEP_NAME REASON_REGEX]
      checks the final state and the events: in order, one result event, every step ended;
      for failed, the named step ended failed with a message matching REASON_REGEX
"""
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def call(base, token, method, path, body=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        sys.exit(f"server-api: {method} {path}: HTTP {error.code}: {error.read().decode(errors='replace')[:2000]}")


def load(base, token, folder, rules):
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            body = open(os.path.join(folder, name), "rb").read()
            saved = call(base, token, "PUT", "/api/v1/admin/sequences/lab-" + name[:-5], body)
            for issue in saved.get("issues", []):
                print(f"server-api: lab-{name[:-5]}: {issue['severity']}: {issue['path']}: {issue['message']}", file=sys.stderr)
    call(base, token, "PUT", "/api/v1/admin/rules", json.load(open(rules)))


def deployment_of(base, token, mac):
    machines = call(base, token, "GET", "/api/v1/admin/machines")["machines"]
    ids = {m["id"] for m in machines if mac.lower() in (x.lower().replace("-", ":") for x in m["macs"])}
    # The list is paged (newest first): asked for each machine, its newest is on the first page.
    mine = [d for machine in ids for d in call(base, token, "GET", f"/api/v1/admin/deployments?machine={machine}")["deployments"]]
    return sorted(mine, key=lambda d: d["created"])[-1] if mine else None


def events(base, token, deployment_id):
    result, after = [], 0
    while True:
        page = call(base, token, "GET", f"/api/v1/admin/deployments/{deployment_id}/events?after={after}&limit=1000")
        result += page["events"]
        if not page["events"]:
            return result
        after = page["last"]


def alive(pid):
    if not pid:
        return True
    try:
        os.kill(int(pid), 0)
        return True
    except ProcessLookupError:
        return False


def stopped(console):
    """The boot environment printed its failure box: nothing more will come after a short grace."""
    try:
        return console and "IMPRINT STOPPED" in open(console, errors="replace").read()
    except FileNotFoundError:
        return False


def wait(base, token, mac, seconds, out, quiet, pid=None, console=None):
    deadline = time.time() + float(seconds)
    shown = None
    stop_at = None
    while time.time() < deadline:
        running = alive(pid)
        if stop_at is None and stopped(console):
            stop_at = time.time() + 15  # the agent's last events may still be on their way
        if stop_at and time.time() > stop_at:
            running = False
        d = deployment_of(base, token, mac)
        if d:
            line = f"{d['state']}: {d.get('currentStep') or '-'} {'' if d.get('percent') is None else '%.0f%%' % d['percent']}"
            if line != shown and not quiet:
                print(f"[server] deployment {d['id'][:8]} {line}", flush=True)
            shown = line
            if d["state"] in ("succeeded", "failed"):
                # The result event may land a moment after the state; take the events once more.
                time.sleep(1)
                json.dump({"deployment": call(base, token, "GET", f"/api/v1/admin/deployments/{d['id']}"),
                           "events": events(base, token, d["id"])}, open(out, "w"), indent=1)
                return 0
        if not running:
            print(f"server-api: the machine {'stopped with a failure' if stop_at else f'ended (process {pid})'} before its deployment did"
                  + (f" (see {console})" if console else ""), file=sys.stderr)
            break
        time.sleep(2)
    d = deployment_of(base, token, mac)
    json.dump({"deployment": d, "events": events(base, token, d["id"]) if d else []}, open(out, "w"), indent=1)
    print(f"server-api: no finished deployment for {mac} within {seconds} s (last: {shown})", file=sys.stderr)
    return 1


def until(base, token, mac, seconds, step_regex, occurrence, min_percent, pid=None, then=0.0):
    """The moment to cut the power: the OCCURRENCE-th start of a step whose name matches
    STEP_REGEX (a resumed run starts its interrupted step again), with MIN_PERCENT of it done."""
    deadline = time.time() + float(seconds)
    pattern = re.compile(step_regex)
    while time.time() < deadline and alive(pid):
        d = deployment_of(base, token, mac)
        if d and d["state"] in ("succeeded", "failed"):
            print(f"server-api: the deployment {d['state']} before start {occurrence} of {step_regex} was reached", file=sys.stderr)
            return 1
        evs = [e["event"] for e in events(base, token, d["id"])] if d else []
        starts = [i for i, e in enumerate(evs) if e["kind"] == "stepStarted" and pattern.search(e.get("name") or "")]
        if occurrence == "next":
            # The next start from now on: the one the run on the machine just booted makes.
            occurrence = len(starts) + 1
        if len(starts) >= int(occurrence):
            since = evs[starts[int(occurrence) - 1]:]
            # Percent of the data: "creating files" goes from 0 to 100 first, in no time.
            done = max([e.get("percent") or 0 for e in since
                        if e["kind"] == "progress" and not (e.get("message") or "").startswith("creating files")] or [0])
            if done >= float(min_percent):
                later = [e.get("name") for e in since if e["kind"] == "stepStarted"][1:]
                print(f"  start {occurrence} of \"{since[0].get('name')}\"" + (f", {done:.0f}% of its data written" if done else "")
                      + (f", the run already at \"{later[-1]}\"" if later else ""))
                if then:
                    time.sleep(then)
                    now = [e["event"] for e in events(base, token, d["id"])]
                    started = [e.get("name") for e in now if e["kind"] == "stepStarted"]
                    print(f"  {then:g} s later, the last step the server heard of: \"{started[-1] if started else '?'}\"")
                    # A cut meant for the write-out must not land after the step: the scenario
                    # would test something else (or nothing, were the deployment over).
                    ended = [e for e in now[len(evs) - len(since):] if e["kind"] == "stepEnded" and e.get("step") == since[0].get("step")]
                    if ended:
                        print(f"server-api: the step ended ({ended[0].get('status')}) within the {then:g} s meant to be"
                              " inside its write-out: the disk took the data faster than the scenario allows for", file=sys.stderr)
                        return 1
                return 0
        time.sleep(0.3)
    print(f"server-api: start {occurrence} of {step_regex} at {min_percent}% not reached within {seconds} s", file=sys.stderr)
    return 1


def job(base, token, answer, seconds=300):
    deadline = time.time() + seconds
    while time.time() < deadline:
        record = call(base, token, "GET", f"/api/v1/admin/library/jobs/{answer['id']}")
        if record["state"] in ("succeeded", "failed"):
            if record["state"] == "failed":
                sys.exit(f"server-api: library job {record['kind']} failed: {record.get('message')}")
            return record
        time.sleep(0.5)
    sys.exit(f"server-api: library job {answer['id']} did not end within {seconds} s")


def library(base, token, file, index, name):
    wim = job(base, token, call(base, token, "POST", "/api/v1/admin/library/wims", json.dumps({"file": file}).encode()))["result"]
    made = job(base, token, call(base, token, "POST", "/api/v1/admin/library/images",
                                 json.dumps({"wim": wim, "index": index, "image": name}).encode()))["result"]
    print(f"  library: {file} imported (WIM {wim}), image {index} extracted as {made}")


def library_use(base, token, name, path):
    deployment = json.load(open(path))["deployment"]
    detail = call(base, token, "GET", "/api/v1/admin/library/images/" + urllib.parse.quote(name))
    uses = [u for u in detail["deployments"] if u["deploymentID"] == deployment["id"]]
    if not uses:
        sys.exit(f"  PROBLEM: the library image {name!r} does not list deployment {deployment['id']}")
    version = next(v for v in detail["image"]["versions"] if v["version"] == uses[0]["version"])
    print(f"  deployment {deployment['id']} applied library image {name!r} version {uses[0]['version']} "
          f"({version['file']}, SHA-256 {version['sha256'][:16]}...)")
    return 0


def check(path, expected, step_name=None, reason=None):
    record = json.load(open(path))
    d, evs = record["deployment"], [e["event"] for e in record["events"]]
    problems = []
    if d["state"] != expected:
        problems.append(f"deployment state is {d['state']}, expected {expected} ({d.get('message')})")
    numbers = [e["sequence"] for e in evs]
    if numbers != list(range(1, len(evs) + 1)):
        problems.append("event sequence numbers are not 1...n")
    results = [e for e in evs if e["kind"] == "result"]
    if len(results) != 1:
        problems.append(f"{len(results)} result events, expected 1")
    elif results[0].get("status") != ("success" if expected == "succeeded" else "failed"):
        problems.append(f"the result event says {results[0].get('status')}")
    if evs and evs[-1]["kind"] != "result":
        problems.append(f"the last event is {evs[-1]['kind']}, not the result")
    started = {e["step"] for e in evs if e["kind"] == "stepStarted"}
    ended = {e["step"]: e for e in evs if e["kind"] == "stepEnded"}
    if started - set(ended):
        problems.append(f"steps started but never ended: {sorted(started - set(ended))}")
    if expected == "succeeded":
        bad = [f"{e['step']} {e.get('name')}: {e.get('status')}" for e in ended.values() if e.get("status") not in ("success", "skipped")]
        if bad:
            problems.append("steps not successful: " + "; ".join(bad))
    if step_name:
        failed = [e for e in ended.values() if e.get("name") == step_name and e.get("status") == "failed"]
        if not failed:
            problems.append(f"no stepEnded event says the step \"{step_name}\" failed")
        elif reason and not any(re.search(reason, e.get("message") or "", re.I) for e in failed + results):
            problems.append(f"the failure's message does not match /{reason}/: {failed[0].get('message')!r}")
        else:
            print(f"  step \"{step_name}\" failed: {failed[0].get('message')}")
    print(f"  deployment {d['id']}: {d['state']}, {len(evs)} events, last: {evs[-1]['kind'] if evs else '-'}"
          + (f", result: {results[0].get('message') or results[0].get('status')}" if results else ""))
    for p in problems:
        print("  PROBLEM: " + p, file=sys.stderr)
    return 1 if problems else 0


def point(base, token, name, url, subnet, priority, token_file):
    saved = call(base, token, "PUT", "/api/v1/admin/distribution-points/" + urllib.parse.quote(name),
                 {"url": url, "subnets": [subnet], "priority": int(priority)})
    if not saved.get("token"):
        sys.exit(f"server-api: the server issued no token for the distribution point {name} (it existed already?)")
    descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as f:
        f.write(saved["token"] + "\n")
    print(f"  distribution point {name}: {url}, subnet {subnet}, priority {priority} (token in {token_file})")


def points(base, token, names):
    listed = call(base, token, "GET", "/api/v1/admin/distribution-points")
    by_name = {p["name"]: p for p in listed["points"]}
    problems = []
    for name in names:
        p = by_name.get(name)
        if not p:
            problems.append(f"the server lists no distribution point {name}")
            continue
        status, sync = p.get("status") or {}, p["sync"]
        if not status:
            problems.append(f"{name} never reported")
        elif not status.get("complete") or status.get("errors"):
            problems.append(f"{name}: its last sync was incomplete: {status.get('errors')}")
        if not sync.get("inSync"):
            problems.append(f"{name} is not in sync: {sync}")
        else:
            print(f"  {name} ({p['url']}, priority {p['priority']}): in sync, {status.get('files')} files, "
                  f"version {(sync.get('heldVersion') or '?')[:12]}: {status.get('summary') or ''}")
    for text in problems:
        print("  PROBLEM: " + text, file=sys.stderr)
    return 1 if problems else 0


def point_delete(base, token, names):
    for name in names:
        call(base, token, "DELETE", "/api/v1/admin/distribution-points/" + urllib.parse.quote(name))
    print(f"  distribution points removed: {', '.join(names)}")


def mebibytes(number, unit):
    return float(number) * {"bytes": 1 / 1048576, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[unit]


def served(path, step_name, first, second):
    """The step's transfer came from FIRST, then SECOND (both with bytes), and from nothing else."""
    evs = [e["event"] for e in json.load(open(path))["events"]]
    steps = {e["step"] for e in evs if e["kind"] == "stepStarted" and e.get("name") == step_name}
    lines = [e.get("message") or "" for e in evs if e["kind"] == "log" and e.get("step") in steps]
    lines = [m for m in lines if "served by " in m]
    if not lines:
        sys.exit(f"  PROBLEM: no log line of the step \"{step_name}\" says which sources served it")
    line = lines[-1]
    print("  " + line)
    # "served by A: 1.5 MiB; then B: 6.8 MiB (A failed: ...)": the part before the failures.
    shares = line.split("served by ", 1)[1].split(" (", 1)[0].split("; then ")
    parsed = []
    for share in shares:
        found = re.fullmatch(r"(\S+): ([0-9.]+) (bytes|KiB|MiB|GiB)", share.strip())
        if not found:
            sys.exit(f"  PROBLEM: cannot read the share {share!r}")
        parsed.append((found.group(1), mebibytes(found.group(2), found.group(3))))
    problems = []
    sources = [url for url, _ in parsed]
    for url in sources:
        if not (url.startswith(first) or url.startswith(second)):
            problems.append(f"{url} served part of it: only the two points should have")
    ones = [next((url for url in sources if url.startswith(base)), None) for base in (first, second)]
    if not ones[0]:
        problems.append(f"the first point ({first}) served none of it: the cut came before its bytes flowed")
    if not ones[1]:
        problems.append(f"the second point ({second}) served none of it: the first one finished before it was stopped")
    if ones[0] and ones[1] and sources.index(ones[0]) > sources.index(ones[1]):
        problems.append("the second point served before the first")
    for url, size in parsed:
        print(f"  {url}: {size:.1f} MiB")
    for text in problems:
        print("  PROBLEM: " + text, file=sys.stderr)
    return 1 if problems else 0


def multicast_sessions(base, token, rule):
    return [s for s in call(base, token, "GET", "/api/v1/admin/multicast/sessions")["sessions"] if s.get("rule") == rule]


def multicast_check(base, token, rule, file, outs):
    size = os.path.getsize(file)
    problems = []
    sessions = multicast_sessions(base, token, rule)
    if len(sessions) != 1:
        sys.exit(f"  PROBLEM: the rule {rule} made {len(sessions)} multicast sessions, expected one: "
                 + "; ".join(f"{s['id']} {s['state']} ({s.get('reason')})" for s in sessions))
    session = call(base, token, "GET", f"/api/v1/admin/multicast/sessions/{sessions[0]['id']}")
    sid = session["id"]
    print(f"  session {sid} ({session['name']}): {session['state']} ({session.get('reason')}), "
          f"{session['group']}:{session['port']}, {session['rateMbps']:g} Mbit/s, manifest SHA-256 {(session.get('manifestSHA256') or '-')[:16]}...")
    if session["state"] != "finished":
        problems.append(f"the session is {session['state']}, not finished: {session.get('reason')}")
    records = [json.load(open(out)) for out in outs]
    deployments = {r["deployment"]["id"]: r["deployment"] for r in records}
    members = session.get("members") or []
    by_deployment = {m.get("deploymentID"): m for m in members}
    if len(members) != len(records) or set(by_deployment) != set(deployments):
        problems.append(f"the session's members are {[(m.get('machineID'), m.get('deploymentID')) for m in members]}, "
                        f"expected the {len(records)} deployments {sorted(deployments)}")
    for record in records:
        d = record["deployment"]
        m = by_deployment.get(d["id"])
        if m is None:
            continue
        if m.get("machineID") != d.get("machineId"):
            problems.append(f"member {m.get('receiver')} is machine {m.get('machineID')}, its deployment's machine is {d.get('machineId')}")
        if m.get("state") != "done":
            problems.append(f"machine {d.get('machineId')} is {m.get('state')} in the session, not done")
        lines = [e["event"].get("message") or "" for e in record["events"] if e["event"]["kind"] == "log"]
        joined = [l for l in lines if l.startswith(f"joining multicast session {sid} ")]
        summary = [l for l in lines if l.startswith("multicast: ") and " blocks from the group" in l]
        fell = [l for l in lines if l.startswith("multicast") and any(
            words in l for words in ("fell back", "the rest comes by HTTP", "cannot be joined", "by HTTP instead"))]
        if not joined:
            problems.append(f"deployment {d['id']} never joined session {sid}")
        if not summary:
            problems.append(f"deployment {d['id']} logged no \"multicast: N blocks from the group\" line")
            continue
        found = re.match(r"multicast: (\d+) blocks from the group, (\d+) by HTTP, (\d+) completed by HTTP", summary[-1])
        if not found:
            problems.append(f"deployment {d['id']}: cannot read {summary[-1]!r}")
            continue
        group, http, repaired = map(int, found.groups())
        print(f"  machine {d.get('machineId')} (receiver {m.get('receiver')}, {m.get('state')}): {summary[-1]}")
        if group == 0:
            problems.append(f"deployment {d['id']} received no block from the group")
        if fell:
            problems.append(f"deployment {d['id']} fell back to HTTP: {fell[0]}")
    sent = int(session.get("bytesSent") or 0)
    print(f"  the sender sent {sent} bytes in {session.get('passes')} passes: {sent / size:.2f} copies of the "
          f"{size}-byte file, for {len(records)} machines")
    if sent < size:
        problems.append(f"the sender sent {sent} bytes, less than the file's {size}")
    if sent >= 2 * size:
        problems.append(f"the sender sent {sent / size:.2f} copies of the file: about one was expected, not one a machine")
    for text in problems:
        print("  PROBLEM: " + text, file=sys.stderr)
    return 1 if problems else 0


def multicast_cancel(base, token, rule):
    for session in multicast_sessions(base, token, rule):
        if session["state"] in ("waiting", "running"):
            call(base, token, "POST", f"/api/v1/admin/multicast/sessions/{session['id']}/cancel", b"")
            print(f"  multicast session {session['id']} ({session['name']}) was still {session['state']}: cancelled")


command = sys.argv[1]
if command == "load":
    load(*sys.argv[2:6])
elif command == "library":
    library(*sys.argv[2:7])
elif command == "library-use":
    sys.exit(library_use(*sys.argv[2:6]))
elif command == "wait":
    pid = sys.argv[sys.argv.index("--while-pid") + 1] if "--while-pid" in sys.argv else None
    console = sys.argv[sys.argv.index("--console") + 1] if "--console" in sys.argv else None
    sys.exit(wait(*sys.argv[2:7], quiet="--quiet" in sys.argv, pid=pid, console=console))
elif command == "until":
    pid = sys.argv[sys.argv.index("--while-pid") + 1] if "--while-pid" in sys.argv else None
    then = float(sys.argv[sys.argv.index("--then") + 1]) if "--then" in sys.argv else 0.0
    sys.exit(until(*sys.argv[2:9], pid=pid, then=then))
elif command == "point":
    point(*sys.argv[2:9])
elif command == "points":
    sys.exit(points(sys.argv[2], sys.argv[3], sys.argv[4:]))
elif command == "point-delete":
    point_delete(sys.argv[2], sys.argv[3], sys.argv[4:])
elif command == "served":
    sys.exit(served(*sys.argv[2:6]))
elif command == "multicast-check":
    sys.exit(multicast_check(*sys.argv[2:6], sys.argv[6:]))
elif command == "multicast-cancel":
    multicast_cancel(*sys.argv[2:5])
elif command == "check":
    sys.exit(check(*sys.argv[2:]))
else:
    sys.exit(__doc__)
