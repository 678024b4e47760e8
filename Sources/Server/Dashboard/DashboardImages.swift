import Foundation
import Hummingbird

/// The dashboard's Images pages: the library (images, imported WIMs, jobs) with forms to upload,
/// register, extract, service, retire and delete, for an administrator without curl.
///
/// The pages' script reaches the library's admin API again under `/dashboard/library/...`: the
/// same handlers (`ImprintServer.library`, so the same checks and the same error messages), with
/// the dashboard's session cookie for the admin token and, for everything that changes
/// something, the session's CSRF token in an `X-CSRF-Token` header.
extension ImprintServer {
    /// GET /dashboard/images
    func dashboardImagesPage(access: DashboardAccess) async throws -> Response {
        dashboardHTML(DashboardImagesPage.index(try await libraryOverview(), csrf: access.csrfToken))
    }

    /// GET /dashboard/images/{name}
    func dashboardImagePage(_ request: Request, _ context: BasicRequestContext, access: DashboardAccess) async throws -> Response {
        let detail = try await libraryImageDetail(name: try Self.imageName(request, context))
        let jobs = try await storage.libraryJobs(limit: 200).filter { DashboardImagesPage.imageNamed(by: $0) == detail.image.name }
        // Machine names for the newest deployments shown, each machine read once.
        var machines: [String: String] = [:]
        for use in detail.deployments.prefix(DashboardImagesPage.deploymentsShown) where machines[use.machineID] == nil {
            machines[use.machineID] = Self.name(try await storage.machine(id: use.machineID))
        }
        return dashboardHTML(DashboardImagesPage.image(detail, wims: try await storage.libraryWIMs(), jobs: jobs, machines: machines,
                                                       csrf: access.csrfToken))
    }

    /// The library's API for the pages' script. A session must send its CSRF token with every
    /// request that changes something (the cookie alone is what another site could make the
    /// browser send); the admin token as a bearer token needs none, as everywhere.
    func dashboardLibraryAPI(_ route: LibraryRoute, _ request: Request, _ context: BasicRequestContext,
                             access: DashboardAccess) async throws -> Response {
        if request.method != .get && request.method != .head { try requireCSRFHeader(request, access) }
        return try await library(route, request, context)
    }
}

/// The Images pages' HTML, pure: every text from the library (names, paths, messages, what a
/// WIM's XML says) is escaped; links carry names percent-encoded.
enum DashboardImagesPage {
    /// Bytes per PUT of an upload: a dropped connection costs at most this much again.
    static let uploadPieceBytes = 8 << 20
    /// Deployments listed on an image's page (the newest; the count says how many in all).
    static let deploymentsShown = 200

    static func escape(_ text: String) -> String { DashboardPage.escape(text) }

    /// `/dashboard/images/<name>`, the name percent-encoded (spaces, parentheses).
    static func imageLink(_ name: String) -> String {
        var unreserved = CharacterSet.alphanumerics
        unreserved.insert(charactersIn: "-._~")
        return "/dashboard/images/" + (name.addingPercentEncoding(withAllowedCharacters: unreserved) ?? name)
    }

    /// 1.5 GiB, 620.3 KiB, 512 B.
    static func bytes(_ count: UInt64) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB"]
        guard count >= 1024 else { return "\(count) B" }
        var value = Double(count) / 1024
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return String(format: "%.1f ", value) + units[unit]
    }

    /// The library image a job makes a version of (extract, service); nil for an import.
    static func imageNamed(by job: LibraryJob) -> String? {
        let data = Data(job.request.utf8)
        switch job.kind {
        case .import: return nil
        case .extract: return (try? JSONDecoder().decode(LibraryExtractRequest.self, from: data))?.image
        case .service: return (try? JSONDecoder().decode(LibraryServiceRequest.self, from: data))?.image
        }
    }

    /// What a job was asked, in a line.
    static func describe(_ job: LibraryJob, wimFiles: [String: String]) -> String {
        let data = Data(job.request.utf8)
        let decoder = JSONDecoder()
        switch job.kind {
        case .import:
            guard let request = try? decoder.decode(LibraryImportRequest.self, from: data) else { return "import" }
            let parts = request.parts ?? []
            return "import \(request.file)" + (parts.isEmpty ? "" : " (+\(parts.count) parts)")
        case .extract:
            guard let request = try? decoder.decode(LibraryExtractRequest.self, from: data) else { return "extract" }
            let layout = [request.compress.map { "compress \($0)" }, request.solid == true ? "solid" : nil, request.pipable == true ? "pipable" : nil]
                .compactMap { $0 }
            return "image \(request.index) of \(wimFiles[request.wim] ?? "WIM " + request.wim) → \"\(request.image)\""
                + (layout.isEmpty ? "" : " (" + layout.joined(separator: ", ") + ")")
        case .service:
            guard let request = try? decoder.decode(LibraryServiceRequest.self, from: data) else { return "service" }
            let counts = [(request.drivers?.count ?? 0, "driver folder"), (request.files?.count ?? 0, "file"), (request.delete?.count ?? 0, "deletion")]
                .filter { $0.0 > 0 }.map { "\($0.0) \($0.1)\($0.0 == 1 ? "" : "s")" }
            return "service \"\(request.image)\" version \(request.version)" + (counts.isEmpty ? "" : ": " + counts.joined(separator: ", "))
        }
    }

    /// Edition (or the FLAGS an install.wim names it by), architecture, languages, Windows version.
    static func windowsCells(_ details: LibraryImageDetails?) -> String {
        guard let details else { return "<td></td><td></td><td></td><td></td>" }
        let languages = details.languages.map { $0 == details.defaultLanguage && details.languages.count > 1 ? $0 + " (default)" : $0 }
        return "<td class=\"edition\">\(escape(details.edition ?? details.flags ?? ""))</td>"
            + "<td class=\"architecture\">\(escape(details.architecture ?? ""))</td>"
            + "<td class=\"languages\">\(escape(languages.joined(separator: ", ")))</td>"
            + "<td class=\"windows-version\">\(escape(details.version ?? ""))</td>"
    }

    /// The same in a line: "Professional · x64 · en-US · 10.0.22631.2861".
    static func windowsFacts(_ details: LibraryImageDetails) -> String {
        [details.edition ?? details.flags, details.architecture, details.languages.isEmpty ? nil : details.languages.joined(separator: ", "), details.version]
            .compactMap { $0 }.joined(separator: " · ")
    }

    static func layout(compression: String, solid: Bool, pipable: Bool) -> String {
        compression + (solid ? ", solid" : "") + (pipable ? ", pipable" : "")
    }

    static func progress(_ job: LibraryJob) -> String {
        let percent = max(0, min(100, job.state == .succeeded ? 100 : (job.percent ?? 0)))
        return "<div class=\"progress\" data-job=\"\(escape(job.id))\" data-percent=\(String(format: "\"%.1f\"", percent))>"
            + "<div class=\"bar \(escape(job.state.rawValue))\"></div>"
            + "<span class=\"label\">\(String(format: "%.1f", percent))%</span></div>"
    }

    /// Recent jobs, each with its progress bar (the script follows those queued or running).
    static func jobsSection(_ jobs: [LibraryJob], wimFiles: [String: String], empty: String) -> String {
        var html = "<section id=\"library-jobs\" data-refresh><h2>Jobs</h2>"
        guard !jobs.isEmpty else { return html + "<p class=\"empty\">\(escape(empty))</p></section>" }
        html += "<table><tr><th>Job</th><th>What</th><th>State</th><th>Progress</th><th>Message</th><th>Created</th><th>Ended</th></tr>"
        for job in jobs {
            var message = escape(job.message ?? "")
            if job.state == .succeeded, job.kind != .import, let result = job.result, let slash = result.lastIndex(of: "/") {
                let image = String(result[..<slash])
                message = "made <a href=\"\(escape(imageLink(image)))\">\(escape(image)) version \(escape(String(result[result.index(after: slash)...])))</a>"
            }
            html += "<tr class=\"job\" data-job=\"\(escape(job.id))\" data-state=\"\(escape(job.state.rawValue))\">"
                + "<td>\(escape(job.kind.rawValue))<div class=\"id\">\(escape(String(job.id.prefix(8))))</div></td>"
                + "<td class=\"job-what\">\(escape(describe(job, wimFiles: wimFiles)))</td>"
                + "<td class=\"state \(escape(job.state.rawValue))\">\(escape(job.state.rawValue))</td>"
                + "<td>\(progress(job))</td>"
                + "<td class=\"job-message\(job.state == .failed ? " failure" : "")\">\(message)</td>"
                + "<td>\(escape(job.created))</td><td>\(escape(job.ended ?? ""))</td></tr>"
        }
        return html + "</table></section>"
    }

    static func notice() -> String {
        "<p id=\"library-notice\" class=\"form-message\" role=\"alert\"></p>"
    }

    // MARK: - The Images page

    static func index(_ overview: ImprintServer.LibraryOverview, csrf: String) -> String {
        let wimFiles = Dictionary(overview.wims.map { ($0.id, $0.file) }, uniquingKeysWith: { first, _ in first })
        var body = "<h1>Image library</h1><div id=\"library\" data-page=\"images\" data-csrf=\"\(escape(csrf))\">" + notice()
        body += imagesSection(overview.images)
        body += jobsSection(overview.jobs, wimFiles: wimFiles, empty: "No job yet.")
        body += uploadSection() + registerSection()
        body += "<div class=\"with-actions\">" + wimsSection(overview.wims) + "<p class=\"form-message action-message\" role=\"alert\"></p></div>"
        body += extractSection(overview.wims, images: overview.images)
        body += "</div>"
        return DashboardPage.page(title: "Imprint: images", body: body, csrf: csrf, feed: false)
    }

    static func imagesSection(_ images: [ImageSummary]) -> String {
        var html = "<section id=\"library-images\" data-refresh><h2>Library images</h2>"
        guard !images.isEmpty else {
            return html + "<p class=\"empty\">No library image yet: upload or register a WIM, then extract one of its images.</p></section>"
        }
        html += "<table><tr><th>Name</th><th>Latest</th><th>Edition</th><th>Architecture</th><th>Languages</th><th>Windows</th>"
            + "<th>Size</th><th>Disk use</th><th>Sequences</th></tr>"
        for image in images {
            let latest = image.versions.first { $0.version == image.latest }
            let sequences = image.sequences.map { "\($0.sequence) (\($0.version.map { "version \($0)" } ?? "latest"))" }
            html += "<tr class=\"library-image\" data-image=\"\(escape(image.name))\">"
                + "<td><a href=\"\(escape(imageLink(image.name)))\">\(escape(image.name))</a>"
                + (image.description.map { "<div class=\"description\">\(escape($0))</div>" } ?? "") + "</td>"
                + "<td class=\"latest-version\">\(latest.map { "version \($0.version)" } ?? "none ready")"
                + " <span class=\"count\">(\(image.versions.count) in all)</span></td>"
                + windowsCells(latest?.details)
                + "<td>\(latest.map { bytes($0.size) } ?? "")</td><td>\(bytes(image.diskBytes))</td>"
                + "<td class=\"sequences\">\(escape(sequences.joined(separator: ", ")))</td></tr>"
        }
        return html + "</table></section>"
    }

    static func uploadSection() -> String {
        """
        <section id="library-upload"><h2>Upload a WIM</h2>
        <form id="upload-form" class="library-form" data-piece-bytes="\(uploadPieceBytes)">
        <label>WIM file (.wim, .esd, .swm) <input type="file" name="file" accept=".wim,.esd,.swm" required></label>
        <button type="submit">Upload and import</button>
        <div class="progress" id="upload-progress" data-percent="0.0" hidden><div class="bar"></div><span class="label"></span></div>
        <ol id="upload-log" class="upload-log" role="log"></ol>
        <p class="hint">The file goes to library/wims/ under the content folder, in pieces: an interrupted upload of the same file goes on where it stopped. The server checks its SHA-256, then imports it.</p>
        </form></section>
        """
    }

    static func registerSection() -> String {
        """
        <section id="library-register"><h2>Import a WIM already under the content folder</h2>
        <form id="register-form" class="library-form">
        <label>File <input type="text" name="file" required placeholder="images/install.wim" size="50"></label>
        <label>Other parts of a split WIM, one a line <textarea name="parts" rows="2" placeholder="images/install2.swm"></textarea></label>
        <button type="submit">Import</button>
        <p class="form-message" role="alert"></p></form></section>
        """
    }

    static func wimsSection(_ wims: [LibraryWIM]) -> String {
        var html = "<section id=\"library-wims\" data-refresh><h2>Imported WIMs</h2>"
        guard !wims.isEmpty else { return html + "<p class=\"empty\">No WIM imported yet.</p></section>" }
        for wim in wims {
            html += "<div class=\"wim\" data-wim=\"\(escape(wim.id))\"><h3>\(escape(wim.file))</h3>"
                + "<p class=\"wim-facts\">id \(escape(wim.id)) · \(escape(layout(compression: wim.compression, solid: wim.solid, pipable: wim.pipable)))"
                + " · \(bytes(wim.size)) · imported \(escape(wim.imported))"
                + (wim.parts.isEmpty ? "" : " · parts: \(escape(wim.parts.joined(separator: ", ")))") + "</p>"
                + "<p class=\"sha\">SHA-256 <code>\(escape(wim.sha256))</code></p>"
                + "<table class=\"wim-images\"><tr><th>#</th><th>Name</th><th>Edition</th><th>Architecture</th><th>Languages</th><th>Windows</th>"
                + "<th>Files</th><th>Size</th></tr>"
            for image in wim.images {
                html += "<tr class=\"wim-image\" data-index=\"\(image.index)\"><td>\(image.index)</td>"
                    + "<td>\(escape(image.name ?? ""))\(image.description.map { "<div class=\"description\">\(escape($0))</div>" } ?? "")</td>"
                    + windowsCells(image) + "<td>\(image.fileCount.map(String.init) ?? "")</td>"
                    + "<td>\(image.totalBytes.map(bytes) ?? "")</td></tr>"
            }
            html += "</table><button type=\"button\" data-action=\"forget-wim\" data-wim=\"\(escape(wim.id))\" "
                + "data-confirm=\"Forget \(escape(wim.file))?\">Forget</button></div>"
        }
        return html + "</section>"
    }

    static func extractSection(_ wims: [LibraryWIM], images: [ImageSummary]) -> String {
        var sources = ""
        for wim in wims {
            sources += "<optgroup label=\"\(escape(wim.file))\">"
            for image in wim.images {
                let facts = [image.edition ?? image.flags, image.architecture, image.languages.isEmpty ? nil : image.languages.joined(separator: ", ")]
                    .compactMap { $0 }
                sources += "<option value=\"\(escape(wim.id + "|" + String(image.index)))\">\(image.index): \(escape(image.name ?? "(no name)"))"
                    + (facts.isEmpty ? "" : " — " + escape(facts.joined(separator: ", "))) + "</option>"
            }
            sources += "</optgroup>"
        }
        let names = images.map { "<option value=\"\(escape($0.name))\"></option>" }.joined()
        return """
            <section id="library-extract"><h2>Extract an image into the library</h2>
            <form id="extract-form" class="library-form">
            <div id="extract-sources" data-refresh><label>Image <select name="source" required>\(sources)</select></label>
            <datalist id="library-names">\(names)</datalist></div>
            <label>Library image (new or existing) <input type="text" name="image" list="library-names" required maxlength="100" placeholder="Windows 11 Pro"></label>
            <label>Description <input type="text" name="description" maxlength="500"></label>
            <label>Compression <select name="compress"><option value="">as in the source (copied, not recompressed)</option>
            <option value="none">none</option><option value="xpress">xpress</option><option value="lzx">lzx</option><option value="lzms">lzms</option></select></label>
            <label><input type="checkbox" name="solid"> solid</label> <label><input type="checkbox" name="pipable"> pipable</label>
            <button type="submit">Extract</button>
            <p class="hint">The image becomes the next version of the library image named (a new one is made). The imported WIM is not changed.</p>
            <p class="form-message" role="alert"></p></form></section>
            """
    }

    // MARK: - A library image's page

    static func image(_ detail: ImprintServer.LibraryImageDetail, wims: [LibraryWIM], jobs: [LibraryJob], machines: [String: String],
                      csrf: String) -> String {
        let image = detail.image
        let wimFiles = Dictionary(wims.map { ($0.id, $0.file) }, uniquingKeysWith: { first, _ in first })
        var body = "<p><a href=\"/dashboard/images\">All images</a></p><h1>\(escape(image.name))</h1>"
            + (image.description.map { "<p class=\"description\">\(escape($0))</p>" } ?? "")
        body += "<div id=\"library\" data-page=\"image\" data-image=\"\(escape(image.name))\" data-csrf=\"\(escape(csrf))\">" + notice()
        body += "<div class=\"with-actions\">" + versionsSection(image, deployments: detail.deployments, wimFiles: wimFiles)
            + "<p class=\"form-message action-message\" role=\"alert\"></p></div>"
        body += serviceSection(image)
        body += historySection(image)
        body += sequencesSection(image)
        body += deploymentsSection(detail.deployments, machines: machines)
        body += jobsSection(jobs, wimFiles: wimFiles, empty: "No job has made a version of this image lately.")
        body += "</div>"
        return DashboardPage.page(title: "Imprint: \(image.name)", body: body, csrf: csrf, feed: false)
    }

    static func origin(_ origin: LibraryVersion.Origin, wimFiles: [String: String]) -> String {
        switch origin.kind {
        case .extract:
            let wim = origin.wim.map { wimFiles[$0] ?? "imported WIM \($0) (forgotten since)" } ?? "an imported WIM"
            return "extracted from image \(origin.index.map(String.init) ?? "?") of \(escape(wim))"
        case .service:
            return "serviced from version \(origin.fromVersion.map(String.init) ?? "?")"
                + (origin.changes.isEmpty ? "" : "<ul class=\"changes\">" + origin.changes.map { "<li>\(escape($0))</li>" }.joined() + "</ul>")
        }
    }

    static func versionsSection(_ image: ImageSummary, deployments: [LibraryUse], wimFiles: [String: String]) -> String {
        var html = "<section id=\"image-versions\" data-refresh><h2>Versions</h2>"
        guard !image.versions.isEmpty else { return html + "<p class=\"empty\">No version.</p></section>" }
        let deployed = Dictionary(grouping: deployments, by: \.version).mapValues(\.count)
        html += "<table><tr><th>Version</th><th>State</th><th>Image</th><th>Origin</th><th>Size</th><th>Deployed</th><th></th></tr>"
        for version in image.versions.reversed() {
            let state = version.state.rawValue
            let details = version.details
            html += "<tr class=\"version \(escape(state))\" data-version=\"\(version.version)\" data-state=\"\(escape(state))\">"
                + "<td>\(version.version)\(version.version == image.latest ? " <span class=\"latest\">latest</span>" : "")</td>"
                + "<td class=\"state\">\(escape(state))\(version.retired.map { "<div class=\"when\">\(escape($0))</div>" } ?? "")"
                + "<div class=\"when\">made \(escape(version.created))</div></td>"
                + "<td class=\"windows\">\(escape(details.name ?? ""))<div class=\"facts\">\(escape(windowsFacts(details)))</div>"
                + "\(details.fileCount.map { "<div class=\"when\">\($0) files" + (details.totalBytes.map { ", \(bytes($0)) of data" } ?? "") + "</div>" } ?? "")</td>"
                + "<td class=\"origin\">\(origin(version.origin, wimFiles: wimFiles))</td>"
                + "<td>\(bytes(version.size))<div class=\"when\">\(escape(layout(compression: version.compression, solid: version.solid, pipable: version.pipable)))</div></td>"
                + "<td>\(deployed[version.version] ?? 0)</td><td class=\"actions\">"
                + (version.state == .ready
                    ? "<button type=\"button\" data-action=\"retire\" data-version=\"\(version.version)\" data-confirm=\"Retire version \(version.version)?\">Retire</button> "
                    : "")
                + "<button type=\"button\" data-action=\"delete\" data-version=\"\(version.version)\" data-confirm=\"Delete version \(version.version)?\">Delete</button></td></tr>"
                // The file and its SHA-256 on a line of their own: 64 hex digits squeezed into a column read badly.
                + "<tr class=\"version-file \(escape(state))\" data-version=\"\(version.version)\"><td></td><td colspan=\"6\">File <code>\(escape(version.file))</code>"
                + " · SHA-256 <code>\(escape(version.sha256))</code></td></tr>"
        }
        return html + "</table></section>"
    }

    static func serviceSection(_ image: ImageSummary) -> String {
        let options = image.versions.reversed().map { version in
            "<option value=\"\(version.version)\"\(version.version == image.latest ? " selected" : "")>version \(version.version)"
                + (version.state == .retired ? " (retired)" : "") + "</option>"
        }.joined()
        return """
            <section id="image-service"><h2>Service a version</h2>
            <form id="service-form" class="library-form">
            <div id="service-versions" data-refresh><label>From <select name="version" required>\(options)</select></label></div>
            <label>Driver folders under the content folder, one a line <textarea name="drivers" rows="2" placeholder="drivers/latitude-7440"></textarea></label>
            <label>Files to add or replace, SOURCE -&gt; DESTINATION, one a line (SOURCE under the content folder, DESTINATION in the image)
            <textarea name="files" rows="2" placeholder="scripts/SetupComplete.cmd -&gt; /Windows/Setup/Scripts/SetupComplete.cmd"></textarea></label>
            <label>Paths in the image to delete, one a line <textarea name="delete" rows="2" placeholder="/Windows/Temp/setup.log"></textarea></label>
            <button type="submit">Service</button>
            <p class="hint">A job makes the next version from the one chosen; that one is not changed.</p>
            <p class="form-message" role="alert"></p></form></section>
            """
    }

    static func historySection(_ image: ImageSummary) -> String {
        let serviced = image.versions.filter { $0.origin.kind == .service }
        var html = "<section id=\"image-history\" data-refresh><h2>Servicing history</h2>"
        guard !serviced.isEmpty else { return html + "<p class=\"empty\">Never serviced.</p></section>" }
        html += "<ol class=\"history\">"
        for version in serviced {
            html += "<li data-version=\"\(version.version)\">version \(version.version) from version \(version.origin.fromVersion.map(String.init) ?? "?")"
                + " (\(escape(version.created)), job \(escape(String(version.origin.job.prefix(8)))))"
                + "<ul class=\"changes\">" + version.origin.changes.map { "<li>\(escape($0))</li>" }.joined() + "</ul></li>"
        }
        return html + "</ol></section>"
    }

    static func sequencesSection(_ image: ImageSummary) -> String {
        var html = "<section id=\"image-sequences\" data-refresh><h2>Sequences naming it</h2>"
        guard !image.sequences.isEmpty else { return html + "<p class=\"empty\">No sequence names this image.</p></section>" }
        html += "<table><tr><th>Sequence</th><th>Version</th></tr>"
        for use in image.sequences {
            html += "<tr class=\"sequence-use\"><td>\(escape(use.sequence))</td><td>"
                + (use.version.map { "version \($0)" } ?? "latest" + (image.latest.map { " (now version \($0))" } ?? " (none ready)")) + "</td></tr>"
        }
        return html + "</table></section>"
    }

    static func deploymentsSection(_ uses: [LibraryUse], machines: [String: String]) -> String {
        var html = "<section id=\"image-deployments\" data-refresh><h2>Deployments</h2>"
        guard !uses.isEmpty else { return html + "<p class=\"empty\">No deployment has applied this image.</p></section>" }
        let byVersion = Dictionary(grouping: uses, by: \.version).sorted { $0.key > $1.key }
            .map { "version \($0.key): \($0.value.count) deployment\($0.value.count == 1 ? "" : "s") on \(Set($0.value.map(\.machineID)).count) machine\(Set($0.value.map(\.machineID)).count == 1 ? "" : "s")" }
        html += "<p class=\"by-version\">\(escape(byVersion.joined(separator: "; ")))</p>"
        html += "<table><tr><th>Deployment</th><th>Machine</th><th>Version</th><th>State</th><th>Created</th></tr>"
        for use in uses.prefix(deploymentsShown) {
            html += "<tr class=\"deployment-use\"><td><a href=\"/dashboard/deployments/\(escape(use.deploymentID))\">\(escape(String(use.deploymentID.prefix(8))))</a></td>"
                + "<td>\(escape(machines[use.machineID] ?? use.machineID))</td><td>\(use.version)</td>"
                + "<td class=\"state \(escape(use.state))\">\(escape(use.state))</td><td>\(escape(use.created))</td></tr>"
        }
        html += "</table>"
        if uses.count > deploymentsShown { html += "<p class=\"more\">\(uses.count - deploymentsShown) older deployments are not listed.</p>" }
        return html + "</section>"
    }

    // MARK: - Script and style

    /// Appended to `/dashboard/app.css`.
    static let style = """
        nav.top { margin-bottom: 1em; } nav.top a { margin-right: 1em; }
        [hidden] { display: none !important; }
        #library section { margin-bottom: 2em; }
        .library-form label { display: block; margin: 0.4em 0; } .library-form textarea { display: block; width: 40em; max-width: 100%; }
        .library-form input[type=text] { width: 30em; max-width: 100%; }
        .form-message.error { color: #c0392b; font-weight: bold; } .form-message.ok { color: #2e9e44; }
        .hint, .empty, .when, .id, .count, .description { color: #666; font-size: 0.9em; }
        .sha code, code { font-size: 0.85em; word-break: break-all; } .wim { border-top: 1px solid #ddd; padding-top: 0.5em; }
        .latest { background: #e3f0fc; border-radius: 3px; padding: 0 0.3em; font-size: 0.85em; }
        tr.version.retired, tr.version-file.retired { color: #888; } .progress .bar.hashing { background: #8e9eb5; }
        button.armed { background: #c0392b; color: white; } ul.changes { margin: 0.2em 0; padding-left: 1.2em; }
        .upload-log { color: #555; font-size: 0.9em; margin: 0.3em 0; } .upload-log li.error { color: #c0392b; font-weight: bold; }
        .upload-log li.ok { color: #2e9e44; } tr.job[data-state=failed] { background: #fdecea; } .facts { font-size: 0.9em; } tr.version td { border-bottom: none; } tr.version-file td { padding-top: 0; }
        """

    /// Appended to `/dashboard/app.js`: runs only on a page with `#library`.
    static let script = #"""
(function () {
  'use strict';
  // The Images pages (/dashboard/images, /dashboard/images/NAME): forms that call the library's
  // API under /dashboard/library with the session's cookie and its CSRF token in a header, job
  // progress polled once a second, and the server's own HTML for the lists (fetched again and
  // swapped in when a job ends), so nothing here renders what the server sent as HTML.
  const root = document.getElementById('library');
  if (root === null) return;
  const csrf = root.dataset.csrf || '';
  const imageName = root.dataset.image;

  function field(form, name) { return form.elements.namedItem(name); }
  function lines(text) {
    return text.split(/\r?\n/).map(function (line) { return line.trim(); }).filter(function (line) { return line.length > 0; });
  }
  // What every page's script shares (DashboardUpload.script, loaded first).
  const shared = window.ImprintUpload;
  const say = shared.say, percentOf = shared.percentOf, setBar = shared.setBar;
  const api = shared.apiFor(csrf);
  function imagePath(name) { return '/dashboard/library/images/' + encodeURIComponent(name); }

  // Widths from data-percent: the CSP forbids style attributes in the page, not the CSSOM.
  function paintBars() {
    document.querySelectorAll('.progress').forEach(function (bar) {
      const fill = bar.querySelector('.bar');
      if (fill) fill.style.width = bar.dataset.percent + '%';
    });
  }

  // The lists as the server renders them now, swapped in place of the old ones; a select the
  // administrator changed keeps that choice when the new one still offers it (one left alone
  // takes the server's default, such as the newest version). Forms the administrator types in
  // are not marked data-refresh and stay as they are.
  async function refreshSections() {
    const response = await fetch(location.pathname, {credentials: 'same-origin', cache: 'no-store'});
    if (!response.ok) {
      say(document.getElementById('library-notice'), response.status === 404
        ? 'This image is no longer in the library.' : 'The page could not be brought up to date (' + response.status + '): reload it.', 'error');
      return;
    }
    const fresh = new DOMParser().parseFromString(await response.text(), 'text/html');
    document.querySelectorAll('[data-refresh]').forEach(function (old) {
      const replacement = fresh.getElementById(old.id);
      if (replacement === null) return;
      const chosen = {};
      old.querySelectorAll('select[data-touched]').forEach(function (select) { chosen[select.name] = select.value; });
      const adopted = document.adoptNode(replacement);
      old.replaceWith(adopted);
      adopted.querySelectorAll('select').forEach(function (select) {
        const previous = chosen[select.name];
        if (previous !== undefined && Array.from(select.options).some(function (option) { return option.value === previous; })) {
          select.value = previous;
          select.dataset.touched = 'true';
        }
      });
    });
    paintBars();
  }

  // Jobs: each one queued or running is asked for once a second; when one changes state the
  // lists are fetched again (what it made appears). With none running, the job list is looked
  // at every 10 s for jobs started elsewhere (another tab, the admin API).
  const active = function (state) { return state === 'queued' || state === 'running'; };
  function jobRows() { return Array.from(document.querySelectorAll('tr.job')); }
  function concernsThisPage(job) {
    if (imageName === undefined) return true;
    try { return JSON.parse(job.request).image === imageName; } catch (ignored) { return false; }
  }
  let timer = null;
  let polling = false;
  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }
  async function poll() {
    if (polling) return;
    polling = true;
    try {
      let changed = false;
      const running = jobRows().filter(function (row) { return active(row.dataset.state); });
      if (running.length > 0) {
        for (const row of running) {
          const job = await api('GET', '/dashboard/library/jobs/' + encodeURIComponent(row.dataset.job));
          if (job.state !== row.dataset.state) { changed = true; continue; }
          const bar = row.querySelector('.progress');
          if (bar) setBar(bar, job.percent, job.state);
          const message = row.querySelector('.job-message');
          if (message) message.textContent = job.message || '';
        }
      } else {
        const shown = new Set(jobRows().map(function (row) { return row.dataset.job; }));
        const list = await api('GET', '/dashboard/library/jobs');
        changed = (list.jobs || []).some(function (job) { return active(job.state) && !shown.has(job.id) && concernsThisPage(job); });
      }
      if (changed) await refreshSections();
    } catch (error) {
      say(document.getElementById('library-notice'), 'Following the jobs failed: ' + error.message, 'error');
    } finally {
      polling = false;
      schedule(jobRows().some(function (row) { return active(row.dataset.state); }) ? 1000 : 10000);
    }
  }
  async function jobStarted() {
    await refreshSections();
    schedule(1000);
  }

  // Upload: the dashboard's one resumable upload (`DashboardUpload.script`), to the library's API.
  let uploading = false;
  async function upload(form) {
    const bar = document.getElementById('upload-progress');
    // What happened, line by line (a resumption, an interruption), under the bar.
    const log = document.getElementById('upload-log');
    const report = function (text, kind) {
      const item = document.createElement('li');
      item.textContent = text;
      if (kind) item.className = kind;
      log.appendChild(item);
    };
    const input = field(form, 'file');
    const file = input.files && input.files[0];
    if (uploading) return;
    if (!file) { log.textContent = ''; report('Choose a WIM file first.', 'error'); return; }
    uploading = true;
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    log.textContent = '';
    try {
      const piece = Math.max(1, Number(form.dataset.pieceBytes) || shared.HASH_PIECE);
      const sent = await shared.hashAndSend(file, '/dashboard/library/uploads/' + encodeURIComponent(file.name), piece, bar, report, csrf);
      report('Uploaded and verified (SHA-256 ' + sent.sha256 + '); starting the import of ' + sent.status.path + '…');
      const job = await api('POST', '/dashboard/library/wims', {file: sent.status.path});
      report('Uploaded ' + sent.status.path + '; import job ' + job.id + ' queued (see Jobs).', 'ok');
      await jobStarted();
    } catch (error) {
      report(error.message, 'error');
    } finally {
      uploading = false;
      button.disabled = false;
    }
  }

  // Each form: its fields as the API's JSON, its answer (or refusal) under it.
  const forms = {
    'register-form': async function (form, message) {
      const body = {file: field(form, 'file').value.trim()};
      const parts = lines(field(form, 'parts').value);
      if (parts.length > 0) body.parts = parts;
      const job = await api('POST', '/dashboard/library/wims', body);
      say(message, 'Import job ' + job.id + ' queued for ' + body.file + ' (see Jobs).', 'ok');
      await jobStarted();
    },
    'extract-form': async function (form, message) {
      const source = field(form, 'source').value;
      const split = source.indexOf('|');
      if (split < 0) throw new Error('Choose an image of an imported WIM first (import a WIM if none is listed).');
      const body = {wim: source.slice(0, split), index: source.slice(split + 1), image: field(form, 'image').value.trim()};
      const description = field(form, 'description').value.trim();
      if (description) body.description = description;
      if (field(form, 'compress').value) body.compress = field(form, 'compress').value;
      if (field(form, 'solid').checked) body.solid = true;
      if (field(form, 'pipable').checked) body.pipable = true;
      const job = await api('POST', '/dashboard/library/images', body);
      say(message, 'Extract job ' + job.id + ' queued: image ' + body.index + ' into "' + body.image + '" (see Jobs).', 'ok');
      await jobStarted();
    },
    'service-form': async function (form, message) {
      const version = Number(field(form, 'version').value);
      const files = lines(field(form, 'files').value).map(function (line, index) {
        const arrow = line.indexOf('->') >= 0 ? '->' : '→';
        const at = line.indexOf(arrow);
        if (at < 0) throw new Error('Files to add, line ' + (index + 1) + ': write SOURCE -> DESTINATION, such as scripts/SetupComplete.cmd -> /Windows/Setup/Scripts/SetupComplete.cmd');
        return {source: line.slice(0, at).trim(), destination: line.slice(at + arrow.length).trim()};
      });
      const body = {};
      const drivers = lines(field(form, 'drivers').value), remove = lines(field(form, 'delete').value);
      if (drivers.length > 0) body.drivers = drivers;
      if (files.length > 0) body.files = files;
      if (remove.length > 0) body.delete = remove;
      const job = await api('POST', imagePath(imageName) + '/versions/' + encodeURIComponent(String(version)) + '/service', body);
      say(message, 'Servicing job ' + job.id + ' queued: version ' + version + ' stays as it is, the next version is made from it (see Jobs).', 'ok');
      await jobStarted();
    },
  };
  const uploadForm = document.getElementById('upload-form');
  if (uploadForm !== null) {
    uploadForm.addEventListener('submit', function (event) {
      event.preventDefault();
      upload(uploadForm);
    });
  }
  Object.keys(forms).forEach(function (id) {
    const form = document.getElementById(id);
    if (form === null) return;
    form.addEventListener('submit', async function (event) {
      event.preventDefault();
      const message = form.querySelector('.form-message');
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      say(message, 'Sending…');
      try { await forms[id](form, message); } catch (error) { say(message, error.message, 'error'); } finally { button.disabled = false; }
    });
  });

  // Retire, delete, forget: a first click arms the button (it says what it will do), a second
  // within 5 s does it. No confirm() dialog: it would stop the page's script meanwhile.
  function disarm(button) {
    if (button.dataset.armed !== 'true') return;
    button.dataset.armed = 'false';
    button.textContent = button.dataset.label;
    button.classList.remove('armed');
  }
  document.addEventListener('click', async function (event) {
    const button = event.target.closest('button[data-action]');
    if (button === null) return;
    if (button.dataset.armed !== 'true') {
      button.dataset.armed = 'true';
      button.dataset.label = button.textContent;
      button.textContent = button.dataset.confirm || 'Really?';
      button.classList.add('armed');
      setTimeout(function () { disarm(button); }, 5000);
      return;
    }
    disarm(button);
    const holder = button.closest('.with-actions');
    const message = holder ? holder.querySelector('.action-message') : document.getElementById('library-notice');
    const version = button.dataset.version;
    button.disabled = true;
    say(message, 'Sending…');
    try {
      if (button.dataset.action === 'retire') {
        await api('POST', imagePath(imageName) + '/versions/' + encodeURIComponent(version) + '/retire');
        say(message, 'Version ' + version + ' retired: "latest" no longer names it.', 'ok');
      } else if (button.dataset.action === 'delete') {
        await api('DELETE', imagePath(imageName) + '/versions/' + encodeURIComponent(version));
        say(message, 'Version ' + version + ' deleted.', 'ok');
      } else if (button.dataset.action === 'forget-wim') {
        await api('DELETE', '/dashboard/library/wims/' + encodeURIComponent(button.dataset.wim));
        say(message, 'The imported WIM was forgotten.', 'ok');
      }
      await refreshSections();
    } catch (error) {
      say(message, error.message, 'error');
    } finally {
      button.disabled = false;
    }
  });

  document.addEventListener('change', function (event) {
    if (event.target instanceof HTMLSelectElement) event.target.dataset.touched = 'true';
  });

  paintBars();
  schedule(jobRows().some(function (row) { return active(row.dataset.state); }) ? 1000 : 10000);
  // The forms are the script's from here on (a test, or an impatient click, waits for this).
  root.dataset.ready = 'true';
})();
"""#
}
