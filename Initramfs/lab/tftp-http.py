#!/usr/bin/env python3
"""A read-only TFTP server in front of imprint-server, for boot loaders that speak only TFTP.

    tftp-http.py --bind ADDR --root DIR --http BASE

Debian 12's signed network GRUB (grubnetx64.efi.signed) carries the tftp module but not http, and
under Secure Boot it may not load modules, so it can fetch nothing over HTTP. This answers its
TFTP requests: a name found under DIR (shimx64.efi, grubx64.efi, grub/grub.cfg) is served from
there; any other name is fetched from BASE/NAME over HTTP, so the server's per-machine GRUB
script (/boot/MAC.grub, deploy once) and its boot files (/boot/files/vmlinuz, initrd) come live
from imprint-server. RFC 1350 with the blksize, tsize (RFC 2347-2349) and windowsize (RFC 7440)
options, one thread per transfer, retransmission after a second. Names holding ".." are refused.
"""
import argparse
import os
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

RRQ, DATA, ACK, ERROR, OACK = 1, 3, 4, 5, 6
NOT_FOUND, ILLEGAL, ACCESS = 1, 4, 2


def log(message):
    sys.stdout.write(time.strftime("%H:%M:%S ") + message + "\n")
    sys.stdout.flush()


def error_packet(code, text):
    return struct.pack("!HH", ERROR, code) + text.encode()[:200] + b"\0"


class Server:
    def __init__(self, root, base):
        self.root = os.path.realpath(root)
        self.base = base.rstrip("/")

    def content(self, name):
        """(bytes, None) or (None, (code, message))."""
        relative = name.lstrip("/")
        if not relative or ".." in relative.split("/") or "\\" in relative:
            return None, (ACCESS, "refused name")
        local = os.path.realpath(os.path.join(self.root, relative))
        if local.startswith(self.root + os.sep) and os.path.isfile(local):
            with open(local, "rb") as f:
                return f.read(), None
        url = self.base + "/" + urllib.parse.quote(relative, safe="/:")
        try:
            with urllib.request.urlopen(url, timeout=30) as answer:
                return answer.read(), None
        except urllib.error.HTTPError as e:
            return None, (NOT_FOUND, f"{url}: HTTP {e.code}")
        except OSError as e:
            return None, (NOT_FOUND, f"{url}: {e}")

    def transfer(self, client, name, options, bind):
        data, failure = self.content(name)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((bind, 0))
        sock.settimeout(1.0)
        try:
            if failure:
                log(f"{client[0]} {name}: {failure[1]}")
                sock.sendto(error_packet(*failure), client)
                return
            accepted = {}

            def negotiated(name, default, low, high):
                """The client's value of a numeric option, within what this server takes (RFC 2347)."""
                try:
                    value = max(low, min(int(options[name]), high))
                except (KeyError, ValueError):
                    return default
                accepted[name] = str(value)
                return value

            blksize = negotiated("blksize", 512, 8, 1468)
            if "tsize" in options:
                accepted["tsize"] = str(len(data))
            window = negotiated("windowsize", 1, 1, 64)
            started = time.monotonic()
            if accepted:
                oack = struct.pack("!H", OACK) + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in accepted.items())
                if self.send(sock, client, [oack], 0, 0) is None:
                    return
            blocks = len(data) // blksize + 1
            unacknowledged = 1
            while unacknowledged <= blocks:
                last = min(unacknowledged + window - 1, blocks)
                packets = [struct.pack("!HH", DATA, n & 0xFFFF) + data[(n - 1) * blksize:n * blksize] for n in range(unacknowledged, last + 1)]
                acknowledged = self.send(sock, client, packets, unacknowledged - 1, last)
                if acknowledged is None:
                    return
                unacknowledged = acknowledged + 1
            log(f"{client[0]} {name}: {len(data)} bytes in {time.monotonic() - started:.1f} s (blksize {blksize}, window {window})")
        finally:
            sock.close()

    @staticmethod
    def send(sock, client, packets, first, last):
        """Sends a window of packets (blocks first+1...last; an OACK is block 0) until the client
        acknowledges one of them (RFC 7440: after a loss it acknowledges the last block it has in
        order). Returns that block's number, or None when the client stops or gives no answer."""
        for _ in range(8):
            for packet in packets:
                sock.sendto(packet, client)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                try:
                    answer, peer = sock.recvfrom(1024)
                except socket.timeout:
                    break
                if peer != client or len(answer) < 4:
                    continue
                opcode, value = struct.unpack("!HH", answer[:4])
                if opcode == ERROR:
                    # Firmware often asks once for the size (tsize) and ends that transfer so.
                    return None
                if opcode == ACK:
                    # Block numbers wrap at 65536: the one in this window with these low 16 bits.
                    for number in range(last, first - 1, -1):
                        if number & 0xFFFF == value:
                            if number > first or last == first:
                                return number
                            break
        log(f"{client[0]}: no acknowledgement of blocks {first + 1}..{last}: transfer abandoned")
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--http", required=True)
    arguments = parser.parse_args()
    server = Server(arguments.root, arguments.http)
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind((arguments.bind, 69))
    log(f"TFTP on {arguments.bind}:69: {arguments.root}, else {arguments.http}")
    while True:
        packet, client = listener.recvfrom(2048)
        if len(packet) < 4 or struct.unpack("!H", packet[:2])[0] != RRQ:
            listener.sendto(error_packet(ILLEGAL, "read requests only"), client)
            continue
        fields = packet[2:].split(b"\0")
        name = fields[0].decode(errors="replace")
        options = {}
        for i in range(2, len(fields) - 1, 2):
            options[fields[i].decode(errors="replace").lower()] = fields[i + 1].decode(errors="replace")
        log(f"{client[0]} asks {name} {options}")
        threading.Thread(target=server.transfer, args=(client, name, options, arguments.bind), daemon=True).start()


if __name__ == "__main__":
    main()
