import Foundation
import Server
import TestSupport
import Testing

/// The dashboard's Machines pages (issue 20) in a real headless Chromium, and what they stand
/// on through the admin API on both databases: the inventory's filters, a machine's facts and
/// deployment history, registering one machine and a CSV batch (all or none, errors by line and
/// column), rejecting (and the check-in told so), forgetting, and roles: a viewer sees no button
/// and is refused an action with a 403 page; every change in the audit log.
@Suite(.serialized)
struct DashboardMachinesTests {
    /// A check-in's body with disks (one holding Windows when `windows`), memory and CPUs.
    static func facts(macs: [String], serial: String? = nil, model: String?, firmware: String = "uefi", windows: Bool = false) -> Data {
        var facts: [String: Any] = [
            "macAddresses": macs, "firmware": firmware, "memoryMiB": 16384, "cpuCount": 8, "cpuModel": "Intel Core i7-1185G7",
            "architecture": "amd64", "manufacturer": "HP",
            "disks": [["path": "/dev/nvme0n1", "size": 512_110_190_592, "model": "Samsung SSD 980", "serial": "S64DISK01",
                       "transport": "nvme", "removable": false, "hasWindows": windows] as [String: Any],
                      ["path": "/dev/sda", "size": 32_000_000_000, "model": "USB Stick", "transport": "usb", "removable": true,
                       "hasWindows": false] as [String: Any]],
        ]
        if let serial { facts["serialNumber"] = serial }
        if let model { facts["model"] = model }
        return (try? JSONSerialization.data(withJSONObject: ["facts": facts])) ?? Data()
    }

    static func checkIn(_ harness: ServerHarness, _ body: Data) async throws -> ServerHarness.Answer {
        try await harness.request("POST", "/api/v1/agents/checkin", body: body)
    }

    static func machineID(_ harness: ServerHarness, mac: String) async throws -> String {
        let machines = try await harness.admin("GET", "/machines").json["machines"] as? [[String: Any]] ?? []
        return try #require(machines.first { ($0["macs"] as? [String])?.contains(mac) == true }?["id"] as? String, "no machine with \(mac)")
    }

    /// Three machines: an EliteBook deployed by "base" (4 min 12 s, succeeded, Windows on its
    /// disk), a ThinkPad under BIOS waiting for approval, another EliteBook waiting too.
    static func fleet(_ harness: ServerHarness) async throws -> (deployed: String, thinkpad: String, second: String, deployment: String) {
        try await harness.putSequence("base")
        try await harness.putSequence("other")
        try await harness.putRules(#"{"rules": [{"name": "fleet", "match": "mac", "pattern": "52:54:00:e1:*", "sequence": "base", "variables": {}}]}"#)
        let assigned = try await checkIn(harness, facts(macs: ["52:54:00:e1:00:01"], serial: "CZC111", model: "EliteBook 840", windows: true))
        let deployment = try #require((assigned.json["deployment"] as? [String: Any])?["id"] as? String, "\(assigned.text)")
        let token = try #require((assigned.json["deployment"] as? [String: Any])?["token"] as? String)
        let events = try await harness.request("POST", "/api/v1/deployments/\(deployment)/events", body: ServerHarness.batch([
            ["sequence": 1, "time": "2026-11-23T10:00:00.000Z", "kind": "sequenceStarted", "name": "base"],
            ["sequence": 2, "time": "2026-11-23T10:04:12.000Z", "kind": "result", "status": "success", "duration": 252],
        ]), token: token)
        #expect(events.status == 200, "\(events.text)")
        let pending = try await checkIn(harness, facts(macs: ["52:54:00:f2:00:02"], serial: "PF222", model: "ThinkPad T14", firmware: "bios"))
        #expect(pending.json["status"] as? String == "pending", "\(pending.text)")
        _ = try await checkIn(harness, facts(macs: ["52:54:00:f3:00:03"], serial: "CZC333", model: "EliteBook 840"))
        return (try await machineID(harness, mac: "52:54:00:e1:00:01"), try await machineID(harness, mac: "52:54:00:f2:00:02"),
                try await machineID(harness, mac: "52:54:00:f3:00:03"), deployment)
    }

    /// The rows the inventory lists, as the browser has them.
    static let rows = "Array.from(document.querySelectorAll('tr.inventory-machine')).map(function (row) { return row.dataset.machine; })"

    @Test("in Chromium: the inventory filtered, a machine's facts and history, a CSV import refused at its line then taken, registering one")
    func inventoryMachinePageAndImportInChromium() async throws {
        try await ServerHarness.with { harness in
            let fleet = try await Self.fleet(harness)
            let session = try await harness.dashboardLogin()
            let filter = "document.getElementById('machine-filter')"
            func choose(_ name: String, _ value: String) -> String {
                "\(filter).querySelector('[name=\(name)]').value = \(DashboardImagesTests.literal(value));"
            }
            let answer = try await DashboardImagesTests.browse(harness, harness.base + "/dashboard/machines", cookie: session.cookie, steps: [
                ["label": "all", "wait": "document.querySelectorAll('tr.inventory-machine').length === 3"],
                ["label": "everything", "run": "JSON.stringify({rows: \(Self.rows), title: document.getElementById('inventory-title').innerText})"],
                // The model filter, submitted as a user would (the form is a plain GET form).
                ["label": "by model", "run": choose("model", "EliteBook 840") + "\(filter).querySelector('button[type=submit]').click(); true"],
                ["label": "model filtered", "wait": "location.search.indexOf('model=EliteBook') >= 0 && document.querySelectorAll('tr.inventory-machine').length === 2"],
                ["label": "model rows", "run": "JSON.stringify({rows: \(Self.rows), selected: \(filter).querySelector('[name=model]').value})"],
                ["label": "by firmware", "run": choose("model", "") + choose("firmware", "bios") + "\(filter).submit(); true"],
                // The new page's rows, not the old page's while it is replaced (the address changes first).
                ["label": "firmware filtered", "wait": "location.search.indexOf('firmware=bios') >= 0 && document.querySelectorAll('tr.inventory-machine').length === 1"],
                ["label": "firmware rows", "run": "JSON.stringify({rows: \(Self.rows)})"],
                ["navigate": harness.base + "/dashboard/machines?state=pending"],
                ["label": "pending filtered", "wait": "document.querySelectorAll('tr.inventory-machine').length === 2"],
                ["label": "pending rows", "run": "JSON.stringify({rows: \(Self.rows)})"],
                ["navigate": harness.base + "/dashboard/machines?sequence=base&seen=day&q=czc"],
                ["label": "sequence filtered", "wait": "document.querySelectorAll('tr.inventory-machine').length === 1"],
                ["label": "sequence rows", "run": "JSON.stringify({rows: \(Self.rows), text: document.getElementById('inventory').innerText})"],
                ["screenshot": DashboardImagesTests.screenshot(harness, "machines-inventory.png")],
                // The deployed machine's page, through its link.
                ["label": "open", "run": "document.querySelector('tr.inventory-machine a').click(); true"],
                ["label": "machine page", "wait": "document.getElementById('disks') !== null && document.getElementById('history-table') !== null"],
                ["label": "machine", "run": """
                    JSON.stringify({facts: document.getElementById('facts').innerText, history: document.getElementById('history-table').innerText,
                                    link: document.querySelector('tr.history-row a').getAttribute('href'),
                                    windows: document.querySelector('tr.disk[data-windows=true]') !== null,
                                    actions: Array.from(document.querySelectorAll('#actions button')).map(function (b) { return b.innerText; })})
                    """],
                ["screenshot": DashboardImagesTests.screenshot(harness, "machines-machine.png")],
                // A CSV with a wrong UUID on line 3: nothing imported, the error at its line and column.
                ["navigate": harness.base + "/dashboard/machines"],
                ["label": "import form", "wait": "document.getElementById('machine-import-form') !== null"],
                ["label": "bad csv", "run": """
                    document.querySelector('#machine-import-form textarea[name=csv]').value = 'mac,uuid,serial,model\\n52:54:00:a0:00:01,,SN-A1,ProBook 450\\n52:54:00:a0:00:02,not-a-uuid,SN-A2,ProBook 450\\n';
                    document.querySelector('#machine-import-form button[type=submit]').click(); true
                    """],
                ["label": "import refused", "wait": "document.getElementById('import-errors') !== null"],
                ["label": "import errors", "run": """
                    JSON.stringify({errors: document.getElementById('import-errors').innerText, kept: document.querySelector('#machine-import-form textarea').value,
                                    invalid: document.querySelector('#machine-import-form textarea').getAttribute('aria-invalid')})
                    """],
                ["screenshot": DashboardImagesTests.screenshot(harness, "machines-import-error.png")],
                ["label": "good csv", "run": """
                    document.querySelector('#machine-import-form textarea[name=csv]').value = 'mac;serial;model\\n52:54:00:a0:00:01;SN-A1;ProBook 450\\n"52:54:00:a0:00:02 52:54:00:a0:00:12";SN-A2;"ProBook 450"\\n';
                    document.querySelector('#machine-import-form button[type=submit]').click(); true
                    """],
                ["label": "imported", "wait": "document.getElementById('notice') !== null && document.getElementById('notice').innerText.indexOf('2 machine') >= 0"],
                // One machine registered through the form: a bad MAC first, said at its field.
                ["label": "bad register", "run": """
                    document.querySelector('#machine-register-form [name=macs]').value = '52:54:00:b0:00:01 zz:54';
                    document.querySelector('#machine-register-form [name=model]').value = 'ZBook';
                    document.querySelector('#machine-register-form button[type=submit]').click(); true
                    """],
                ["label": "register refused", "wait": "document.getElementById('register-error') !== null"],
                ["label": "register error", "run": """
                    JSON.stringify({error: document.getElementById('register-error').innerText,
                                    invalid: document.querySelector('#machine-register-form [name=macs]').getAttribute('aria-invalid'),
                                    kept: document.querySelector('#machine-register-form [name=model]').value})
                    """],
                ["label": "good register", "run": """
                    document.querySelector('#machine-register-form [name=macs]').value = '52-54-00-B0-00-01';
                    document.querySelector('#machine-register-form button[type=submit]').click(); true
                    """],
                ["label": "registered", "wait": "document.getElementById('notice') !== null && document.getElementById('identity') !== null"],
                ["label": "registered page", "run": "JSON.stringify({identity: document.getElementById('identity').innerText, facts: document.getElementById('facts').innerText})"],
            ], screenshot: DashboardImagesTests.screenshot(harness, "machines-registered.png"))

            let everything = DashboardImagesTests.value(answer, "everything")
            #expect(Set(everything["rows"] as? [String] ?? []) == [fleet.second, fleet.thinkpad, fleet.deployed]
                    && (everything["title"] as? String ?? "").contains("3 machines"), "\(everything)")
            let model = DashboardImagesTests.value(answer, "model rows")
            #expect(Set(model["rows"] as? [String] ?? []) == [fleet.deployed, fleet.second] && model["selected"] as? String == "EliteBook 840", "\(model)")
            #expect(DashboardImagesTests.value(answer, "firmware rows")["rows"] as? [String] == [fleet.thinkpad])
            #expect(Set(DashboardImagesTests.value(answer, "pending rows")["rows"] as? [String] ?? []) == [fleet.thinkpad, fleet.second])
            let bySequence = DashboardImagesTests.value(answer, "sequence rows")
            #expect(bySequence["rows"] as? [String] == [fleet.deployed] && (bySequence["text"] as? String ?? "").contains("succeeded"), "\(bySequence)")

            let machine = DashboardImagesTests.value(answer, "machine")
            let facts = machine["facts"] as? String ?? ""
            #expect(facts.contains("UEFI") && facts.contains("16.0 GiB") && facts.contains("Intel Core i7-1185G7") && facts.contains("52:54:00:e1:00:01")
                    && facts.contains("/dev/nvme0n1") && facts.contains("512 GB") && facts.contains("Windows found") && facts.contains("on /dev/nvme0n1"), "\(facts)")
            #expect(machine["windows"] as? Bool == true)
            let history = machine["history"] as? String ?? ""
            #expect(history.contains("base") && history.contains("succeeded") && history.contains("4 min 12 s"), "\(history)")
            #expect(machine["link"] as? String == "/dashboard/deployments/\(fleet.deployment)")
            // Deployed and approved: it may be rejected or deployed again (and forgotten, by an administrator).
            #expect(machine["actions"] as? [String] == ["Reject", "Deploy again", "Forget"], "\(machine)")

            let importErrors = DashboardImagesTests.value(answer, "import errors")
            #expect((importErrors["errors"] as? String ?? "").contains("line 3, column 2 (uuid)") && (importErrors["errors"] as? String ?? "").contains("not a UUID"),
                    "\(importErrors)")
            #expect((importErrors["kept"] as? String ?? "").contains("not-a-uuid") && importErrors["invalid"] as? String == "true")
            let register = DashboardImagesTests.value(answer, "register error")
            #expect((register["error"] as? String ?? "").contains("zz:54") && register["invalid"] as? String == "true" && register["kept"] as? String == "ZBook",
                    "\(register)")
            let registered = DashboardImagesTests.value(answer, "registered page")
            #expect((registered["identity"] as? String ?? "").contains("52:54:00:b0:00:01") && (registered["facts"] as? String ?? "").contains("not checked in"),
                    "\(registered)")

            // What the browser did, through the API: the good batch and the one machine, nothing of the bad batch twice.
            let machines = try await harness.admin("GET", "/machines").json["machines"] as? [[String: Any]] ?? []
            #expect(machines.count == 6, "\(machines.map { $0["macs"] ?? "" })")
            let imported = machines.first { ($0["macs"] as? [String]) == ["52:54:00:a0:00:02", "52:54:00:a0:00:12"] }
            #expect(imported?["serial"] as? String == "SN-A2" && imported?["model"] as? String == "ProBook 450" && imported?["state"] as? String == "approved")
            let audit = try await harness.admin("GET", "/audit?object=machine").json["entries"] as? [[String: Any]] ?? []
            #expect(audit.compactMap { $0["action"] as? String }.sorted()
                    == ["POST /dashboard/machines", "POST /dashboard/machines/import", "POST /dashboard/machines/import"], "\(audit)")
        }
    }

    @Test("in Chromium: rejecting (the check-in told so), forgetting, a viewer who sees no button and is refused with a 403 page, the audit log")
    func rejectForgetViewerAndAuditInChromium() async throws {
        try await ServerHarness.with { harness in
            let fleet = try await Self.fleet(harness)
            _ = try await UserTests.user(harness, "vera", role: "viewer", password: "vera-password-1")
            let session = try await harness.dashboardLogin()
            let page = harness.base + "/dashboard/machines/\(fleet.thinkpad)"
            let answer = try await DashboardImagesTests.browse(harness, page, cookie: session.cookie, steps: [
                ["label": "page", "wait": "document.querySelector('form.reject button') !== null"],
                // Through the keyboard, as a user without a mouse would.
                ["label": "reject", "run": "document.querySelector('form.reject button').focus(); document.activeElement.click(); true"],
                ["label": "rejected", "wait": "document.getElementById('notice') !== null && document.querySelector('h1 .machine-state.rejected') !== null"],
                ["label": "after reject", "run": "JSON.stringify({notice: document.getElementById('notice').innerText, actions: Array.from(document.querySelectorAll('#actions button')).map(function (b) { return b.innerText; })})"],
                ["screenshot": DashboardImagesTests.screenshot(harness, "machines-rejected.png")],
            ], screenshot: DashboardImagesTests.screenshot(harness, "machines-rejected-end.png"))
            let rejected = DashboardImagesTests.value(answer, "after reject")
            #expect((rejected["notice"] as? String ?? "").contains("rejected") && rejected["actions"] as? [String] == ["Approve", "Forget"], "\(rejected)")
            let told = try await Self.checkIn(harness, Self.facts(macs: ["52:54:00:f2:00:02"], serial: "PF222", model: "ThinkPad T14", firmware: "bios"))
            #expect(told.status == 200 && told.json["status"] as? String == "rejected" && told.json["deployment"] == nil
                    && (told.json["message"] as? String ?? "").contains("rejected"), "\(told.text)")

            // A viewer: the page without a single button, and an action posted anyway refused with a 403 page.
            let login = try await harness.postForm("/dashboard/login", ["user": "vera", "password": "vera-password-1", "next": "/dashboard"])
            let viewer = (login.headers["set-cookie"] ?? "").components(separatedBy: ";").first ?? ""
            let viewed = try await DashboardImagesTests.browse(harness, harness.base + "/dashboard/machines/\(fleet.deployed)", cookie: viewer, steps: [
                ["label": "page", "wait": "document.getElementById('history-table') !== null"],
                ["label": "buttons", "run": "JSON.stringify({buttons: Array.from(document.querySelectorAll('main button, .machines-page button, .machines-page form[method=post]')).length, actions: document.getElementById('actions') !== null})"],
                ["navigate": harness.base + "/dashboard/machines"],
                ["label": "inventory", "wait": "document.getElementById('inventory') !== null"],
                ["label": "inventory forms", "run": "JSON.stringify({register: document.getElementById('machine-register-form') !== null, importing: document.getElementById('machine-import-form') !== null})"],
            ], screenshot: DashboardImagesTests.screenshot(harness, "machines-viewer.png"))
            #expect(DashboardImagesTests.value(viewed, "buttons")["buttons"] as? Int == 0 && DashboardImagesTests.value(viewed, "buttons")["actions"] as? Bool == false,
                    "\(DashboardImagesTests.value(viewed, "buttons"))")
            #expect(DashboardImagesTests.value(viewed, "inventory forms")["register"] as? Bool == false
                    && DashboardImagesTests.value(viewed, "inventory forms")["importing"] as? Bool == false)
            let viewerPage = try await harness.request("GET", "/dashboard/machines", headers: ["Cookie: \(viewer)"])
            let csrf = try #require(ServerHarness.csrfToken(in: viewerPage.text))
            let refused = try await harness.postForm("/dashboard/machines/\(fleet.second)/reject", ["csrf": csrf], cookie: viewer)
            #expect(refused.status == 403 && refused.text.contains("user vera is a viewer") && refused.text.contains("operator role")
                    && refused.headers["content-type"]?.hasPrefix("text/html") == true, "\(refused.text)")
            let refusedForget = try await harness.postForm("/dashboard/machines/\(fleet.second)/forget", ["csrf": csrf, "confirm": "yes"], cookie: viewer)
            #expect(refusedForget.status == 403 && refusedForget.text.contains("administrator role"), "\(refusedForget.text)")
            #expect(try await harness.server.storage.machine(id: fleet.second)?.state == .pending)

            // Forgetting, in the browser: the box unticked is refused at its field (a browser
            // honours `required`; a form posted without it meets the server's check).
            let unticked = try await harness.postForm("/dashboard/machines/\(fleet.deployed)/forget", ["csrf": session.csrf], cookie: session.cookie)
            #expect(unticked.status == 422 && unticked.text.contains("forget-error") && unticked.text.contains("aria-invalid=\"true\""), "\(unticked.status)")
            let forgot = try await DashboardImagesTests.browse(harness, harness.base + "/dashboard/machines/\(fleet.deployed)", cookie: session.cookie, steps: [
                ["label": "page", "wait": "document.getElementById('forget-form') !== null"],
                ["label": "forget", "run": "document.querySelector('#forget-form input[name=confirm]').checked = true; document.querySelector('#forget-form button').click(); true"],
                ["label": "forgotten", "wait": "location.pathname === '/dashboard/machines' && document.getElementById('notice') !== null"],
                ["label": "after", "run": "JSON.stringify({notice: document.getElementById('notice').innerText, rows: \(Self.rows)})"],
                ["navigate": harness.base + "/dashboard/audit?object=machine"],
                ["label": "audit", "wait": "document.querySelector('tr.audit-entry') !== null"],
                ["label": "entries", "run": "JSON.stringify({table: document.getElementById('audit').innerText})"],
            ], screenshot: DashboardImagesTests.screenshot(harness, "machines-audit.png"))
            let after = DashboardImagesTests.value(forgot, "after")
            #expect((after["notice"] as? String ?? "").contains("forgotten") && !(after["rows"] as? [String] ?? [fleet.deployed]).contains(fleet.deployed), "\(after)")
            #expect(try await harness.server.storage.machine(id: fleet.deployed) == nil)
            #expect(try await harness.admin("GET", "/deployments/\(fleet.deployment)").status == 404)
            let table = DashboardImagesTests.value(forgot, "entries")["table"] as? String ?? ""
            #expect(table.contains("POST /dashboard/machines/{id}/reject") && table.contains("POST /dashboard/machines/{id}/forget")
                    && table.contains("\"state\" : \"rejected\"") && table.contains(fleet.deployed), "\(table)")
        }
    }

    @Test("the API and storage: reject and approve, a CSV batch all or none, forget refused while a deployment runs, the inventory's filters",
          arguments: StorageKind.allCases)
    func machinesAPI(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage) { harness in
            let fleet = try await Self.fleet(harness)
            let operatorToken = try await UserTests.user(harness, "otto", role: "operator", password: "otto-password-1")

            // Reject: an operator's; the check-in is told so, whatever it asks; approval undoes it.
            let rejected = try await harness.request("POST", "/api/v1/admin/machines/\(fleet.second)/reject", token: operatorToken.secret)
            #expect(rejected.status == 200 && rejected.json["state"] as? String == "rejected" && rejected.json["rejected"] is String, "\(rejected.text)")
            let told = try await Self.checkIn(harness, Self.facts(macs: ["52:54:00:f3:00:03"], serial: "CZC333", model: "EliteBook 840"))
            #expect(told.json["status"] as? String == "rejected" && told.json["machineId"] as? String == fleet.second, "\(told.text)")
            let pending = try await harness.server.storage.machines(state: .pending, offset: 0, limit: 10)
            #expect(pending.machines.map(\.id) == [fleet.thinkpad] && pending.total == 1)
            #expect(try await harness.server.storage.machines(state: .rejected, offset: 0, limit: 10).machines.map(\.id) == [fleet.second])
            #expect(try await harness.request("POST", "/api/v1/admin/machines/\(fleet.second)/approve", token: operatorToken.secret).status == 200)
            let approved = try await harness.server.storage.machine(id: fleet.second)
            #expect(approved?.state == .approved && approved?.rejected == nil)
            #expect(try await harness.admin("POST", "/machines/nothing/reject").status == 404)

            // One machine with its history.
            let one = try await harness.admin("GET", "/machines/\(fleet.deployed)")
            let history = one.json["deployments"] as? [[String: Any]] ?? []
            #expect(one.status == 200 && history.count == 1 && history.first?["state"] as? String == "succeeded"
                    && (one.json["machine"] as? [String: Any])?["model"] as? String == "EliteBook 840", "\(one.text)")

            // A CSV batch: every line checked, nothing stored while one is wrong.
            let bad = "mac,uuid,serial\n52:54:00:c0:00:01,,S-1\n52:54:00:c0:00:02,xyz,S-2\n52:54:00:c0:00:01,,S-3\n,,\n52:54:00:c0:00:04,,S-1\n"
            let refused = try await harness.request("POST", "/api/v1/admin/machines/import", headers: ["Content-Type: text/csv"],
                                                    body: Data(bad.utf8), token: operatorToken.secret)
            let issues = (refused.json["issues"] as? [[String: Any]] ?? []).compactMap { $0["path"] as? String }
            #expect(refused.status == 422 && refused.json["field"] as? String == "line 3, column 2", "\(refused.text)")
            #expect(issues == ["line 3, column 2 (uuid)", "line 4, column 1 (mac)", "line 6, column 3 (serial)"], "\(refused.text)")
            let unknownColumn = try await harness.admin("POST", "/machines/import", json: "mac,colour\n52:54:00:c0:00:09,red\n")
            #expect(unknownColumn.status == 422 && unknownColumn.json["field"] as? String == "line 1, column 2", "\(unknownColumn.text)")
            let conflict = try await harness.admin("POST", "/machines/import", json: "serial,model\nS-9,X\nCZC111,Y\n")
            #expect(conflict.status == 409 && (conflict.json["issues"] as? [[String: Any]])?.first?["path"] as? String == "line 3, column 1 (serial)",
                    "\(conflict.text)")
            #expect(try await harness.server.storage.machines().count == 3, "a refused batch stored machines")
            let good = "\u{FEFF}MAC,Serial Number,Model\r\n52:54:00:c0:00:01,S-1,\"Pro, 450\"\r\n52:54:00:c0:00:02,S-2,Pro 450\r\n"
            let taken = try await harness.request("POST", "/api/v1/admin/machines/import", headers: ["Content-Type: text/csv"],
                                                  body: Data(good.utf8), token: operatorToken.secret)
            let made = taken.json["machines"] as? [[String: Any]] ?? []
            #expect(taken.status == 201 && made.count == 2 && made.first?["model"] as? String == "Pro, 450" && made.last?["serial"] as? String == "S-2",
                    "\(taken.text)")
            let importAudit = try await harness.admin("GET", "/audit?user=otto&object=machine").json["entries"] as? [[String: Any]] ?? []
            #expect(importAudit.filter { $0["action"] as? String == "POST /api/v1/admin/machines/import" }.count == 2, "\(importAudit)")

            // The inventory's filters, in SQL on this database.
            let inventory = harness.server.storage
            func ids(_ filter: MachineFilter) async throws -> Set<String> { Set(try await inventory.machineInventory(filter, offset: 0, limit: 50).machines.map(\.id)) }
            #expect(try await ids(MachineFilter(model: "EliteBook 840")) == [fleet.deployed, fleet.second])
            #expect(try await ids(MachineFilter(firmware: .bios)) == [fleet.thinkpad])
            #expect(try await ids(MachineFilter(text: "E1:00")) == [fleet.deployed], "MACs any case")
            #expect(try await ids(MachineFilter(text: "52-54-00-f2")) == [fleet.thinkpad], "a MAC as Windows writes it")
            #expect(try await ids(MachineFilter(text: "100%")) == [], "LIKE's characters are the user's")
            #expect(try await ids(MachineFilter(text: "pro,")).count == 1)
            #expect(try await ids(MachineFilter(seen: .never)).count == 2)
            #expect(try await ids(MachineFilter(seen: .day)) == [fleet.deployed, fleet.thinkpad, fleet.second])
            #expect(try await ids(MachineFilter(seen: .older)) == [])
            #expect(try await ids(MachineFilter(state: .pending)) == [fleet.thinkpad])
            #expect(try await ids(MachineFilter(sequence: "base")) == [fleet.deployed])
            #expect(try await ids(MachineFilter(sequence: "other")) == [])
            let paged = try await inventory.machineInventory(MachineFilter(), offset: 4, limit: 2)
            #expect(paged.total == 5 && paged.machines.count == 1)
            // As a set: PostgreSQL sorts by the database's collation, SQLite by bytes.
            #expect(Set(try await inventory.machineModels(limit: 10)) == ["EliteBook 840", "Pro 450", "Pro, 450", "ThinkPad T14"])

            // Forget: an administrator's; refused while a deployment runs with a live token.
            try await harness.putRules(#"{"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "base", "variables": {}}]}"#)
            let running = try await Self.checkIn(harness, Self.facts(macs: ["52:54:00:f3:00:03"], serial: "CZC333", model: "EliteBook 840"))
            let runningID = try #require((running.json["deployment"] as? [String: Any])?["id"] as? String, "\(running.text)")
            let byOperator = try await harness.request("DELETE", "/api/v1/admin/machines/\(fleet.second)", token: operatorToken.secret)
            #expect(byOperator.status == 403 && (byOperator.json["error"] as? String ?? "").contains("administrator role"), "\(byOperator.text)")
            let busy = try await harness.admin("DELETE", "/machines/\(fleet.second)")
            #expect(busy.status == 409 && (busy.json["error"] as? String ?? "").contains(runningID) && (busy.json["error"] as? String ?? "").contains("reset-token"),
                    "\(busy.text)")
            #expect(try await harness.admin("POST", "/deployments/\(runningID)/reset-token").status == 200)
            let forgotten = try await harness.admin("DELETE", "/machines/\(fleet.second)")
            #expect(forgotten.status == 200 && forgotten.json["deployments"] as? Int == 1, "\(forgotten.text)")
            #expect(try await harness.admin("GET", "/deployments/\(runningID)").status == 404)
            #expect(try await harness.admin("DELETE", "/machines/\(fleet.second)").status == 404)
            // Its MAC is free again: its next check-in is a new machine.
            let again = try await Self.checkIn(harness, Self.facts(macs: ["52:54:00:f3:00:03"], serial: "CZC333", model: "EliteBook 840"))
            #expect(again.json["machineId"] as? String != nil && again.json["machineId"] as? String != fleet.second, "\(again.text)")
            // The deployed machine goes with its events.
            #expect(try await harness.admin("DELETE", "/machines/\(fleet.deployed)").status == 200)
            #expect(try await harness.server.storage.events(deploymentID: fleet.deployment, afterSequence: 0, limit: 10).isEmpty)
            let forgetAudit = try await harness.admin("GET", "/audit?object=machine:\(fleet.deployed)").json["entries"] as? [[String: Any]] ?? []
            #expect(forgetAudit.first?["action"] as? String == "DELETE /api/v1/admin/machines/{id}" && forgetAudit.first?["after"] == nil
                    && (forgetAudit.first?["before"] as? [String: Any])?["model"] as? String == "EliteBook 840", "\(forgetAudit)")
        }
    }
}
