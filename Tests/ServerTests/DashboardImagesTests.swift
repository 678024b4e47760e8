import Foundation
import Server
import TestSupport
import Testing

/// The dashboard's Images pages in a real headless Chromium, on a real server: a WIM uploaded
/// through the page (resuming an upload an earlier client left half done), imported, one of its
/// images extracted into the library, serviced into version 2, and the API's 409 for deleting a
/// version a sequence names shown on the page as it came.
@Suite(.serialized)
struct DashboardImagesTests {
    /// Spaces and parentheses: the name travels percent-encoded in every path.
    static let imageName = "Lab Pro (x64)"

    static let markupName = "Image \"Three\" <b>&amp;</b>"

    /// A WIM of three small images; the second says what WIMGAPI writes for a Windows edition
    /// (edition, architecture, languages, version), as an install.wim's images do.
    static func makeWIM(_ scratch: ScratchDirectory) throws -> String {
        let wim = scratch.sub("lab.wim")
        let trees: [(name: String, files: [String: Data])] = [
            ("Image One", ["readme.txt": Data("one\n".utf8),
                           // Large enough for several pieces of the upload the test asks for.
                           "data.bin": Data((0..<24_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 / 251) })]),
            ("Image Two", ["Windows/System32/drivers/etc/hosts": Data("127.0.0.1 localhost\n".utf8), "Users/Public/note.txt": Data("two\n".utf8)]),
            // What a WIM's XML says reaches the page as text, never as markup.
            (Self.markupName, ["three.txt": Data("three\n".utf8)]),
        ]
        for (number, tree) in trees.enumerated() {
            let folder = scratch.sub("tree\(number + 1)")
            for (path, data) in tree.files {
                let file = folder + "/" + path
                try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try data.write(to: URL(fileURLWithPath: file))
            }
            try run(["wimlib-imagex", number == 0 ? "capture" : "append", folder, wim, tree.name] + (number == 1 ? ["--flags=Professional"] : []))
        }
        try run(["wimlib-imagex", "info", wim, "2"] + [
            "WINDOWS/EDITIONID=Professional", "WINDOWS/ARCH=9", "WINDOWS/LANGUAGES/LANGUAGE=en-US", "WINDOWS/LANGUAGES/DEFAULT=en-US",
            "WINDOWS/VERSION/MAJOR=10", "WINDOWS/VERSION/MINOR=0", "WINDOWS/VERSION/BUILD=22631", "WINDOWS/VERSION/SPBUILD=2861",
        ].flatMap { ["--image-property", $0] })
        return wim
    }

    /// Runs browser.py with `steps` (see its --steps) on `url`; its answer, and the page's text at the end.
    static func browse(_ harness: ServerHarness, _ url: String, cookie: String, steps: [[String: Any]], screenshot: String) async throws -> [String: Any] {
        let stepsFile = harness.scratch.sub("steps-\(UUID().uuidString.prefix(8)).json")
        try JSONSerialization.data(withJSONObject: steps).write(to: URL(fileURLWithPath: stepsFile))
        let arguments = ["python3", packageRoot.appendingPathComponent("Tests/TestSupport/browser.py").path, url, "--cookie", cookie,
                         "--steps", stepsFile, "--until", "true", "--eval", "document.body.innerText", "--screenshot", screenshot, "--timeout", "5"]
        // Its status is not asked: the answer says where the page got stuck.
        let output = try await ServerHarness.offload { try run(arguments, allowFailure: true).stdout }
        let answer = (try? JSONSerialization.jsonObject(with: output)) as? [String: Any] ?? [:]
        #expect(answer["failed"] is NSNull, "the page never got to \(answer["failed"] ?? "?"): \(String(decoding: output, as: UTF8.self))")
        return answer
    }

    /// The value a "run" step gave, by its label.
    static func value(_ answer: [String: Any], _ label: String) -> [String: Any] {
        let steps = answer["steps"] as? [[String: Any]] ?? []
        let text = steps.first { $0["label"] as? String == label }?["value"] as? String ?? ""
        return (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    static func screenshot(_ harness: ServerHarness, _ name: String) -> String {
        ProcessInfo.processInfo.environment["IMPRINT_SCREENSHOTS"].map { $0 + "/" + name } ?? harness.scratch.sub(name)
    }

    /// The page's script has taken its forms over (before that, a click would submit them natively).
    static let ready = "document.getElementById('library') !== null && document.getElementById('library').dataset.ready === 'true'"

    /// A JavaScript string literal of `text`.
    static func literal(_ text: String) -> String {
        let array = String(decoding: (try? JSONSerialization.data(withJSONObject: [text])) ?? Data("[\"\"]".utf8), as: UTF8.self)
        return String(array.dropFirst().dropLast())
    }

    @Test func uploadImportExtractServiceAndRefusalInChromium() async throws {
        // Unknown machines get the default rule's sequence at once: a deployment of the image without approvals.
        try await ServerHarness.with(unknownMachines: .default) { harness in
            let wim = try Self.makeWIM(harness.scratch)
            let wimData = try Data(contentsOf: URL(fileURLWithPath: wim))
            let sha256 = String(try run(["sha256sum", wim]).output.prefix(64))
            try FileManager.default.createDirectory(atPath: harness.content + "/extras", withIntermediateDirectories: true)
            try Data("added by servicing\r\n".utf8).write(to: URL(fileURLWithPath: harness.content + "/extras/hello.txt"))
            let session = try await harness.dashboardLogin()
            #expect(!session.csrf.isEmpty)

            // The pages' API: JSON 401 without a session; a write without the CSRF header, or
            // with another token, refused (403) before anything is done.
            let anonymous = try await harness.request("GET", "/dashboard/library")
            #expect(anonymous.status == 401 && (anonymous.json["error"] as? String ?? "").contains("log in"), "\(anonymous.text)")
            let overview = try await harness.request("GET", "/dashboard/library", headers: ["Cookie: \(session.cookie)"])
            #expect(overview.status == 200 && overview.json["images"] is [Any], "\(overview.text)")
            let noHeader = try await harness.request("POST", "/dashboard/library/wims", headers: ["Cookie: \(session.cookie)"],
                                                     body: Data(#"{"file": "extras/hello.txt"}"#.utf8))
            #expect(noHeader.status == 403 && noHeader.json["field"] as? String == "X-CSRF-Token", "\(noHeader.text)")
            let wrongHeader = try await harness.request("POST", "/dashboard/library/wims",
                                                        headers: ["Cookie: \(session.cookie)", "X-CSRF-Token: \(String(repeating: "0", count: 64))"],
                                                        body: Data(#"{"file": "extras/hello.txt"}"#.utf8))
            #expect(wrongHeader.status == 403, "\(wrongHeader.text)")
            let jobs = try await harness.admin("GET", "/library/jobs").json["jobs"] as? [Any]
            #expect(jobs?.isEmpty == true, "a refused request queued a job: \(jobs ?? [])")

            // An earlier client sent the first half and stopped (through the admin API: the
            // same upload): the page's announcement finds it and sends only the rest.
            let half = wimData.count / 2
            let announced = try await harness.admin("POST", "/library/uploads/lab.wim", json: #"{"size": \#(wimData.count), "sha256": "\#(sha256)"}"#)
            #expect(announced.status == 200 && announced.json["offset"] as? Int == 0, "\(announced.text)")
            let firstHalf = try await harness.request("PUT", "/api/v1/admin/library/uploads/lab.wim", headers: ["Upload-Offset: 0"],
                                                      body: wimData.prefix(half), token: harness.adminToken)
            #expect(firstHalf.status == 200 && firstHalf.json["offset"] as? Int == half, "\(firstHalf.text)")

            // The Images page: upload in 4 KiB pieces (several PUTs), the bar to 100%, the import
            // job to its end, the WIM's images listed; then image 2 extracted into the library.
            let jobsSucceeded = "Array.from(document.querySelectorAll('#library-jobs tr.job'))"
            let first = try await Self.browse(harness, harness.base + "/dashboard/images", cookie: session.cookie, steps: [
                ["label": "page", "wait": "\(Self.ready) && document.querySelector('nav.top a[href=\"/dashboard/images\"]') !== null"],
                ["label": "choose the file", "file": "#upload-form input[type=file]", "path": wim],
                ["label": "upload", "run": """
                    document.getElementById('upload-form').dataset.pieceBytes = '4096';
                    document.querySelector('#upload-form button[type=submit]').click(); true
                    """],
                ["label": "uploaded", "wait": "document.getElementById('upload-progress').dataset.phase === 'uploaded' && document.getElementById('upload-progress').dataset.percent === '100.0'", "timeout": 60],
                ["label": "imported", "wait": "\(jobsSucceeded).some(row => row.dataset.state === 'succeeded') && document.querySelector('#library-wims .wim') !== null", "timeout": 60],
                ["label": "import seen", "run": """
                    JSON.stringify({log: document.getElementById('upload-log').innerText, bar: document.getElementById('upload-progress').innerText,
                                    wims: document.getElementById('library-wims').innerText, jobs: document.getElementById('library-jobs').innerText,
                                    options: Array.from(document.querySelectorAll('#extract-form option')).map(o => o.textContent)})
                    """],
                ["label": "extract", "run": """
                    (function () {
                      const form = document.getElementById('extract-form');
                      const select = form.elements.namedItem('source');
                      select.value = Array.from(select.options).find(option => option.value.endsWith('|2')).value;
                      form.elements.namedItem('image').value = \(Self.literal(Self.imageName));
                      form.querySelector('button[type=submit]').click();
                      return true;
                    })()
                    """],
                ["label": "extracted", "wait": "Array.from(document.querySelectorAll('#library-images tr.library-image')).some(row => row.dataset.image === \(Self.literal(Self.imageName)))", "timeout": 60],
                ["label": "library seen", "run": """
                    JSON.stringify({images: document.getElementById('library-images').innerText, jobs: document.getElementById('library-jobs').innerText,
                                    extract: document.querySelector('#extract-form .form-message').innerText})
                    """],
                ["label": "whole page", "screenshot": Self.screenshot(harness, "images-whole.png")],
            ], screenshot: Self.screenshot(harness, "images.png"))

            let imported = Self.value(first, "import seen")
            let log = imported["log"] as? String ?? ""
            #expect(log.contains("holds \(half) bytes") && log.contains("resuming"), "no resumption: \(log)")
            #expect(log.contains("import job"), "\(log)")
            #expect((imported["bar"] as? String ?? "").contains("100%"))
            let wims = imported["wims"] as? String ?? ""
            for expected in ["library/wims/lab.wim", sha256, "Image One", "Image Two", Self.markupName, "Professional", "x64", "en-US", "10.0.22631.2861"] {
                #expect(wims.contains(expected), "the WIM's listing lacks \(expected): \(wims)")
            }
            #expect((imported["jobs"] as? String ?? "").contains("import library/wims/lab.wim"))
            let library = Self.value(first, "library seen")
            let images = library["images"] as? String ?? ""
            for expected in [Self.imageName, "version 1", "Professional", "x64", "en-US", "10.0.22631.2861"] {
                #expect(images.contains(expected), "the library's listing lacks \(expected): \(images)")
            }
            #expect((library["jobs"] as? String ?? "").contains("made \(Self.imageName) version 1"), "\(library)")
            #expect((try? FileManager.default.attributesOfItem(atPath: Self.screenshot(harness, "images.png"))[.size] as? Int) ?? 0 > 1000, "no screenshot")
            let html = try await harness.request("GET", "/dashboard/images", headers: ["Cookie: \(session.cookie)"]).text
            #expect(html.contains("Image &quot;Three&quot; &lt;b&gt;&amp;amp;&lt;/b&gt;") && !html.contains("<b>&amp;</b>"), "the WIM's image name is not escaped")
            // The server got the file whole and verified: what the library recorded is its SHA-256.
            let recorded = try await harness.admin("GET", "/library").json["wims"] as? [[String: Any]] ?? []
            #expect(recorded.first?["sha256"] as? String == sha256 && recorded.first?["file"] as? String == "library/wims/lab.wim", "\(recorded)")

            // A sequence names version 1: the page's delete must show the API's 409 as it came.
            let pinned = """
                {"name": "Pinned", "steps": [
                  {"type": "findWindows", "name": "Find Windows", "as": "windows"},
                  {"type": "applyImage", "name": "Apply", "image": {"library": "\(Self.imageName)", "version": 1}, "target": "windows"}
                ]}
                """
            try await harness.putSequence("pinned", pinned)
            // A machine that got version 1: the image's page lists which machine got which version.
            try await harness.putRules(#"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "pinned", "variables": {}}]}"#)
            let checkIn = try await harness.checkIn(macs: ["52:54:00:1a:00:01"])
            let deploymentID = try #require((checkIn.json["deployment"] as? [String: Any])?["id"] as? String, "\(checkIn.text)")

            // The image's page: service version 1 (a file from the content folder) into version 2, then
            // try to delete version 1 (two clicks: the first arms the button).
            let encoded = Self.imageName.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
            let second = try await Self.browse(harness, harness.base + "/dashboard/images/" + encoded, cookie: session.cookie, steps: [
                ["label": "page", "wait": Self.ready],
                ["label": "before", "run": "JSON.stringify({versions: document.querySelectorAll('#image-versions tr.version').length, sequences: document.getElementById('image-sequences').innerText})"],
                ["label": "service", "run": """
                    (function () {
                      const form = document.getElementById('service-form');
                      form.elements.namedItem('files').value = 'extras/hello.txt -> /Windows/hello.txt';
                      form.querySelector('button[type=submit]').click();
                      return true;
                    })()
                    """],
                ["label": "serviced", "wait": "document.querySelector('#image-versions tr.version[data-version=\"2\"]') !== null", "timeout": 90],
                ["label": "delete", "run": """
                    (function () {
                      const button = document.querySelector('#image-versions button[data-action="delete"][data-version="1"]');
                      button.click();
                      const armed = button.textContent;
                      button.click();
                      return armed;
                    })()
                    """],
                ["label": "refused", "wait": "document.querySelector('.with-actions .action-message').textContent.includes('409')", "timeout": 20],
                ["label": "seen", "run": """
                    JSON.stringify({message: document.querySelector('.with-actions .action-message').textContent,
                                    messageClass: document.querySelector('.with-actions .action-message').className,
                                    versions: document.getElementById('image-versions').innerText,
                                    rows: Array.from(document.querySelectorAll('#image-versions tr.version')).map(row => row.dataset.version),
                                    history: document.getElementById('image-history').innerText,
                                    sequences: document.getElementById('image-sequences').innerText,
                                    deployments: document.getElementById('image-deployments').innerText,
                                    serviceMessage: document.querySelector('#service-form .form-message').textContent})
                    """],
                ["label": "whole page", "screenshot": Self.screenshot(harness, "image-whole.png")],
            ], screenshot: Self.screenshot(harness, "image.png"))

            let before = Self.value(second, "before")
            #expect(before["versions"] as? Int == 1, "\(before)")
            #expect((before["sequences"] as? String ?? "").contains("pinned") && (before["sequences"] as? String ?? "").contains("version 1"), "\(before)")
            let armed = ((second["steps"] as? [[String: Any]]) ?? []).first { $0["label"] as? String == "delete" }?["value"] as? String
            #expect(armed == "Delete version 1?", "the first click did not ask: \(armed ?? "nil")")
            let seen = Self.value(second, "seen")
            let message = seen["message"] as? String ?? ""
            #expect(message.contains("409") && message.contains("sequence \"pinned\" names version 1 of \"\(Self.imageName)\""), "\(message)")
            #expect((seen["messageClass"] as? String ?? "").contains("error"))
            #expect(seen["rows"] as? [String] == ["2", "1"], "version 1 must still be listed: \(seen)")
            let versions = seen["versions"] as? String ?? ""
            #expect(versions.contains("serviced from version 1") && versions.contains("added extras/hello.txt → /Windows/hello.txt"), "\(versions)")
            #expect(versions.contains("extracted from image 2 of library/wims/lab.wim"), "\(versions)")
            #expect((seen["history"] as? String ?? "").contains("version 2 from version 1"), "\(seen)")
            #expect((seen["serviceMessage"] as? String ?? "").contains("Servicing job"), "\(seen)")
            let deployments = seen["deployments"] as? String ?? ""
            #expect(deployments.contains("version 1: 1 deployment on 1 machine") && deployments.contains(String(deploymentID.prefix(8)))
                    && deployments.contains("52:54:00:1a:00:01"), "\(deployments)")
            #expect((try? FileManager.default.attributesOfItem(atPath: Self.screenshot(harness, "image.png"))[.size] as? Int) ?? 0 > 1000, "no screenshot")

            // What the page showed is what the library holds: version 1 kept, version 2 with the file.
            let detail = try await harness.admin("GET", "/library/images/" + encoded).json["image"] as? [String: Any] ?? [:]
            let stored = detail["versions"] as? [[String: Any]] ?? []
            #expect(stored.map { $0["version"] as? Int } == [1, 2], "\(detail)")
            let secondFile = harness.content + "/" + (stored.last?["file"] as? String ?? "")
            #expect(try run(["wimlib-imagex", "dir", secondFile, "1"]).output.contains("/Windows/hello.txt"))
        }
    }
}
