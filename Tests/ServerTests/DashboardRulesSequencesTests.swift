import Foundation
import Server
import TestSupport
import Testing

/// The dashboard's Rules and Sequences pages (issue 20) in a real headless Chromium on a real
/// server, and their admin API: a rule added through the page changes what the tester says a
/// known machine gets; a sequence edited in the browser shows its error at its JSON path as it
/// is typed, is saved, its earlier version kept and restored; the dry run of a sequence on a
/// machine; a viewer sees no edit control and is refused an edit; the audit log shows the
/// changes. Versions are kept on SQLite and PostgreSQL alike.
@Suite(.serialized)
struct DashboardRulesSequencesTests {
    static let mac = "52:54:00:aa:00:01"
    static let secretValue = "Rule-Secret-Value-42!"

    /// A machine with a disk that holds Windows: its check-in, as the agent sends it.
    static let checkInBody = """
        {"facts": {"macAddresses": ["\(mac)"], "serialNumber": "LAB-0001", "manufacturer": "QEMU", "model": "Lab Model",
                   "firmware": "uefi", "memoryMiB": 8192, "cpuCount": 4, "architecture": "amd64",
                   "disks": [{"path": "/dev/sda", "size": 137438953472, "model": "Lab SSD", "transport": "sata",
                              "removable": false, "hasWindows": true}]}}
        """

    /// Chooses the disk, lays it out, and one step whose condition does not hold.
    static let windowsSequence = """
        {"name": "Windows lab", "variables": {"Site": "lab"},
         "steps": [
          {"type": "selectDisk", "name": "Choose the disk", "rules": {"wipe": true, "transport": ["sata", "nvme"]}},
          {"type": "partition", "name": "Lay out", "layout": {"table": "gpt", "partitions": [
            {"id": "system", "role": "esp", "size": "100MiB", "format": {"filesystem": "fat32", "label": "SYSTEM"}},
            {"id": "windows", "role": "basic", "size": "rest", "format": {"filesystem": "ntfs", "label": "Windows"}}]}},
          {"type": "runCommand", "name": "Only on BIOS", "condition": {"equals": ["${Firmware}", "bios"]}, "command": ["true"]},
          {"type": "reboot", "name": "Restart"}]}
        """

    static func json(_ value: Any) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: value)) ?? Data(), as: UTF8.self)
    }

    /// A known, approved machine with facts (checked in once); its id.
    static func machine(_ harness: ServerHarness) async throws -> String {
        let answer = try await harness.request("POST", "/api/v1/agents/checkin", body: Data(checkInBody.utf8))
        let id = try #require(answer.json["machineId"] as? String, "\(answer.text)")
        if answer.json["status"] as? String == "pending" {
            #expect(try await harness.admin("POST", "/machines/\(id)/approve").status == 200)
        }
        return id
    }

    /// A dashboard session of a user (made through the admin API with `role`).
    static func login(_ harness: ServerHarness, user: String, role: String) async throws -> (cookie: String, csrf: String) {
        let password = "\(user)-password-1"
        let made = try await harness.admin("POST", "/users", json: json(["name": user, "role": role, "password": password]))
        #expect(made.status == 201, "\(made.text)")
        let answer = try await harness.postForm("/dashboard/login", ["user": user, "password": password, "next": "/dashboard"])
        #expect(answer.status == 303, "\(answer.text)")
        let cookie = (answer.headers["set-cookie"] ?? "").components(separatedBy: ";").first ?? ""
        let page = try await harness.request("GET", "/dashboard/rules", headers: ["Cookie: \(cookie)"])
        return (cookie, ServerHarness.csrfToken(in: page.text) ?? "")
    }

    static func browse(_ harness: ServerHarness, _ path: String, cookie: String, _ steps: [[String: Any]], _ screenshot: String) async throws -> [String: Any] {
        try await DashboardImagesTests.browse(harness, harness.base + path, cookie: cookie, steps: steps,
                                              screenshot: DashboardImagesTests.screenshot(harness, screenshot))
    }

    static func value(_ answer: [String: Any], _ label: String) -> [String: Any] { DashboardImagesTests.value(answer, label) }

    static func literal(_ text: String) -> String { DashboardImagesTests.literal(text) }

    @Test func ruleAddedInTheBrowserChangesTheTestersAnswerAndIsAudited() async throws {
        try await ServerHarness.with { harness in
            try await harness.putSequence("base")
            try await harness.putSequence("lab")
            try await harness.putRules(#"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "base", "variables": {}}]}"#)
            let machine = try await Self.machine(harness)
            let admin = try await Self.login(harness, user: "ada", role: "administrator")

            let test = """
                (function () {
                  const form = document.getElementById('rule-test-form');
                  form.querySelector('[name=machine]').value = \(Self.literal(machine));
                  form.requestSubmit();
                  return true;
                })()
                """
            let result = """
                JSON.stringify({outcome: document.getElementById('rule-test').dataset.outcome,
                                sequence: document.getElementById('rule-test').dataset.sequence,
                                rule: document.getElementById('rule-test').dataset.rule || null,
                                text: document.getElementById('rule-test').innerText})
                """
            let answer = try await Self.browse(harness, "/dashboard/rules", cookie: admin.cookie, [
                ["label": "page", "wait": "document.getElementById('rule-test-form') !== null && document.getElementById('add-rule-form') !== null"],
                ["label": "test before", "run": test],
                ["label": "answered before", "wait": "document.getElementById('rule-test') !== null"],
                ["label": "before", "run": result],
                ["label": "add", "run": """
                    (function () {
                      const form = document.getElementById('add-rule-form');
                      form.querySelector('[name=name]').value = 'lab';
                      form.querySelector('[name=match]').value = 'mac';
                      form.querySelector('[name=pattern]').value = '52:54:00:AA:*';
                      form.querySelector('[name=sequence]').value = 'lab';
                      form.querySelector('[name=variables]').value = 'LocalAdminPassword=\(Self.secretValue)\\nSite=lab';
                      form.querySelector('[name=position]').value = '0';
                      form.requestSubmit();
                      return true;
                    })()
                    """],
                ["label": "added", "wait": "document.getElementById('notice') !== null && document.getElementById('notice').textContent === 'Rule added.'"],
                ["label": "list", "run": """
                    JSON.stringify({rows: document.querySelectorAll('#rule-list tr.rule').length,
                                    first: document.querySelector('#rule-list tr.rule').dataset.name,
                                    text: document.getElementById('rule-list').innerText,
                                    html: document.getElementById('rules').innerHTML})
                    """],
                ["label": "test after", "run": test],
                ["label": "answered after", "wait": "document.getElementById('rule-test') !== null && document.getElementById('rule-test').dataset.outcome === 'matched'"],
                ["label": "after", "run": result],
            ], "rules.png")
            let before = Self.value(answer, "before")
            #expect(before["outcome"] as? String == "default" && before["sequence"] as? String == "base", "\(before)")
            let list = Self.value(answer, "list")
            #expect(list["rows"] as? Int == 2 && list["first"] as? String == "lab", "\(list)")
            #expect((list["text"] as? String ?? "").contains("LocalAdminPassword = set"), "\(list)")
            #expect(!(list["html"] as? String ?? "").contains(Self.secretValue), "the page shows a secret")
            let after = Self.value(answer, "after")
            #expect(after["outcome"] as? String == "matched" && after["sequence"] as? String == "lab" && after["rule"] as? String == "0", "\(after)")
            #expect((after["text"] as? String ?? "").contains("MAC \(Self.mac) matches \"52:54:00:AA:*\""), "\(after)")
            #expect(!(after["text"] as? String ?? "").contains(Self.secretValue), "the tester shows a secret")

            // The stored rule holds the secret sealed; the API's tester says the same as the page.
            let rules = try await harness.server.storage.rules()
            #expect(rules.first?.name == "lab" && rules.first?.variables["Site"] == "lab" && rules.first?.variables["LocalAdminPassword"] != Self.secretValue)
            let api = try await harness.admin("POST", "/rules/test", json: Self.json(["machine": machine]))
            #expect(api.status == 200 && api.json["chosen"] as? Int == 0 && api.json["sequence"] as? String == "lab", "\(api.text)")
            #expect((api.json["variables"] as? [String: String])?["LocalAdminPassword"] == "(secret, set)" && !api.text.contains(Self.secretValue))
            // A draft that drops the rule: the machine falls back to default again, nothing stored changes.
            let draft = try await harness.admin("POST", "/rules/test", json: Self.json([
                "machine": machine, "rules": [["name": "default", "match": "any", "pattern": "*", "sequence": "base", "variables": [:] as [String: String]]]]))
            #expect(draft.json["outcome"] as? String == "default" && draft.json["draft"] as? Bool == true, "\(draft.text)")
            #expect(try await harness.server.storage.rules().count == 2)

            // A form the API's check refuses: the page again, the error at the rule and field.
            let refused = try await harness.postForm("/dashboard/rules", [
                "csrf": admin.csrf, "list": try await Self.listField(harness, cookie: admin.cookie), "name": "empty", "match": "serial",
                "pattern": "", "sequence": "lab", "variables": "", "position": "2"], cookie: admin.cookie)
            #expect(refused.status == 422 && refused.text.contains("data-field=\"rules[2].pattern\"")
                    && refused.text.contains("name=\"pattern\" value=\"\" placeholder=\"52:54:00:* or Latitude*\" aria-invalid=\"true\""), "\(refused.status)")
            // Moved to the end and back by its forms; deleted; each recorded with before and after.
            let moved = try await harness.postForm("/dashboard/rules/0/move", [
                "csrf": admin.csrf, "list": try await Self.listField(harness, cookie: admin.cookie), "to": "down"], cookie: admin.cookie)
            #expect(moved.status == 303, "\(moved.text)")
            #expect(try await harness.server.storage.rules().map(\.name) == ["default", "lab"])
            let stale = try await harness.postForm("/dashboard/rules/1/delete", ["csrf": admin.csrf, "list": "old"], cookie: admin.cookie)
            #expect(stale.status == 409, "a form made from another list was taken")

            let audit = try await harness.admin("GET", "/audit?object=rules")
            let entries = audit.json["entries"] as? [[String: Any]] ?? []
            let actions = entries.compactMap { $0["action"] as? String }
            #expect(actions.contains("POST /dashboard/rules") && actions.contains("POST /dashboard/rules/{index}/move"), "\(actions)")
            #expect(!audit.text.contains(Self.secretValue), "the audit log holds a secret")
            let page = try await Self.browse(harness, "/dashboard/audit?object=rules", cookie: admin.cookie, [
                ["label": "audit", "wait": "document.querySelectorAll('tr.audit-entry').length >= 3"],
                ["label": "entries", "run": "JSON.stringify({text: document.getElementById('audit').innerText})"],
            ], "rules-audit.png")
            let text = Self.value(page, "entries")["text"] as? String ?? ""
            #expect(text.contains("POST /dashboard/rules") && text.contains("ada") && !text.contains(Self.secretValue), "\(text)")
        }
    }

    /// The `list` field the Rules page's forms carry (which list of rules they were made from).
    static func listField(_ harness: ServerHarness, cookie: String) async throws -> String {
        let page = try await harness.request("GET", "/dashboard/rules", headers: ["Cookie: \(cookie)"]).text
        guard let start = page.range(of: "name=\"list\" value=\"") else { return "" }
        return String(page[start.upperBound...].prefix { $0 != "\"" })
    }

    @Test func sequenceEditedInTheBrowserCheckedAsTypedSavedRestoredAndPlanned() async throws {
        try await ServerHarness.with { harness in
            try await harness.putSequence("win", Self.windowsSequence)
            try await harness.putRules(#"{"rules": [{"name": "lab", "match": "mac", "pattern": "52:54:00:aa:*", "sequence": "win", "variables": {"Site": "rule"}}]}"#)
            let machine = try await Self.machine(harness)
            let admin = try await Self.login(harness, user: "ada", role: "administrator")
            let broken = Self.windowsSequence.replacingOccurrences(of: "\"type\": \"reboot\"", with: "\"type\": \"rebot\"")
            let fixed = Self.windowsSequence.replacingOccurrences(of: "\"Restart\"", with: "\"Restart at the end\"")

            // Typed (an input event per change, as a keyboard makes): the error at its JSON path,
            // from the server's check; fixed, valid again; saved as version 2.
            let answer = try await Self.browse(harness, "/dashboard/sequences/win", cookie: admin.cookie, [
                ["label": "page", "wait": "document.getElementById('sequence-form') !== null && document.getElementById('sequence-form').dataset.ready === 'true'"],
                ["label": "type an error", "run": """
                    (function () {
                      const editor = document.getElementById('sequence-body');
                      editor.focus();
                      editor.value = \(Self.literal(broken));
                      editor.dispatchEvent(new Event('input', {bubbles: true}));
                      return true;
                    })()
                    """],
                ["label": "error shown", "wait": "Array.from(document.querySelectorAll('#sequence-issues li.error')).some(function (li) { return li.dataset.path === '$.steps[3].type'; })"],
                ["label": "error", "run": """
                    JSON.stringify({status: document.getElementById('sequence-check').textContent,
                                    invalid: document.getElementById('sequence-body').getAttribute('aria-invalid'),
                                    issues: Array.from(document.querySelectorAll('#sequence-issues li')).map(function (li) { return li.dataset.path + ' ' + li.textContent; })})
                    """],
                ["label": "fix", "run": """
                    (function () {
                      const editor = document.getElementById('sequence-body');
                      editor.value = \(Self.literal(fixed));
                      editor.dispatchEvent(new Event('input', {bubbles: true}));
                      return true;
                    })()
                    """],
                ["label": "valid", "wait": "document.getElementById('sequence-check').className === 'valid'"],
                ["label": "save", "run": "document.getElementById('sequence-form').requestSubmit(); true"],
                ["label": "saved", "wait": "document.getElementById('notice') !== null && document.querySelectorAll('#version-list tr.version').length === 2"],
                ["label": "versions", "run": """
                    JSON.stringify({notice: document.getElementById('notice').textContent,
                                    versions: Array.from(document.querySelectorAll('#version-list tr.version')).map(function (tr) { return tr.dataset.version; }),
                                    restore: document.querySelectorAll('#version-list form.restore').length})
                    """],
                ["label": "restore", "run": "document.querySelector('#version-list tr.version[data-version=\"1\"] form.restore').requestSubmit(); true"],
                ["label": "restored", "wait": "document.getElementById('notice') !== null && document.getElementById('notice').textContent.indexOf('Version 1 restored as version 3') === 0"],
                ["label": "after restore", "run": "JSON.stringify({text: document.getElementById('sequence-body').value})"],
            ], "sequence-editor.png")
            let error = Self.value(answer, "error")
            let issues = error["issues"] as? [String] ?? []
            #expect(issues.contains { $0.hasPrefix("$.steps[3].type") && $0.contains("rebot") }, "\(error)")
            #expect((error["status"] as? String ?? "").contains("error") && error["invalid"] as? String == "true", "\(error)")
            let versions = Self.value(answer, "versions")
            #expect(versions["versions"] as? [String] == ["2", "1"] && versions["restore"] as? Int == 1, "\(versions)")
            #expect((versions["notice"] as? String ?? "").contains("Saved as version 2"), "\(versions)")
            #expect(!(Self.value(answer, "after restore")["text"] as? String ?? "").contains("Restart at the end"))
            let stored = try #require(try await harness.server.storage.sequence(name: "win"))
            #expect(!stored.body.contains("Restart at the end") && stored.body.contains("\"Restart\""))
            let kept = try await harness.admin("GET", "/sequences/win/versions")
            let list = kept.json["versions"] as? [[String: Any]] ?? []
            #expect(list.compactMap { $0["version"] as? Int } == [3, 2, 1] && list.first?["savedBy"] as? String == "ada", "\(kept.text)")

            // Without script: a save with the error answers the page again, the error at its path.
            let refused = try await harness.postForm("/dashboard/sequences/win", ["csrf": admin.csrf, "body": broken, "base": "3"], cookie: admin.cookie)
            #expect(refused.status == 422 && refused.text.contains("data-path=\"$.steps[3].type\"") && refused.text.contains("rebot"), "\(refused.status)")
            #expect(try await harness.server.storage.sequenceVersions(name: "win").count == 3, "a refused save was kept")
            // The same check through the API.
            let validate = try await harness.request("POST", "/api/v1/admin/sequences/win/validate", body: Data(broken.utf8), token: harness.adminToken)
            #expect(validate.json["valid"] as? Bool == false
                    && (validate.json["issues"] as? [[String: Any]] ?? []).contains { $0["path"] as? String == "$.steps[3].type" }, "\(validate.text)")

            // The dry run on the machine: the disk chosen and what it would wipe, the BIOS step skipped.
            let plan = try await Self.browse(harness, "/dashboard/sequences/win", cookie: admin.cookie, [
                ["label": "page", "wait": "document.getElementById('plan-form') !== null"],
                ["label": "plan", "run": "document.querySelector('#plan-form [name=machine]').value = \(Self.literal(machine)); document.getElementById('plan-form').requestSubmit(); true"],
                ["label": "planned", "wait": "document.getElementById('plan-result') !== null"],
                ["label": "result", "run": """
                    JSON.stringify({steps: Array.from(document.querySelectorAll('#plan-steps tr.plan-step')).map(function (tr) { return tr.dataset.step + ' ' + tr.dataset.verdict; }),
                                    wipes: document.getElementById('plan-wipes').innerText, text: document.getElementById('plan-result').innerText})
                    """],
            ], "sequence-plan.png")
            let result = Self.value(plan, "result")
            #expect(result["steps"] as? [String] == ["1 runs", "2 runs", "3 skipped", "4 runs"], "\(result)")
            let text = result["text"] as? String ?? ""
            #expect(text.contains("/dev/sda") && text.contains("WIPE") && text.contains("rule 0 (lab)"), "\(text)")
            let api = try await harness.admin("POST", "/sequences/win/plan", json: Self.json(["machine": machine]))
            let wipes = api.json["wipes"] as? [String] ?? []
            #expect(api.status == 200 && api.json["fails"] as? Bool == false && wipes.count == 1, "\(api.text)")
            #expect(wipes.first.map { $0.contains("step 2") && $0.contains("WIPE everything on /dev/sda") && $0.contains("holds Windows") } == true, "\(wipes)")
            #expect((api.json["variables"] == nil) && api.json["rule"] as? Int == 0, "\(api.text)")
            #expect(try await harness.admin("POST", "/sequences/win/plan", json: #"{"machine": "nope"}"#).status == 422)

            // The audit log: the save and the restore, with the sequence before and after.
            let audit = try await harness.admin("GET", "/audit?object=sequence:win")
            let actions = (audit.json["entries"] as? [[String: Any]] ?? []).compactMap { $0["action"] as? String }
            #expect(actions.starts(with: ["POST /dashboard/sequences/{name}/versions/{version}/restore", "POST /dashboard/sequences/{name}"]), "\(actions)")
        }
    }

    @Test func viewerSeesNoEditControlsAndIsRefusedEdits() async throws {
        try await ServerHarness.with { harness in
            try await harness.putSequence("win", Self.windowsSequence)
            try await harness.putSequence("win", Self.windowsSequence.replacingOccurrences(of: "\"Restart\"", with: "\"Restart now\""))
            try await harness.putRules(#"{"rules": [{"name": "lab", "match": "mac", "pattern": "52:54:00:aa:*", "sequence": "win", "variables": {}}]}"#)
            let machine = try await Self.machine(harness)
            let viewer = try await Self.login(harness, user: "vera", role: "viewer")

            let answer = try await Self.browse(harness, "/dashboard/sequences/win", cookie: viewer.cookie, [
                ["label": "page", "wait": "document.getElementById('sequence-text') !== null"],
                ["label": "controls", "run": """
                    JSON.stringify({editor: document.getElementById('sequence-form') !== null, textarea: document.querySelectorAll('textarea').length,
                                    restore: document.querySelectorAll('form.restore').length, plan: document.getElementById('plan-form') !== null,
                                    versions: document.querySelectorAll('#version-list tr.version').length})
                    """],
                ["label": "rules page", "navigate": harness.base + "/dashboard/rules"],
                ["label": "rules", "wait": "document.getElementById('rule-test-form') !== null"],
                ["label": "rule controls", "run": """
                    JSON.stringify({add: document.getElementById('add-rule-form') !== null, edit: document.querySelectorAll('details.edit-rule').length,
                                    forms: Array.from(document.querySelectorAll('form')).map(function (f) { return f.getAttribute('action'); })})
                    """],
            ], "sequence-viewer.png")
            let controls = Self.value(answer, "controls")
            #expect(controls["editor"] as? Bool == false && controls["textarea"] as? Int == 0 && controls["restore"] as? Int == 0, "\(controls)")
            #expect(controls["plan"] as? Bool == true && controls["versions"] as? Int == 2, "\(controls)")
            let ruleControls = Self.value(answer, "rule controls")
            #expect(ruleControls["add"] as? Bool == false && ruleControls["edit"] as? Int == 0, "\(ruleControls)")
            #expect(ruleControls["forms"] as? [String] == ["/dashboard/logout", "/dashboard/rules/test"], "\(ruleControls)")

            // The tester is a viewer's; every edit is refused with 403, nothing changes.
            let tested = try await harness.postForm("/dashboard/rules/test", ["csrf": viewer.csrf, "machine": machine], cookie: viewer.cookie)
            #expect(tested.status == 200 && tested.text.contains("data-outcome=\"matched\""), "\(tested.status)")
            let add = try await harness.postForm("/dashboard/rules", ["csrf": viewer.csrf, "name": "x", "match": "any", "pattern": "*", "sequence": "win"],
                                                 cookie: viewer.cookie)
            #expect(add.status == 403 && add.text.contains("administrator role"), "\(add.status) \(add.text)")
            let save = try await harness.postForm("/dashboard/sequences/win", ["csrf": viewer.csrf, "body": Self.windowsSequence], cookie: viewer.cookie)
            #expect(save.status == 403, "\(save.status)")
            let restore = try await harness.postForm("/dashboard/sequences/win/versions/1/restore", ["csrf": viewer.csrf], cookie: viewer.cookie)
            #expect(restore.status == 403, "\(restore.status)")
            #expect(try await harness.server.storage.sequenceVersions(name: "win").count == 2)
            #expect(try await harness.server.storage.rules().count == 1)
        }
    }

    @Test("versions kept, listed, read and restored; secrets sealed in every version", arguments: StorageKind.allCases)
    func versionsOnEachDatabase(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage) { harness in
            let made = try await harness.admin("POST", "/users", json: Self.json(["name": "ada", "role": "administrator", "password": "ada-password-1"]))
            #expect(made.status == 201)
            let token = try #require(try await harness.admin("POST", "/tokens", json: Self.json(["user": "ada", "label": "test"])).json["secret"] as? String)
            func put(_ body: String) async throws -> HTTPAnswer {
                let answer = try await harness.request("PUT", "/api/v1/admin/sequences/seq", body: Data(body.utf8), token: token)
                return HTTPAnswer(status: answer.status, json: answer.json, text: answer.text)
            }
            let secret = "Version-Secret-1!"
            let first = #"{"name": "One", "variables": {"AdminPassword": "\#(secret)"}, "steps": [{"type": "reboot"}]}"#
            #expect(try await put(first).json["version"] as? Int == 1)
            // The secret sent back as the placeholder keeps its value in the next version.
            #expect(try await put(#"{"name": "Two", "variables": {"AdminPassword": "(secret, set)"}, "steps": [{"type": "reboot"}]}"#).json["version"] as? Int == 2)
            #expect(try await put(#"{"name": "Three", "steps": [{"type": "poweroff"}]}"#).json["version"] as? Int == 3)
            let refused = try await put(#"{"name": "Bad", "steps": [{"type": "nothing"}]}"#)
            #expect(refused.status == 422 && refused.json["field"] as? String == "$.steps[0].type", "\(refused.text)")

            let versions = try await harness.server.storage.sequenceVersions(name: "seq")
            #expect(versions.map(\.version) == [3, 2, 1] && versions.map(\.isCurrent) == [true, false, false])
            #expect(versions.allSatisfy { $0.savedBy == "ada" } && versions[1].replacedBy == "ada" && versions[1].replaced != nil)
            #expect(!versions.contains { $0.body.contains(secret) }, "a version holds a secret in plain text")
            let one = try await harness.admin("GET", "/sequences/seq/versions/1")
            #expect(one.status == 200 && (one.json["body"] as? String ?? "").contains("(secret, set)") && !one.text.contains(secret), "\(one.text)")
            #expect(try await harness.admin("GET", "/sequences/seq/versions/9").status == 404)
            #expect(try await harness.admin("GET", "/sequences/none/versions").status == 404)

            // Restored: version 1's body (its secret still sealed) becomes version 4.
            let restored = try await harness.request("POST", "/api/v1/admin/sequences/seq/versions/1/restore", token: token)
            #expect(restored.status == 200 && restored.json["version"] as? Int == 4, "\(restored.text)")
            #expect(try await harness.admin("POST", "/sequences/seq/versions/4/restore").status == 409)
            let current = try #require(try await harness.server.storage.sequence(name: "seq"))
            #expect(current.body.contains("\"One\"") && !current.body.contains(secret))
            #expect(try await harness.admin("GET", "/sequences/seq").text.contains("(secret, set)"))
            let list = try await harness.admin("GET", "/sequences/seq/versions").json["versions"] as? [[String: Any]] ?? []
            #expect(list.compactMap { $0["version"] as? Int } == [4, 3, 2, 1] && list.allSatisfy { $0["body"] == nil }, "\(list)")
            let audit = try await harness.admin("GET", "/audit?object=sequence:seq").json["entries"] as? [[String: Any]] ?? []
            #expect(audit.first?["action"] as? String == "POST /api/v1/admin/sequences/{name}/versions/{version}/restore", "\(audit)")
        }
    }

    struct HTTPAnswer {
        var status: Int
        var json: [String: Any]
        var text: String
    }
}
