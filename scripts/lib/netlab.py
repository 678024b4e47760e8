#!/usr/bin/env python3
"""The multicast lab without VMs: network namespaces on one bridge (scripts/netlab, Benchmarks/multicast.py).

    imc-hub   a namespace holding the bridge imc-br (multicast snooping off: a group is flooded to
              every port, as on a switch without IGMP snooping)
    imc-snd   the sender: eth0 10.78.0.1/24, its egress limited with tc (tbf, --rate), so the
              multicast carousel and every HTTP answer of its nginx share one limited link
    imc-rNN   receiver NN (1-based): eth0 10.78.0.(10+NN)/24

Every namespace has lo up and a route 224.0.0.0/4 dev eth0. All traffic stays inside these
namespaces. Everything is named with the prefix "imc-", so `netlab.py down` (or Lab.down(), or
cleanup_leftovers()) removes what a crashed run left: its processes (by id, from `ip netns pids`
of the lab's own namespaces) and the namespaces (their veths go with them).

Impairments, each undone by the next call or by down():
    loss(n, percent)       packet loss on receiver n's way in: netem on the bridge port's egress
                           where the kernel has sch_netem, otherwise an nftables netdev ingress rule
                           in the receiver (numgen random); this CI kernel has no sch_netem
    block_multicast(ns)    the bridge drops IPv4 multicast (224.0.0.0/4) to the given receivers
                           (all when None): an nftables bridge-family rule in imc-hub
Both nftables paths need the `nft` binary (Debian's nftables package). One lab at a time: up()
takes the lock /tmp/imc-netlab.lock (scripts/netlab and Benchmarks/multicast.py share the names).

Also here, for both: make_tree() and capture() (the generated image), Nginx (Debian's nginx in
the sender's namespace, Range works), Session (one `imprint multicast send` and its `receive`s,
each a Child reaped with wait4: end time, exit status, peak RSS, CPU), make_manifest().

    python3 scripts/lib/netlab.py up [N] [--rate 100mbit]   # build, leave it up
    python3 scripts/lib/netlab.py down                      # remove everything named imc-* (and /tmp/imc-netlab-*, /tmp/imc-bench-*)
    python3 scripts/lib/netlab.py selftest [N]              # prove it: one group to all N, the tc limit holds
"""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PREFIX = "imc-"
HUB = PREFIX + "hub"
SENDER = PREFIX + "snd"
BRIDGE = PREFIX + "br"
SUBNET = "10.78.0"
SENDER_ADDRESS = f"{SUBNET}.1"
GROUP = "239.255.77.1"
LOCK = "/tmp/imc-netlab.lock"


def receiver_ns(n):
    return f"{PREFIX}r{n:02d}"


def receiver_address(n):
    return f"{SUBNET}.{10 + n}"


def port_name(n):
    """Receiver n's port on the bridge (in imc-hub)."""
    return f"r{n:02d}"


def run(cmd, check=True, quiet=False):
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
    return result


class LabError(Exception):
    pass


def in_ns(ns, cmd):
    return ["ip", "netns", "exec", ns, *cmd]


def lab_namespaces():
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0].startswith(PREFIX)]


def cleanup_leftovers():
    """Kills every process in an imc-* namespace (by id) and removes the namespaces."""
    spaces = lab_namespaces()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = False
        for ns in spaces:
            for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
                try:
                    os.kill(int(pid), sig)
                    alive = True
                except (ProcessLookupError, ValueError):
                    pass
        if not alive:
            break
        time.sleep(0.5)
    for ns in spaces:
        run(["ip", "netns", "del", ns], check=False)
    return spaces


def netem_available():
    """Whether tc can make a netem qdisc here (tried on a dummy veth in a throwaway namespace)."""
    ns = PREFIX + "probe"
    run(["ip", "netns", "add", ns], check=False)
    try:
        run(["ip", "-n", ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1"])
        return run(["tc", "-n", ns, "qdisc", "add", "dev", "p0", "root", "netem", "loss", "1%"], check=False).returncode == 0
    finally:
        run(["ip", "netns", "del", ns], check=False)


class Lab:
    def __init__(self, receivers=20, rate="100mbit", group=GROUP):
        self.receivers = receivers
        self.rate = rate
        self.group = group
        self.losses = {}
        self.blocked = None
        self._netem = None

    # MARK: - Building and removing

    def up(self):
        for tool in ("ip", "tc"):
            if not shutil.which(tool):
                raise LabError(f"{tool} is missing (apt-get install iproute2)")
        if os.geteuid() != 0:
            raise LabError("the network lab needs root (network namespaces)")
        import fcntl
        lock = open(LOCK, "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._lock = lock
        except OSError:
            lock.close()
            raise LabError(f"another run holds {LOCK}: the imc-* namespaces are in use (scripts/netlab or Benchmarks/multicast.py)")
        leftovers = cleanup_leftovers()
        if leftovers:
            print(f"netlab: removed leftovers of an earlier run: {' '.join(leftovers)}", file=sys.stderr)
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def _build(self):
        run(["ip", "netns", "add", HUB])
        run(["ip", "-n", HUB, "link", "set", "lo", "up"])
        run(["ip", "-n", HUB, "link", "add", BRIDGE, "type", "bridge", "mcast_snooping", "0", "stp_state", "0"])
        run(["ip", "-n", HUB, "link", "set", BRIDGE, "up"])
        self._attach(SENDER, "snd", SENDER_ADDRESS)
        # The sender's link: every byte it sends (multicast and HTTP answers) through one token
        # bucket. A queue of ~50 ms at the rate; a UDP sender then blocks on its socket buffer
        # rather than seeing its datagrams dropped.
        run(["tc", "-n", SENDER, "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", self.rate,
             "burst", "32kb", "latency", "50ms"])
        for n in range(1, self.receivers + 1):
            self._attach(receiver_ns(n), port_name(n), receiver_address(n))

    def _attach(self, ns, port, address):
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", HUB, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(["ip", "-n", HUB, "link", "set", port, "master", BRIDGE])
        run(["ip", "-n", HUB, "link", "set", port, "up"])
        run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])

    def down(self):
        """Removes the lab (only when this one built it: holding the lock)."""
        if getattr(self, "_lock", None) is None:
            return
        cleanup_leftovers()
        self._lock.close()
        self._lock = None

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()

    # MARK: - Impairments

    def loss(self, n, percent):
        """Drops `percent` % of the packets reaching receiver n (0 removes the loss)."""
        if self._netem is None:
            self._netem = netem_available()
        port, ns = port_name(n), receiver_ns(n)
        if self._netem:
            run(["tc", "-n", HUB, "qdisc", "del", "dev", port, "root"], check=False)
            if percent:
                run(["tc", "-n", HUB, "qdisc", "add", "dev", port, "root", "netem", "loss", f"{percent}%"])
        else:
            self._need_nft()
            run(in_ns(ns, ["nft", "delete", "table", "netdev", "imc_loss"]), check=False)
            if percent:
                nft(ns, f"""table netdev imc_loss {{
                    chain ingress {{ type filter hook ingress device eth0 priority 0; policy accept;
                        numgen random mod 1000 < {int(percent * 10)} counter drop
                }}
                }}""")
        self.losses[n] = percent

    def loss_method(self):
        if self._netem is None:
            self._netem = netem_available()
        return "netem" if self._netem else "nftables (numgen random; no sch_netem in this kernel)"

    def loss_dropped(self, n):
        """Packets dropped so far by receiver n's nftables loss rule (None with netem)."""
        if self._netem:
            return None
        out = run(in_ns(receiver_ns(n), ["nft", "-j", "list", "table", "netdev", "imc_loss"]), check=False).stdout
        try:
            for item in json.loads(out)["nftables"]:
                for expr in item.get("rule", {}).get("expr", []):
                    if "counter" in expr:
                        return expr["counter"]["packets"]
        except (ValueError, KeyError):
            pass
        return None

    def block_multicast(self, receivers=None):
        """The bridge drops IPv4 multicast towards the given receivers (every port when None)."""
        self._need_nft()
        self.unblock_multicast()
        if receivers is None:
            match = ""
        else:
            match = "oifname { " + ", ".join(f'"{port_name(n)}"' for n in receivers) + " } "
        nft(HUB, f"""table bridge imc_block {{
            chain forward {{ type filter hook forward priority 0; policy accept;
                {match}ip daddr 224.0.0.0/4 counter drop
            }}
        }}""")
        self.blocked = receivers if receivers is not None else "all"

    def unblock_multicast(self):
        run(in_ns(HUB, ["nft", "delete", "table", "bridge", "imc_block"]), check=False)
        self.blocked = None

    def blocked_packets(self):
        out = run(in_ns(HUB, ["nft", "-j", "list", "table", "bridge", "imc_block"]), check=False).stdout
        try:
            for item in json.loads(out)["nftables"]:
                for expr in item.get("rule", {}).get("expr", []):
                    if "counter" in expr:
                        return expr["counter"]["packets"]
        except (ValueError, KeyError):
            pass
        return 0

    @staticmethod
    def _need_nft():
        if not shutil.which("nft"):
            raise LabError("nft is missing (apt-get install nftables): the lab's loss and multicast block use nftables")

    # MARK: - Counters and processes

    def tx_bytes(self, ns=SENDER, dev="eth0"):
        return int(run(["ip", "netns", "exec", ns, "cat", f"/sys/class/net/{dev}/statistics/tx_bytes"]).stdout)

    def rx_bytes(self, n):
        return int(run(["ip", "netns", "exec", receiver_ns(n), "cat", "/sys/class/net/eth0/statistics/rx_bytes"]).stdout)

    def udp_drops(self, n):
        """Datagrams receiver n's kernel dropped because a socket's buffer was full (its
        namespace's UDP RcvbufErrors): a receiver too slow to keep up, not the network."""
        lines = [l.split() for l in run(in_ns(receiver_ns(n), ["cat", "/proc/net/snmp"])).stdout.splitlines() if l.startswith("Udp:")]
        return int(dict(zip(lines[0], lines[1]))["RcvbufErrors"])

    def popen(self, ns, cmd, **kwargs):
        return subprocess.Popen(in_ns(ns, cmd), **kwargs)


# MARK: - A generated tree to capture

WORDS = (b"the of and to in is for on that with as by this it be are from at or an image apply "
         b"Windows System32 drivers config registry boot manager volume partition sector cluster "
         b"stream blob chunk header resource lookup table metadata security descriptor reparse").split()


def make_tree(root, size, seed=19):
    """About `size` bytes of files under root, the same for the same seed: text-like (compresses
    about 3:1), incompressible and zero-filled files in log-uniform sizes (0 to 8 MiB), nested
    folders, an empty file, a hard link, a relative symlink and a non-ASCII name. Returns (files, bytes)."""
    import random
    rng = random.Random(seed)
    text = bytearray()
    while len(text) < (8 << 20) + 65536:
        text += b" ".join(rng.choice(WORDS) for _ in range(4096)) + b"\n"
    noise = rng.randbytes((8 << 20) + 65536)
    folders = [""]
    total = files = 0
    os.makedirs(root, exist_ok=True)
    while total < size:
        if rng.random() < 0.15 or len(folders) < 4:
            parent = rng.choice(folders)
            folder = os.path.join(parent, f"dir{len(folders):03d}")
            os.makedirs(os.path.join(root, folder), exist_ok=True)
            folders.append(folder)
        length = min(int(math.exp(rng.uniform(0, math.log(8 << 20)))), size - total)
        kind = rng.random()
        offset = rng.randrange(65536)
        header = rng.randbytes(16)
        if kind < 0.45:
            data = header + bytes(text[offset:offset + length])
        elif kind < 0.9:
            data = header + bytes(noise[offset:offset + length])
        else:
            data = bytes(length)
        name = os.path.join(root, rng.choice(folders), f"file{files:05d}.{rng.choice(['dll', 'sys', 'txt', 'dat', 'exe'])}")
        with open(name, "wb") as f:
            f.write(data)
        total += len(data)
        files += 1
    first = os.path.join(root, folders[1])
    open(os.path.join(first, "empty.txt"), "wb").close()
    with open(os.path.join(first, "Résumé — ünïcode.txt"), "wb") as f:
        f.write(b"non-ASCII name\n")
    with open(os.path.join(first, "linked.txt"), "wb") as f:
        f.write(b"two names, one file\n")
    os.link(os.path.join(first, "linked.txt"), os.path.join(root, "hardlink.txt"))
    os.symlink(os.path.join(folders[1], "linked.txt"), os.path.join(root, "symlink.txt"))
    return files + 3, total


def capture(tree, wim, compress="none", pipable=False, name="Lab"):
    """wimlib-imagex capture of tree into wim (--compress none|XPRESS|LZX)."""
    if not shutil.which("wimlib-imagex"):
        raise LabError("wimlib-imagex is missing (apt-get install wimtools)")
    cmd = ["wimlib-imagex", "capture", tree, wim, name, f"--compress={compress}", f"--threads={os.cpu_count() or 1}"]
    if pipable:
        cmd.append("--pipable")
    run(cmd)


# MARK: - nginx in the sender

NGINX_CONF = """# scripts/lib/netlab.py: the image directory over HTTP in the sender's namespace
daemon off;
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 256; }}
http {{
    default_type application/octet-stream;
    sendfile on;
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp/body; proxy_temp_path {dir}/tmp/proxy; fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi; scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen {address}:{port};
        location / {{ root {root}; }}
    }}
}}
"""


class Nginx:
    """Debian's nginx in the sender's namespace serving ROOT at http://10.78.0.1:PORT/ (Range works)."""

    def __init__(self, root, scratch, port=8080, ns=SENDER, address=SENDER_ADDRESS):
        if not shutil.which("nginx"):
            raise LabError("nginx is missing (apt-get install nginx)")
        self.dir = os.path.join(scratch, "nginx")
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=self.dir, root=os.path.abspath(root), address=address, port=port))
        self.base = f"http://{address}:{port}"
        self.process = subprocess.Popen(in_ns(ns, ["nginx", "-p", self.dir, "-c", conf, "-e", os.path.join(self.dir, "error.log")]),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = f"import socket; socket.create_connection(('{address}', {port}), timeout=1).close()"
        for _ in range(100):
            if self.process.poll() is not None:
                break
            if subprocess.run(in_ns(ns, ["python3", "-c", probe]), stderr=subprocess.DEVNULL).returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        log = open(os.path.join(self.dir, "error.log"), errors="replace").read() if os.path.exists(os.path.join(self.dir, "error.log")) else ""
        raise LabError(f"nginx did not answer on {address}:{port}: {log[-1000:]}")

    def url(self, name):
        return f"{self.base}/{name}"

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def nft(ns, ruleset):
    with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as f:
        f.write(ruleset)
    try:
        run(in_ns(ns, ["nft", "-f", f.name]))
    finally:
        os.unlink(f.name)


# MARK: - imprint multicast sessions

class Child:
    """A command in a namespace, reaped by wait4 on a thread of its own: when it ended, its exit
    status, peak RSS (MiB) and CPU seconds (from the kernel's rusage; `ip netns exec` execs the
    command, so the pid is the command's own)."""

    def __init__(self, ns, cmd, log, env=None):
        import threading
        self.cmd = cmd
        self.log = log
        self.started = time.monotonic()
        self.ended = None
        self.returncode = None
        self.peak_mib = None
        self.cpu = None
        with open(log, "wb") as out:
            self.process = subprocess.Popen(in_ns(ns, cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                            env=env, start_new_session=True)
        self.pid = self.process.pid
        self._thread = threading.Thread(target=self._reap, daemon=True)
        self._thread.start()

    def _reap(self):
        _, status, usage = os.wait4(self.pid, 0)
        self.ended = time.monotonic()
        self.returncode = os.waitstatus_to_exitcode(status)
        self.process.returncode = self.returncode
        self.peak_mib = usage.ru_maxrss / 1024
        self.cpu = usage.ru_utime + usage.ru_stime
        self.cpu_user, self.cpu_system = usage.ru_utime, usage.ru_stime

    @property
    def running(self):
        return self.ended is None

    @property
    def seconds(self):
        return (self.ended - self.started) if self.ended else None

    def signal(self, sig):
        if self.running:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout=None):
        self._thread.join(timeout)
        return not self.running

    def output(self, limit=3000):
        try:
            return open(self.log, errors="replace").read()[-limit:]
        except OSError:
            return ""


def has_multicast(binary):
    """Whether the binary has `imprint multicast send/receive/manifest` (an older one answers
    `multicast --help` with its top-level help, and status 0)."""
    if not os.access(binary, os.X_OK):
        return False
    result = subprocess.run([binary, "multicast", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return result.returncode == 0 and all(word in result.stdout for word in ("manifest", "send", "receive"))


def imprint_binary(prefer_release=False):
    """$IMPRINT_BIN, else .build/debug/imprint (with prefer_release: .build/release/imprint when
    that one has the multicast commands)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    binary = os.environ.get("IMPRINT_BIN") or os.path.join(root, ".build", "debug", "imprint")
    release = os.path.join(root, ".build", "release", "imprint")
    if prefer_release and not os.environ.get("IMPRINT_BIN") and has_multicast(release):
        binary = release
    if not os.access(binary, os.X_OK):
        raise LabError(f"{binary} is missing: build it first (swift build), or set IMPRINT_BIN")
    if not has_multicast(binary):
        raise LabError(f"{binary} has no `multicast` command")
    return binary


def make_manifest(binary, image, output):
    """`imprint multicast manifest`: the manifest file and the SHA-256 it prints."""
    import re
    result = run([binary, "multicast", "manifest", image, "--output", output])
    found = re.findall(r"\b[0-9a-f]{64}\b", result.stdout + result.stderr)
    if not found:
        raise LabError(f"imprint multicast manifest printed no SHA-256: {result.stdout} {result.stderr}")
    import hashlib
    actual = hashlib.sha256(open(output, "rb").read()).hexdigest()
    if found[-1] != actual:
        raise LabError(f"imprint multicast manifest printed {found[-1]} but the file's SHA-256 is {actual}")
    return found[-1]


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def find_value(stats, *words, kind=None):
    """The first value in a (nested) JSON object whose key contains every one of `words`
    (case-insensitive), of type `kind` when given: the stats files are read by meaning."""
    if not isinstance(stats, dict):
        return None
    for key, value in stats.items():
        if all(w in key.lower() for w in words) and (kind is None or (isinstance(value, kind) and not (kind is int and isinstance(value, bool)))):
            return value
    for value in stats.values():
        if isinstance(value, dict):
            found = find_value(value, *words, kind=kind)
            if found is not None:
                return found
    return None


def fell_back(stats):
    for words in (("fell",), ("fallback",), ("fall",)):
        value = find_value(stats, *words, kind=bool)
        if value is not None:
            return value
    return None


def http_bytes(stats):
    return find_value(stats, "bytes", "http", kind=int)


def multicast_bytes(stats):
    return find_value(stats, "bytes", "multicast", kind=int)


class Session:
    """One `imprint multicast send` in the sender's namespace and its receivers (`imprint
    multicast receive --apply DIR --image 1`), each in its own receiver namespace."""

    def __init__(self, lab, binary, image, manifest_url, manifest_sha256, source_url, scratch, name,
                 rate_bits, port, min_receivers=1, start_after=None, exit_when_idle=None, wait_seconds=None,
                 send_extra=(), receive_extra=()):
        import secrets
        self.lab, self.binary, self.image = lab, binary, image
        self.manifest_url, self.manifest_sha256, self.source_url = manifest_url, manifest_sha256, source_url
        self.dir = os.path.join(scratch, name)
        os.makedirs(self.dir, exist_ok=True)
        self.name = name
        self.session = secrets.token_hex(8)
        self.port = port
        self.wait_seconds = wait_seconds
        self.receive_extra = list(receive_extra)
        self.receivers = {}
        self.status_file = os.path.join(self.dir, "sender-status.json")
        self.size = os.path.getsize(image)
        cmd = [binary, "multicast", "send", image, "--group", lab.group, "--port", str(port),
               "--rate", str(rate_bits), "--interface-address", SENDER_ADDRESS,
               "--min-receivers", str(min_receivers), "--session", self.session, "--status-file", self.status_file]
        if start_after is not None:
            cmd += ["--start-after", str(start_after)]
        if exit_when_idle is not None:
            cmd += ["--exit-when-idle", str(exit_when_idle)]
        if os.path.exists(image + ".manifest"):
            cmd += ["--manifest", image + ".manifest"]
        cmd += list(send_extra)
        self.tx_base = lab.tx_bytes()
        self.sender = Child(SENDER, cmd, os.path.join(self.dir, "sender.log"))
        self.began = time.monotonic()

    def receive(self, n, apply=True):
        target = os.path.join(self.dir, f"r{n:02d}")
        stats = os.path.join(self.dir, f"r{n:02d}.stats.json")
        cmd = [self.binary, "multicast", "receive", "--group", self.lab.group, "--port", str(self.port),
               "--session", self.session, "--source", self.source_url, "--manifest", self.manifest_url,
               "--manifest-sha256", self.manifest_sha256, "--receiver", f"{0x1900 + n:016x}", "--stats-file", stats]
        cmd += ["--apply", target, "--image", "1"] if apply else ["--write", target + ".img"]
        if self.wait_seconds is not None:
            cmd += ["--wait-seconds", str(self.wait_seconds)]
        cmd += self.receive_extra
        child = Child(receiver_ns(n), cmd, os.path.join(self.dir, f"r{n:02d}.log"))
        child.n, child.target, child.stats_file = n, target, stats
        self.receivers[n] = child
        return child

    def sent_fraction(self):
        """How much of the file the sender has multicast so far: its status file's bytesSent
        (written once a second), plus what its link carried since that number last changed."""
        status = self.status() or {}
        sent = status.get("bytesSent") or 0
        if not sent:
            return 0.0
        if sent != getattr(self, "_last_sent", None):
            self._last_sent, self._last_tx = sent, self.lab.tx_bytes()
        return (sent + self.lab.tx_bytes() - self._last_tx) / self.size

    def status(self):
        return read_json(self.status_file)

    def wait(self, receivers, timeout, tick=None):
        """Waits until every child in `receivers` (None: every receiver started so far, those
        that tick() starts included) has ended; tick() is called every 50 ms. False on timeout
        (the rest are killed)."""
        deadline = time.monotonic() + timeout
        everyone = receivers is None
        while any(c.running for c in (list(self.receivers.values()) if everyone else receivers)):
            if everyone:
                receivers = list(self.receivers.values())
            if time.monotonic() > deadline:
                for c in receivers:
                    c.signal(signal.SIGKILL)
                for c in receivers:
                    c.wait(5)
                return False
            if tick:
                tick()
            time.sleep(0.05)
        return True

    def stop(self):
        """Stops the sender (SIGTERM, then SIGKILL after 5 s) and any receiver still running."""
        for c in [self.sender, *self.receivers.values()]:
            c.signal(signal.SIGTERM)
        for c in [self.sender, *self.receivers.values()]:
            if not c.wait(5):
                c.signal(signal.SIGKILL)
                c.wait(5)

    def stats(self, n):
        return read_json(self.receivers[n].stats_file)


# MARK: - Self test: a tiny multicast sender and receivers in Python

PROBE_SENDER = r"""
import socket, sys, time
group, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[4]))
payload = bytearray(1440)
sent = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    payload[0:8] = sent.to_bytes(8, "big")
    s.sendto(payload, (group, port))
    sent += 1
for _ in range(20):
    s.sendto(b"END", (group, port))
    time.sleep(0.01)
print(sent)
"""

PROBE_RECEIVER = r"""
import json, socket, struct, sys, time
group, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("", port))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton("0.0.0.0")))
s.settimeout(float(sys.argv[3]))
print("joined", flush=True)
count = nbytes = 0
first = last = None
try:
    while True:
        data = s.recv(2048)
        if data == b"END":
            break
        now = time.monotonic()
        first = first or now
        last = now
        count += 1
        nbytes += len(data)
except socket.timeout:
    pass
print(json.dumps({"datagrams": count, "bytes": nbytes, "seconds": (last - first) if first else 0}))
"""


def selftest(receivers=20, rate="100mbit", seconds=3.0):
    """One group from the sender to every receiver; the rate each one sees, against the tc limit."""
    ok = True
    with Lab(receivers, rate) as lab:
        procs = [lab.popen(receiver_ns(n), ["python3", "-c", PROBE_RECEIVER, GROUP, "5000", "3"],
                           stdout=subprocess.PIPE, text=True) for n in range(1, receivers + 1)]
        for p in procs:
            p.stdout.readline()
        tx0 = lab.tx_bytes()
        began = time.monotonic()
        sender = lab.popen(SENDER, ["python3", "-c", PROBE_SENDER, GROUP, "5000", str(seconds), SENDER_ADDRESS],
                           stdout=subprocess.PIPE, text=True)
        sent = int(sender.communicate()[0])
        elapsed = time.monotonic() - began
        tx = lab.tx_bytes() - tx0
        results = [json.loads(p.communicate()[0].splitlines()[-1]) for p in procs]
        limit = parse_rate(rate)
        link = tx * 8 / elapsed
        print(f"sender: {sent} datagrams written in {elapsed:.2f} s; eth0 sent {tx / 1e6:.1f} MB = {link / 1e6:.1f} Mbit/s "
              f"(tc limit {limit / 1e6:.0f} Mbit/s)")
        if link > limit * 1.05:
            print("FAIL: the sender's link went faster than its tc limit")
            ok = False
        rates = []
        for n, r in enumerate(results, 1):
            got = r["bytes"] * 8 / r["seconds"] / 1e6 if r["seconds"] else 0
            rates.append(got)
            if r["datagrams"] < sent * 0.95:
                print(f"FAIL: receiver {n} got {r['datagrams']} of {sent} datagrams")
                ok = False
        print(f"{receivers} receivers: each got {min(r['datagrams'] for r in results)}-{max(r['datagrams'] for r in results)} "
              f"of {sent} datagrams, {min(rates):.1f}-{max(rates):.1f} Mbit/s of payload")
        # The same with the multicast blocked at the bridge for receiver 1: it gets nothing.
        lab.block_multicast([1])
        probe = lab.popen(receiver_ns(1), ["python3", "-c", PROBE_RECEIVER, GROUP, "5001", "1"], stdout=subprocess.PIPE, text=True)
        other = lab.popen(receiver_ns(2), ["python3", "-c", PROBE_RECEIVER, GROUP, "5001", "1"], stdout=subprocess.PIPE, text=True)
        probe.stdout.readline(), other.stdout.readline()
        lab.popen(SENDER, ["python3", "-c", PROBE_SENDER, GROUP, "5001", "0.5", SENDER_ADDRESS], stdout=subprocess.DEVNULL).wait()
        blocked, passed = json.loads(probe.communicate()[0].splitlines()[-1]), json.loads(other.communicate()[0].splitlines()[-1])
        print(f"multicast blocked for receiver 1: it got {blocked['datagrams']} datagrams, receiver 2 {passed['datagrams']}")
        if blocked["datagrams"] or not passed["datagrams"]:
            print("FAIL: the block did not hold")
            ok = False
        lab.unblock_multicast()
        lab.loss(3, 5)
        probe = lab.popen(receiver_ns(3), ["python3", "-c", PROBE_RECEIVER, GROUP, "5002", "1"], stdout=subprocess.PIPE, text=True)
        probe.stdout.readline()
        sender = lab.popen(SENDER, ["python3", "-c", PROBE_SENDER, GROUP, "5002", "1", SENDER_ADDRESS], stdout=subprocess.PIPE, text=True)
        sent = int(sender.communicate()[0])
        lossy = json.loads(probe.communicate()[0].splitlines()[-1])
        lost = 1 - lossy["datagrams"] / sent
        print(f"5% loss on receiver 3 ({lab.loss_method()}): it got {lossy['datagrams']} of {sent} ({lost:.1%} lost)")
        if not 0.02 < lost < 0.09:
            print("FAIL: the loss is not about 5%")
            ok = False
    print("PASS" if ok else "FAIL")
    return ok


def parse_rate(text):
    text = text.lower()
    for suffix, factor in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("g", 1e9), ("m", 1e6), ("k", 1e3)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def main(argv):
    if not argv or argv[0] not in ("up", "down", "selftest"):
        print(__doc__)
        return 2
    rate = "100mbit"
    if "--rate" in argv:
        i = argv.index("--rate")
        rate = argv[i + 1]
        del argv[i : i + 2]
    count = int(argv[1]) if len(argv) > 1 else 20
    if argv[0] == "down":
        import fcntl
        import glob
        with open(LOCK, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                print(f"a run holds {LOCK}: removing its namespaces anyway, not its scratch folders")
                lock = None
            removed = cleanup_leftovers()
            if lock:
                for scratch in glob.glob("/tmp/imc-netlab-*") + glob.glob("/tmp/imc-bench-*"):
                    shutil.rmtree(scratch, ignore_errors=True)
                    removed.append(scratch)
        print("removed: " + (" ".join(removed) or "nothing"))
        return 0
    if argv[0] == "up":
        Lab(count, rate).up()
        print(f"up: {HUB} (bridge {BRIDGE}), {SENDER} {SENDER_ADDRESS} limited to {rate}, {count} receivers {receiver_ns(1)}..")
        return 0
    return 0 if selftest(count, rate) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
