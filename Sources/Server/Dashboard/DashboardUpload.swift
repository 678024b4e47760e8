import Foundation

/// The dashboard's resumable upload, in the browser: the file's SHA-256 computed in pieces, the
/// announcement (which answers how much the server holds already), then the file in pieces from
/// there, a failed piece making it ask again and go on. The Images page uploads WIMs with it
/// (`/dashboard/library/uploads/NAME`), the Content page any file (`/dashboard/content/uploads/PATH`):
/// both reach the server's one mechanism, `announceUpload` and `receiveUpload`.
enum DashboardUpload {
    /// Appended to `/dashboard/app.js` before the pages' scripts, which use `window.ImprintUpload`.
    static let script = #"""
(function () {
  'use strict';
  const HASH_PIECE = 8 * 1024 * 1024;

  // SHA-256 in pieces. Not crypto.subtle.digest: it exists only in a secure context (HTTPS or
  // localhost, and the dashboard is often reached over plain HTTP on the deployment network),
  // and it hashes one buffer whole, which a 5 GB install.wim is not. This reads the file 8 MiB
  // at a time, so memory stays flat whatever its size (at some 100-300 MB/s).
  const K = new Int32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);
  function Sha256() {
    this.state = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    this.block = new Uint8Array(64);
    this.held = 0;
    this.length = 0;
    this.words = new Int32Array(64);
  }
  Sha256.prototype.compress = function (data, at) {
    const w = this.words;
    for (let i = 0; i < 16; i++) {
      const j = at + i * 4;
      w[i] = (data[j] << 24) | (data[j + 1] << 16) | (data[j + 2] << 8) | data[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15], y = w[i - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    const s = this.state;
    let a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
    for (let i = 0; i < 64; i++) {
      const t1 = (h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      const t2 = ((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    s[0] = (s[0] + a) | 0; s[1] = (s[1] + b) | 0; s[2] = (s[2] + c) | 0; s[3] = (s[3] + d) | 0;
    s[4] = (s[4] + e) | 0; s[5] = (s[5] + f) | 0; s[6] = (s[6] + g) | 0; s[7] = (s[7] + h) | 0;
  };
  Sha256.prototype.update = function (bytes) {
    let at = 0;
    this.length += bytes.length;
    if (this.held > 0) {
      const take = Math.min(64 - this.held, bytes.length);
      this.block.set(bytes.subarray(0, take), this.held);
      this.held += take;
      at = take;
      if (this.held < 64) return;
      this.compress(this.block, 0);
      this.held = 0;
    }
    for (; at + 64 <= bytes.length; at += 64) this.compress(bytes, at);
    this.block.set(bytes.subarray(at), 0);
    this.held = bytes.length - at;
  };
  Sha256.prototype.hex = function () {
    // The message's length in bits, big-endian in 64 bits (exact up to 2^53 bytes).
    const high = Math.floor(this.length / 0x20000000), low = (this.length % 0x20000000) * 8;
    const padding = new Uint8Array((this.held < 56 ? 56 : 120) - this.held + 8);
    padding[0] = 0x80;
    const end = padding.length;
    padding[end - 8] = high >>> 24; padding[end - 7] = high >>> 16; padding[end - 6] = high >>> 8; padding[end - 5] = high;
    padding[end - 4] = low >>> 24; padding[end - 3] = low >>> 16; padding[end - 2] = low >>> 8; padding[end - 1] = low;
    this.update(padding);
    return Array.from(this.state, function (word) { return (word >>> 0).toString(16).padStart(8, '0'); }).join('');
  };

  function sleep(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }
  function percentOf(done, total) { return total > 0 ? Math.min(100, done * 100 / total) : 100; }
  // An answer that is not 2xx, as the administrator reads it: the server's own words.
  function refusal(response, data) {
    const reason = data && data.error ? data.error : 'no explanation came with it';
    const error = new Error('The server refused (' + response.status + '): ' + reason + (data && data.field ? ' [' + data.field + ']' : ''));
    error.status = response.status;
    return error;
  }
  // A page's calls to its JSON API: the session's cookie, its CSRF token in a header, and an
  // answer that is not 2xx thrown as the server's own words.
  function apiFor(csrf) {
    return async function (method, path, body) {
      const headers = {'X-CSRF-Token': csrf, 'Accept': 'application/json'};
      const request = {method: method, headers: headers, credentials: 'same-origin', cache: 'no-store'};
      if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
        request.body = JSON.stringify(body);
      }
      const response = await fetch(path, request);
      let data = null;
      try { data = await response.json(); } catch (ignored) { data = null; }
      if (!response.ok) throw refusal(response, data);
      return data;
    };
  }
  // A form's message line: text only (never HTML), its kind as a class.
  function say(element, text, kind) {
    if (!element) return;
    element.textContent = text;
    element.className = 'form-message' + (kind ? ' ' + kind : '') + (element.classList.contains('action-message') ? ' action-message' : '');
  }
  async function postJSON(url, body, csrf) {
    const response = await fetch(url, {method: 'POST', credentials: 'same-origin', cache: 'no-store',
      headers: {'X-CSRF-Token': csrf, 'Accept': 'application/json', 'Content-Type': 'application/json'}, body: JSON.stringify(body)});
    let data = null;
    try { data = await response.json(); } catch (ignored) { data = null; }
    if (!response.ok) throw refusal(response, data);
    return data;
  }
  // A progress bar (div.progress holding div.bar and span.label): its width set through the
  // CSSOM, which the CSP allows (a style attribute in the page it does not).
  function setBar(bar, percent, state, label) {
    const value = Math.max(0, Math.min(100, Number(percent) || 0));
    bar.dataset.percent = value.toFixed(1);
    const fill = bar.querySelector('.bar');
    fill.style.width = value + '%';
    if (state) fill.className = 'bar ' + state;
    bar.querySelector('.label').textContent = label || value.toFixed(1) + '%';
  }

  // Upload: SHA-256 first (the server checks the whole file against it), then the announcement,
  // which answers how much the server holds already (an upload interrupted earlier goes on from
  // there), then the file in pieces from that offset. A piece that fails (the connection, a
  // restarted server, a 409 for another offset) makes it ask the offset again and go on.
  async function sendFile(file, url, sha256, piece, bar, report, csrf) {
    const announce = function () { return postJSON(url, {size: file.size, sha256: sha256}, csrf); };
    let status = await announce();
    if (status.offset > 0 && !status.complete) report('The server holds ' + status.offset + ' bytes of an earlier upload of this file: resuming from there.');
    let failures = 0;
    let problem = '';
    while (!status.complete) {
      setBar(bar, percentOf(status.offset, file.size), 'running', 'uploading ' + percentOf(status.offset, file.size).toFixed(0) + '%');
      try {
        const response = await fetch(url, {
          method: 'PUT', credentials: 'same-origin', cache: 'no-store',
          headers: {'X-CSRF-Token': csrf, 'Upload-Offset': String(status.offset), 'Content-Type': 'application/octet-stream'},
          body: file.slice(status.offset, Math.min(file.size, status.offset + piece))});
        let data = null;
        try { data = await response.json(); } catch (ignored) { data = null; }
        if (response.ok && data !== null) {
          status = data;
          failures = 0;
          continue;
        }
        const error = refusal(response, data);
        // Worth another try: another offset held (409), a server that was busy or restarting.
        // Final: a SHA-256 that does not match, too large, no space (507), logged out.
        const again = response.status === 409 || response.status === 408 || response.status === 429
          || (response.status >= 500 && response.status !== 507);
        if (!again) throw error;
        problem = error.message;
      } catch (error) {
        if (error.status !== undefined) throw error;
        problem = 'the connection failed (' + error.message + ')';
      }
      failures += 1;
      if (failures > 8) {
        throw new Error('The upload stopped at ' + status.offset + ' of ' + file.size + ' bytes after ' + failures + ' failed tries: ' + problem
          + '. Upload the same file again: it goes on from where it stopped.');
      }
      report('Interrupted (' + problem + '): asking the server how much it holds, try ' + failures + '…');
      await sleep(Math.min(30000, 500 * Math.pow(2, failures)));
      try {
        status = await announce();
        report('Resuming at ' + status.offset + ' bytes.');
      } catch (error) {
        if (error.status !== undefined && error.status < 500) throw error;
        problem = error.message;
      }
    }
    return status;
  }
  async function sha256OfFile(file, progress) {
    const hash = new Sha256();
    for (let offset = 0; offset < file.size; offset += HASH_PIECE) {
      const end = Math.min(file.size, offset + HASH_PIECE);
      hash.update(new Uint8Array(await file.slice(offset, end).arrayBuffer()));
      progress(end);
    }
    return hash.hex();
  }

  // A file hashed, then sent, its bar showing both; on an error the bar is marked failed and
  // the error thrown again for the page to report. Answers the file's SHA-256 and the status.
  async function hashAndSend(file, url, piece, bar, report, csrf) {
    bar.hidden = false;
    bar.dataset.phase = 'hashing';
    try {
      report('Computing the SHA-256 of ' + file.name + ' (' + file.size + ' bytes)…');
      const sha256 = await sha256OfFile(file, function (done) {
        setBar(bar, percentOf(done, file.size), 'hashing', 'SHA-256 ' + percentOf(done, file.size).toFixed(0) + '%');
      });
      bar.dataset.phase = 'uploading';
      const status = await sendFile(file, url, sha256, piece, bar, report, csrf);
      setBar(bar, 100, 'succeeded', 'uploaded 100%');
      bar.dataset.phase = 'uploaded';
      return {sha256: sha256, status: status};
    } catch (error) {
      bar.dataset.phase = 'failed';
      bar.querySelector('.bar').className = 'bar failed';
      throw error;
    }
  }
  window.ImprintUpload = {hashAndSend: hashAndSend, HASH_PIECE: HASH_PIECE, sha256OfFile: sha256OfFile, sendFile: sendFile, setBar: setBar, percentOf: percentOf,
                          refusal: refusal, apiFor: apiFor, say: say};
})();
"""#
}
