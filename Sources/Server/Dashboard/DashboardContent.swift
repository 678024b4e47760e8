import Foundation
import Hummingbird

/// The dashboard's Content page (issue 20): what /content publishes, with sizes, SHA-256s and
/// the sequences naming each file; for administrators an upload (resumable, with a progress
/// bar: the dashboard's one upload, `DashboardUpload`) and a delete button per file (a plain
/// form: no script needed). The upload's requests reach the admin API's handlers under
/// /dashboard/content/uploads with the session's cookie and its CSRF token in a header.
public enum DashboardContentRoute: Sendable, Hashable {
    case page, uploadAnnounce, uploadData, delete
}

extension ImprintServer {
    func dashboardContent(_ route: DashboardContentRoute, _ request: Request, _ context: BasicRequestContext,
                          access: DashboardAccess) async throws -> Response {
        switch route {
        case .page:
            var notice: String?
            let query = request.uri.queryParameters
            if query.get("done") == "deleted", let path = query.get("path").map({ String($0) }),
               let checked = try? Self.checkedContentPath(path) {
                notice = "\(checked) deleted."
            }
            return dashboardHTML(try await contentPage(request, access: access, notice: notice, failure: nil))
        case .uploadAnnounce, .uploadData:
            try requireCSRFHeader(request, access)
            return try await contentAdmin(route == .uploadAnnounce ? .uploadAnnounce : .uploadData, request, context,
                                          prefix: Self.dashboardContentUploads)
        case .delete:
            try requireCSRF(try await dashboardForm(request), access)
            let path: String
            do {
                path = try Self.contentPath(from: request, after: Self.dashboardContentDelete)
                _ = try await deleteContent(path)
            } catch let error as APIError where error.status == .unprocessableContent {
                // The page again, saying why (a missing file is the dashboard's usual 404, as for a machine).
                return dashboardHTML(try await contentPage(request, access: access, notice: nil, failure: error.message), status: error.status)
            }
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~/")
            return Response(status: .seeOther, headers: [.location: "/dashboard/content?done=deleted&path="
                                                          + (path.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")])
        }
    }

    static let dashboardContentUploads = "/dashboard/content/uploads/"
    static let dashboardContentDelete = "/dashboard/content/delete/"
    static let adminContentUploads = "/api/v1/admin/content/uploads/"
    static let adminContentFiles = "/api/v1/admin/content/files/"

    private func contentPage(_ request: Request, access: DashboardAccess, notice: String?, failure: String?) async throws -> String {
        let page = (try? Self.pageNumber(request)) ?? 1
        return DashboardContentPage.index(try await contentListing(page: page), canChange: access.principal.role >= .administrator,
                                          notice: notice, failure: failure, csrf: access.csrfToken)
    }
}

/// The Content page's HTML, pure: every path and sequence name escaped, links percent-encoded.
enum DashboardContentPage {
    static func escape(_ text: String) -> String { DashboardPage.escape(text) }

    /// Each part of a content path percent-encoded, `/` kept.
    static func encodedPath(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { ContentCatalog.encode(String($0)) }.joined(separator: "/")
    }

    /// `canChange`: an administrator, who gets the upload form and the delete buttons (others
    /// see neither: the server would refuse them anyway).
    static func index(_ listing: ContentListing, canChange: Bool, notice: String?, failure: String?, csrf: String) -> String {
        let csrfField = DashboardPage.csrfField(csrf)
        var body = "<div id=\"content-page\" data-csrf=\"\(escape(csrf))\"><h1>Content</h1>"
        body += "<p class=\"hint\">The files under the server's content folder that /content/ publishes (readable by all, no hidden names): "
            + "\(listing.total) file\(listing.total == 1 ? "" : "s"), \(DashboardImagesPage.bytes(UInt64(listing.totalBytes))).</p>"
        if let notice { body += "<p id=\"notice\" class=\"form-message ok\" role=\"status\">\(escape(notice))</p>" }
        if let failure { body += "<p id=\"content-error\" class=\"form-message error\" role=\"alert\">\(escape(failure))</p>" }
        if canChange { body += uploadSection() }
        body += "<section id=\"content-files\" data-hashing=\"\(listing.hashing)\"><h2>Files</h2>"
        if listing.unhashed > 0 {
            body += "<p class=\"hint\" id=\"hashing\" role=\"status\">\(listing.unhashed) file(s) new or changed since they were last hashed: "
                + "their SHA-256 is being computed in the background (each file once); reload to see it.</p>"
        }
        if listing.files.isEmpty {
            body += "<p class=\"empty\">Nothing is published yet." + (canChange ? " Upload a file above." : "") + "</p>"
        } else {
            body += "<table id=\"content-list\"><tr><th scope=\"col\">Path</th><th scope=\"col\">Size</th><th scope=\"col\">SHA-256</th>"
                + "<th scope=\"col\">Modified</th><th scope=\"col\">Sequences naming it</th>" + (canChange ? "<th scope=\"col\"></th>" : "") + "</tr>"
            for file in listing.files {
                let path = escape(file.path)
                body += "<tr class=\"content-file\" data-path=\"\(path)\"><th scope=\"row\"><a href=\"/content/\(escape(encodedPath(file.path)))\">\(path)</a></th>"
                    + "<td class=\"size\" data-bytes=\"\(file.size)\">\(DashboardImagesPage.bytes(UInt64(file.size)))</td>"
                    + "<td class=\"sha\">" + (file.sha256.map { "<code>\(escape($0))</code>" } ?? "<span class=\"hint\">being hashed…</span>") + "</td>"
                    + "<td class=\"when\">\(escape(file.modified))</td><td class=\"sequences\">" + references(file.sequences) + "</td>"
                if canChange {
                    body += "<td><form method=\"post\" action=\"/dashboard/content/delete/\(escape(encodedPath(file.path)))\" class=\"delete-content\">"
                        + "\(csrfField)<button type=\"submit\" aria-label=\"Delete \(path)\">Delete</button></form></td>"
                }
                body += "</tr>"
            }
            body += "</table>"
        }
        body += DashboardPage.pageNav(id: "content-pages", page: listing.page, pages: listing.pages) { "/dashboard/content?page=\($0)" }
        body += "</section></div>"
        return DashboardPage.page(title: "Imprint: content", body: body, csrf: csrf, feed: false)
    }

    static func references(_ references: [ContentReferences.Reference]) -> String {
        guard !references.isEmpty else { return "<span class=\"empty\">none</span>" }
        var seen = Set<String>()
        return "<ul class=\"changes\">" + references.filter { seen.insert($0.sequence + "\u{0}" + $0.path).inserted }.prefix(20).map { reference in
            "<li class=\"reference\" data-sequence=\"\(escape(reference.sequence))\">\(escape(reference.sequence)) <code>\(escape(reference.path))</code>"
                + (reference.reference.contains("${") ? " <span class=\"hint\">(through \(escape(reference.reference)))</span>" : "") + "</li>"
        }.joined() + (references.count > 20 ? "<li>\(references.count - 20) more</li>" : "") + "</ul>"
    }

    static func uploadSection() -> String {
        """
        <section id="content-upload"><h2>Upload a file</h2>
        <form id="content-upload-form" class="library-form" data-piece-bytes="\(DashboardImagesPage.uploadPieceBytes)">
        <label>Folder under the content folder (empty: the top) <input type="text" name="folder" placeholder="images" pattern="[^.].*"></label>
        <label>File <input type="file" name="file" required></label>
        <button type="submit">Upload</button>
        <div class="progress" id="content-upload-progress" data-percent="0.0" role="progressbar" aria-label="Upload progress" hidden><div class="bar"></div><span class="label"></span></div>
        <ol id="content-upload-log" class="upload-log" role="log"></ol>
        <p class="hint">Sent in pieces: an interrupted upload of the same file to the same path goes on where it stopped. The server checks the whole file's SHA-256 before it replaces anything. Needs JavaScript.</p>
        </form></section>
        """
    }

    /// Appended to `/dashboard/app.js`: runs only on the Content page with its upload form.
    static let script = #"""
(function () {
  'use strict';
  const root = document.getElementById('content-page');
  const form = document.getElementById('content-upload-form');
  if (root === null || form === null || window.ImprintUpload === undefined) return;
  const upload = window.ImprintUpload;
  const csrf = root.dataset.csrf || '';
  const bar = document.getElementById('content-upload-progress');
  const log = document.getElementById('content-upload-log');
  function report(text, kind) {
    const item = document.createElement('li');
    item.textContent = text;
    if (kind) item.className = kind;
    log.appendChild(item);
  }
  // The file list as the server renders it now, in place of the old one.
  async function refreshList() {
    const response = await fetch(location.pathname + location.search, {credentials: 'same-origin', cache: 'no-store'});
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), 'text/html').getElementById('content-files');
    const old = document.getElementById('content-files');
    if (fresh !== null && old !== null) old.replaceWith(document.adoptNode(fresh));
  }
  let busy = false;
  form.addEventListener('submit', async function (event) {
    event.preventDefault();
    if (busy) return;
    const input = form.elements.namedItem('file');
    const file = input.files && input.files[0];
    log.textContent = '';
    if (!file) { report('Choose a file first.', 'error'); return; }
    const folder = form.elements.namedItem('folder').value.trim().replace(/^\/+|\/+$/g, '');
    const path = (folder ? folder + '/' : '') + file.name;
    const url = '/dashboard/content/uploads/' + path.split('/').map(encodeURIComponent).join('/');
    const button = form.querySelector('button[type=submit]');
    busy = true;
    button.disabled = true;
    try {
      const piece = Math.max(1, Number(form.dataset.pieceBytes) || upload.HASH_PIECE);
      const sent = await upload.hashAndSend(file, url, piece, bar, report, csrf);
      report('Uploaded ' + sent.status.path + ' and verified (SHA-256 ' + sent.sha256 + ').', 'ok');
      await refreshList();
    } catch (error) {
      report(error.message, 'error');
    } finally {
      busy = false;
      button.disabled = false;
    }
  });
  // The form is the script's from here on (a test, or an impatient click, waits for this).
  root.dataset.ready = 'true';
})();
"""#
}
