import Foundation
import SequenceModel

/// What the dashboard shows, taken from storage by the routes; rendering is pure so the page
/// is the same whichever server instance answers.
public struct DashboardDeployment: Sendable, Codable, Equatable {
    public var id: String
    public var machine: String
    public var sequence: String
    /// assigned, running, succeeded, failed
    public var state: String
    public var percent: Double
    public var currentStep: String?
    public var message: String?
    /// For a failed one: bad input, refused, network, disk, interrupted or internal.
    public var failure: String?
    public var created: String
    public var ended: String?
    /// Assigned or running (`Deployment.isActive`): it has a token to reset.
    public var isActive = false
    /// When an administrator reset its token (until the machine's next check-in takes a new one).
    public var tokenReset: String?
    /// What its machine's first check-in contradicted (`IdentityConflict.description`).
    public var machineConflicts: [String] = []
    /// How many times its machine's own run resumed it after an interruption (a power cut).
    public var resumes = 0
    /// The image library's versions it was handed (the deployment's page only).
    public var libraryVersions: [LibraryVersionUsed] = []
    /// Where the run state its agent last sent says the run is (the deployment's page only):
    /// `at step 3 "Apply the image" (begun, not ended)`.
    public var runStateStep: String?

    public init(id: String, machine: String, sequence: String, state: String, percent: Double,
                currentStep: String?, message: String?, failure: String? = nil, created: String, ended: String?) {
        self.id = id
        self.machine = machine
        self.sequence = sequence
        self.state = state
        self.percent = percent
        self.currentStep = currentStep
        self.message = message
        self.failure = failure
        self.created = created
        self.ended = ended
    }
}

public struct DashboardMachine: Sendable, Equatable {
    public var id: String
    public var name: String
    public var macs: [String]
    public var serial: String?
    public var state: String
    public var lastSeen: String
    public var deployment: DashboardDeployment?
    /// Deployed, and an administrator asked for it to be deployed again at its next network boot.
    public var redeployRequested = false
    /// The known machines its first check-in contradicted (`IdentityConflict.description`): why
    /// it waits for approval, and what to check before giving it.
    public var conflicts: [String] = []

    public init(id: String, name: String, macs: [String], serial: String?, state: String, lastSeen: String,
                deployment: DashboardDeployment?) {
        self.id = id
        self.name = name
        self.macs = macs
        self.serial = serial
        self.state = state
        self.lastSeen = lastSeen
        self.deployment = deployment
    }
}

/// One step of a deployment's timeline, from its stepStarted and stepEnded events.
public struct DashboardStep: Sendable, Equatable {
    public var number: String
    public var name: String
    public var type: String
    /// running, success, failed, failedContinued, skipped
    public var status: String
    public var duration: Double?
    public var message: String?
}

/// One page of the machine list: the machines that are not pending, the first page of those
/// waiting for approval, and what failed across all of them.
public struct DashboardListing: Sendable, Equatable {
    public var machines: [DashboardMachine]
    /// Machines whose newest deployment failed, by kind of failure, over every machine.
    public var failures: [String: Int]
    /// From 1.
    public var page: Int
    public var pages: Int
    /// Pending machines in all (the page lists the first of them).
    public var pendingTotal: Int
}

/// The events one deployment page shows, and where the neighbouring pages start.
public struct DashboardLogWindow: Sendable, Equatable {
    public var events: [Event]
    /// The first event shown, when there are older ones: the older page is the events before it.
    public var older: Int?
    /// The last event shown, when there are newer ones; nil on the newest page, which the live feed extends.
    public var newer: Int?
}

public struct DashboardLogLine: Sendable, Equatable {
    public var time: String
    public var step: String?
    public var level: String
    public var message: String
}

/// Server-rendered HTML with a little JavaScript (no build step): the machine list with a live
/// progress bar per deployment, and a deployment's timeline and log.
public enum DashboardPage {
    /// `change`: the database's change id read before the data shown, so the live feed picks up
    /// from there and nothing that happened while the page loaded is missed.
    /// `csrf`: the session's token, which every form posts (empty with a bearer token).
    /// `canOperate`: an operator or administrator, who gets the Approve, Deploy again and Reset
    /// token buttons (a viewer does not see what the server would refuse).
    public static func index(_ listing: DashboardListing, change: Int, csrf: String, canOperate: Bool = true) -> String {
        let machines = listing.machines
        let pending = machines.filter { $0.state == "pending" }
        var body = "<h1>Imprint deployments</h1>"
        if !listing.failures.isEmpty {
            // Failures grouped by kind: many "network" at once is the network, many "badInput" the image.
            let byKind = listing.failures.sorted { ($1.value, $0.key) < ($0.value, $1.key) }
            body += "<p id=\"failures\">Failed: " + byKind.map { kind, count in
                "<span class=\"failure-kind\" data-kind=\"\(escape(kind))\">\(escape(failureLabel(kind))) \(count)</span>"
            }.joined(separator: ", ") + "</p>"
        }
        if !pending.isEmpty {
            body += "<section id=\"pending\"><h2>Waiting for approval</h2><table><tr><th>Machine</th><th>MAC</th><th>Serial</th><th>Last seen</th><th></th></tr>"
            for machine in pending {
                body += "<tr id=\"pending-\(escape(machine.id))\"><td><a href=\"/dashboard/machines/\(escape(machine.id))\">\(escape(machine.name))</a>\(conflictNotes(machine.conflicts))</td>"
                    + "<td>\(escape(machine.macs.joined(separator: ", ")))</td>"
                    + "<td>\(escape(machine.serial ?? ""))</td><td>\(escape(machine.lastSeen))</td>"
                    + "<td>" + (canOperate ? "<form method=\"post\" action=\"/dashboard/machines/\(escape(machine.id))/approve\">\(csrfField(csrf))"
                        + "<button type=\"submit\">Approve</button></form>" : "") + "</td></tr>"
            }
            body += "</table>"
            if listing.pendingTotal > pending.count {
                body += "<p class=\"more\">\(listing.pendingTotal - pending.count) more waiting: approve these first, or use the admin API.</p>"
            }
            body += "</section>"
        }
        body += "<section id=\"machines\"><h2>Machines</h2><table><tr><th>Machine</th><th>MAC</th><th>Sequence</th><th>Progress</th><th>Step</th><th>State</th><th></th></tr>"
        for machine in machines where machine.state != "pending" {
            let deployment = machine.deployment
            body += "<tr class=\"machine\" id=\"machine-\(escape(machine.id))\"><td><a href=\"/dashboard/machines/\(escape(machine.id))\">\(escape(machine.name))</a>\(conflictNotes(machine.conflicts))</td>"
                + "<td>\(escape(machine.macs.first ?? ""))</td>"
            if let deployment {
                body += "<td><a href=\"/dashboard/deployments/\(escape(deployment.id))\">\(escape(deployment.sequence))</a>\(resumedNote(deployment))</td>"
                    + "<td>\(progress(deployment))</td>"
                    + "<td class=\"step\" data-deployment=\"\(escape(deployment.id))\">\(escape(deployment.currentStep ?? ""))</td>"
                    + "<td class=\"state \(escape(deployment.state))\" data-deployment=\"\(escape(deployment.id))\">\(escape(deployment.state))"
                    + (deployment.state == "failed" ? "<div class=\"failure\">\(failureBadge(deployment))\(escape(deployment.message ?? ""))</div>" : "") + "</td>"
                    + "<td class=\"actions\">\(deployment.state == "succeeded" ? redeployCell(machine, csrf: csrf, canOperate: canOperate) : "")"
                    + "\(deployment.isActive && (canOperate || deployment.tokenReset != nil) ? resetTokenCell(deployment, csrf: csrf) : "")</td>"
            } else {
                body += "<td colspan=\"5\">no deployment</td>"
            }
            body += "</tr>"
        }
        body += "</table>"
        body += pageNav(id: "machine-pages", page: listing.page, pages: listing.pages) { "/dashboard?page=\($0)" }
        body += "</section>"
        return page(title: "Imprint", body: body, change: change, csrf: csrf)
    }

    /// Each conflict of a machine's first check-in, as text: what it shares with a known machine
    /// and what it contradicts (MACs and serials as the machine sent them, hence escaped).
    static func conflictNotes(_ conflicts: [String]) -> String {
        conflicts.map { "<div class=\"conflict\">Identity conflict: this machine's first check-in \(escape($0))</div>" }.joined()
    }

    /// An active deployment's token can be revoked: the machine's next check-in gets a new one at
    /// once (an agent gone, a machine rebuilt mid-deployment, a token not to be trusted).
    static func resetTokenCell(_ deployment: DashboardDeployment, csrf: String) -> String {
        if let reset = deployment.tokenReset {
            return "<div class=\"token-reset\">token reset at \(escape(reset)): the machine's next check-in gets a new one</div>"
        }
        return "<form class=\"reset-token\" method=\"post\" action=\"/dashboard/deployments/\(escape(deployment.id))/reset-token\">"
            + csrfField(csrf) + "<button type=\"submit\">Reset token</button></form>"
    }

    /// "Previous · page 2 of 5 · Next" under a paged list (empty with one page); `link` gives a
    /// page's address, unescaped (escaped here).
    static func pageNav(id: String, label: String = "Pages", page: Int, pages: Int, link: (Int) -> String) -> String {
        guard pages > 1 else { return "" }
        return "<nav class=\"pages\" id=\"\(id)\" aria-label=\"\(escape(label))\">"
            + (page > 1 ? "<a rel=\"prev\" href=\"\(escape(link(page - 1)))\">Previous</a> " : "")
            + "page \(page) of \(pages)"
            + (page < pages ? " <a rel=\"next\" href=\"\(escape(link(page + 1)))\">Next</a>" : "") + "</nav>"
    }

    static func csrfField(_ csrf: String) -> String {
        csrf.isEmpty ? "" : "<input type=\"hidden\" name=\"csrf\" value=\"\(escape(csrf))\">"
    }

    /// `badInput` → "bad input", as the dashboard names a failure kind.
    static func failureLabel(_ kind: String) -> String {
        kind.reduce(into: "") { text, character in text += character.isUppercase ? " " + character.lowercased() : String(character) }
    }

    private static func failureBadge(_ deployment: DashboardDeployment) -> String {
        guard let kind = deployment.failure else { return "" }
        return "<span class=\"failure-kind\" data-kind=\"\(escape(kind))\">\(escape(failureLabel(kind)))</span>: "
    }

    /// `window`: which events `log` came from; the newest page follows the live feed, an older
    /// one links to its neighbours.
    /// `canOperate`: an operator or administrator, who gets the Reset token button (a viewer
    /// does not see what the server would refuse).
    public static func deployment(_ deployment: DashboardDeployment, steps: [DashboardStep], log: [DashboardLogLine],
                                  window: DashboardLogWindow, change: Int, csrf: String, canOperate: Bool = true) -> String {
        var body = "<p><a href=\"/dashboard\">All machines</a> · <a href=\"/dashboard/deployments\">All deployments</a></p>"
        body += "<h1>\(escape(deployment.sequence)) on \(escape(deployment.machine))</h1>"
        body += "<p class=\"summary\">\(progress(deployment)) <span class=\"state \(escape(deployment.state))\" data-deployment=\"\(escape(deployment.id))\">\(escape(deployment.state))</span>"
            + " <span class=\"step\" data-deployment=\"\(escape(deployment.id))\">\(escape(deployment.currentStep ?? ""))</span></p>"
        if deployment.state == "failed" {
            // The kind and the message, each when the agent sent it: a failure always says so.
            body += "<p class=\"failure\" id=\"failure\" role=\"alert\">Failed: \(failureBadge(deployment))\(escape(deployment.message ?? "no message was sent"))</p>"
        }
        if !deployment.machineConflicts.isEmpty { body += "<section id=\"conflicts\">\(conflictNotes(deployment.machineConflicts))</section>" }
        if deployment.resumes > 0 || deployment.runStateStep != nil {
            body += "<section id=\"resume\">\(resumedNote(deployment))"
                + (deployment.runStateStep.map { "<div class=\"run-state\">Run state: \(escape($0))</div>" } ?? "") + "</section>"
        }
        if !deployment.libraryVersions.isEmpty {
            body += "<p id=\"library-versions\">Image library: " + deployment.libraryVersions.map { used in
                "<a href=\"\(escape(DashboardImagesPage.imageLink(used.image)))\">"
                    + "\(escape(used.image))</a> version \(used.version)"
            }.joined(separator: ", ") + "</p>"
        }
        if deployment.isActive && (canOperate || deployment.tokenReset != nil) {
            body += "<div id=\"token\">\(resetTokenCell(deployment, csrf: csrf))</div>"
        }
        body += "<h2>Steps</h2><table id=\"timeline\"><tr><th>#</th><th>Step</th><th>Type</th><th>Status</th><th>Duration</th></tr>"
        for step in steps {
            body += "<tr class=\"step-row \(escape(step.status))\" data-step=\"\(escape(step.number))\"><td>\(escape(step.number))</td><td>\(escape(step.name))</td>"
                + "<td>\(escape(step.type))</td><td class=\"status\">\(escape(step.status))"
                + (step.status.hasPrefix("failed") ? "<div class=\"failure\">\(escape(step.message ?? ""))</div>" : "")
                + "</td><td class=\"duration\">\(step.duration.map { String(format: "%.1f s", $0) } ?? "")</td></tr>"
        }
        body += "</table><h2>Log</h2><p class=\"log-download\"><a id=\"log-download\" href=\"/dashboard/deployments/\(escape(deployment.id))/log\" download>"
            + "Download the whole log</a> (text, every event but progress)</p>"
        let base = "/dashboard/deployments/\(escape(deployment.id))"
        let pages = (window.older.map { "<a rel=\"prev\" href=\"\(base)?before=\($0)\">Older</a>" } ?? "")
            + (window.newer.map { " <a rel=\"next\" href=\"\(base)?after=\($0)\">Newer</a> <a href=\"\(base)\">Newest</a>" } ?? "")
        if !pages.isEmpty { body += "<nav class=\"pages\" id=\"log-pages\">\(pages)</nav>" }
        // Only the newest page grows with the live feed.
        let after = window.events.last?.sequence ?? window.older ?? 0
        body += "<pre id=\"log\" data-deployment=\"\(escape(deployment.id))\" data-after=\"\(after)\""
            + (window.newer == nil ? " data-follow=\"true\"" : "") + ">"
        for line in log {
            body += "<span class=\"\(escape(line.level))\">\(escape(String(line.time.dropFirst(11).prefix(12)))) "
                + (line.step.map { "[\(escape($0))] " } ?? "") + "\(escape(line.message))</span>\n"
        }
        body += "</pre>"
        return page(title: "Imprint: \(deployment.machine)", body: body, change: change, csrf: csrf)
    }

    /// A deployment its machine's own run took up again after a power cut (or any restart
    /// mid-run): worth a look at its log, and at the machine's power if it happens often.
    static func resumedNote(_ deployment: DashboardDeployment) -> String {
        guard deployment.resumes > 0 else { return "" }
        return "<div class=\"resumed\">resumed after an interruption" + (deployment.resumes > 1 ? " (\(deployment.resumes) times)" : "") + "</div>"
    }

    /// A deployed machine boots from its disk until someone asks for it to be imaged again.
    static func redeployCell(_ machine: DashboardMachine, csrf: String, canOperate: Bool = true) -> String {
        if machine.redeployRequested {
            return "<div class=\"redeploy requested\">deploys again at its next network boot</div>"
        }
        guard canOperate else { return "" }
        return "<form class=\"redeploy\" method=\"post\" action=\"/dashboard/machines/\(escape(machine.id))/redeploy\">"
            + csrfField(csrf) + "<button type=\"submit\">Deploy again</button></form>"
    }

    static func progress(_ deployment: DashboardDeployment) -> String {
        let percent = max(0, min(100, deployment.percent))
        return "<div class=\"progress\" data-deployment=\"\(escape(deployment.id))\" data-percent=\(String(format: "\"%.1f\"", percent))>"
            // Its width comes from data-percent, set by the script: the CSP allows no style attribute.
            + "<div class=\"bar \(escape(deployment.state))\"></div>"
            + "<span class=\"label\">\(String(format: "%.1f", percent))%</span></div>"
    }

    /// The script and style are files of their own (`/dashboard/app.js`, `/dashboard/app.css`):
    /// the Content-Security-Policy allows nothing inline. `csrf` non-nil: a logged-in page,
    /// with the log-out form and the links to the dashboard's pages. `feed`: whether the page
    /// follows the deployments' live feed (the Images pages poll their jobs instead).
    static func page(title: String, body: String, live: Bool = true, change: Int = 0, csrf: String? = nil, feed: Bool = true) -> String {
        let logout = csrf.map {
            "<form class=\"logout\" method=\"post\" action=\"/dashboard/logout\">\(csrfField($0))<button type=\"submit\">Log out</button></form>"
                + "<nav class=\"top\"><a href=\"/dashboard\">Overview</a><a href=\"/dashboard/machines\">Machines</a><a href=\"/dashboard/deployments\">Deployments</a><a href=\"/dashboard/images\">Images</a><a href=\"/dashboard/content\">Content</a>"
                + "<a href=\"/dashboard/rules\">Rules</a><a href=\"/dashboard/sequences\">Sequences</a>"
                + "<a href=\"/dashboard/distribution-points\">Distribution points</a><a href=\"/dashboard/multicast\">Multicast</a>"
                + "<a href=\"/dashboard/users\">Users</a><a href=\"/dashboard/audit\">Audit</a></nav>"
        } ?? ""
        return """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>\(escape(title))</title>
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <link rel="stylesheet" href="/dashboard/app.css">\(live ? "<script src=\"/dashboard/app.js\" defer></script>" : "")</head>
        <body data-change="\(change)"\(feed ? "" : " data-feed=\"off\"")>\(logout)\(body)</body></html>
        """
    }

    /// Text and attribute values.
    public static func escape(_ text: String) -> String { XMLText.escape(text) }

    /// Served as `/dashboard/app.css`: the machines' and deployments' pages, then the Images pages'.
    public static let style = baseStyle + "\n" + DashboardDeploymentsPage.style + "\n" + DashboardImagesPage.style + "\n" + DashboardUsersPage.style + "\n" + DashboardMachinesPage.style + "\n" + DashboardRulesPage.style

    private static let baseStyle = """
        body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
        table { border-collapse: collapse; width: 100%; margin-bottom: 2em; }
        th, td { text-align: left; padding: 0.4em 0.6em; border-bottom: 1px solid #ddd; vertical-align: top; }
        .progress { position: relative; width: 14em; height: 1.2em; background: #eee; border-radius: 3px; display: inline-block; }
        .progress .bar { height: 100%; background: #2a7ae2; border-radius: 3px; transition: width 0.3s; }
        .progress .bar.succeeded { background: #2e9e44; } .progress .bar.failed { background: #c0392b; }
        .progress .label { position: absolute; left: 0.5em; top: 0; font-size: 0.85em; }
        .resumed { color: #b9770e; font-size: 0.9em; } .run-state { color: #555; font-size: 0.9em; }
        .failed, .failure { color: #c0392b; font-weight: bold; } .succeeded { color: #2e9e44; }
        tr.failed { background: #fdecea; } tr.skipped { color: #888; }
        pre#log { background: #f6f6f6; padding: 1em; max-height: 30em; overflow: auto; }
        pre#log .warning { color: #a66300; } pre#log .error { color: #c0392b; }
        form.logout { float: right; } nav.pages { margin: 0.5em 0 1em; } .notice, .conflict, .token-reset { color: #a66300; }
        """

    /// Live updates: one EventSource per page; each message is a deployment's new summary (and,
    /// on a deployment page, its new log lines and step ends). Served as `/dashboard/app.js`.
    /// Text from an agent only ever becomes `textContent`; elements are found by comparing
    /// their data attributes in script, never by building a selector from that text.
    /// The Images pages' script follows (`DashboardImagesPage.script`).
    public static let script = liveScript + "\n" + DashboardUpload.script + "\n" + DashboardContentPage.script + "\n" + DashboardImagesPage.script + "\n" + DashboardMulticastPage.script + "\n" + DashboardSequencesPage.script

    private static let liveScript = """
        (function () {
          'use strict';
          // Pages that do not follow the deployments (the Images pages) open no live stream.
          if (document.body.dataset.feed === 'off') return;
          function setWidth(bar) {
            const fill = bar.querySelector('.bar');
            if (fill) fill.style.width = bar.dataset.percent + '%';
          }
          function forDeployment(selector, id, action) {
            document.querySelectorAll(selector).forEach(function (element) {
              if (element.dataset.deployment === id) action(element);
            });
          }
          // The bars' widths: the CSP forbids style attributes in the page, not the CSSOM.
          document.querySelectorAll('.progress').forEach(setWidth);
          const log = document.getElementById('log');
          const following = log !== null && log.dataset.follow === 'true';
          const follow = following ? '&deployment=' + encodeURIComponent(log.dataset.deployment) + '&after=' + encodeURIComponent(log.dataset.after) : '';
          const source = new EventSource('/dashboard/live?since=' + encodeURIComponent(document.body.dataset.change) + follow);
          source.onmessage = function (message) {
            const update = JSON.parse(message.data);
            const id = String(update.id);
            forDeployment('.progress', id, function (bar) {
              const percent = Math.max(0, Math.min(100, Number(update.percent) || 0));
              bar.dataset.percent = percent.toFixed(1);
              setWidth(bar);
              bar.querySelector('.bar').className = 'bar ' + update.state;
              bar.querySelector('.label').textContent = percent.toFixed(1) + '%';
            });
            forDeployment('.step', id, function (cell) {
              cell.textContent = update.currentStep || '';
            });
            const listed = document.querySelector('#deployments[data-first="true"]');
            // Compared, never built into a selector (an id is the server's data).
            if (listed !== null && !Array.from(listed.querySelectorAll('.progress')).some(function (bar) { return bar.dataset.deployment === id; })) {
              const notice = document.getElementById('new-deployments');
              if (notice !== null) notice.hidden = false;
            }
            forDeployment('.state', id, function (cell) {
              cell.textContent = update.state;
              cell.className = 'state ' + update.state;
              if (update.state === 'failed' && (update.message || update.failure)) {
                // As the server renders it: the kind ("badInput" read as "bad input"), then the message; text only.
                const failure = document.createElement('div');
                failure.className = 'failure';
                if (update.failure) {
                  const kind = document.createElement('span');
                  kind.className = 'failure-kind';
                  kind.dataset.kind = update.failure;
                  kind.textContent = String(update.failure).replace(/[A-Z]/g, function (letter) { return ' ' + letter.toLowerCase(); });
                  failure.appendChild(kind);
                  failure.appendChild(document.createTextNode(': '));
                }
                failure.appendChild(document.createTextNode(update.message || ''));
                cell.appendChild(failure);
              }
            });
            if (following && log.dataset.deployment === id && update.log) {
              update.log.forEach(function (line) {
                const span = document.createElement('span');
                span.className = line.level;
                span.textContent = line.text + '\\n';
                log.appendChild(span);
              });
            }
            if (following && log.dataset.deployment === id && update.steps) {
              const table = document.getElementById('timeline');
              update.steps.forEach(function (step) {
                const number = String(step.number);
                let row = null;
                for (const candidate of table.querySelectorAll('tr[data-step]')) {
                  if (candidate.dataset.step === number) { row = candidate; break; }
                }
                if (!row) {
                  row = table.insertRow(-1);
                  row.dataset.step = number;
                  for (let i = 0; i < 5; i++) row.insertCell(-1);
                  row.cells[3].className = 'status';
                  row.cells[4].className = 'duration';
                }
                row.className = 'step-row ' + step.status;
                row.cells[0].textContent = number;
                row.cells[1].textContent = step.name;
                row.cells[2].textContent = step.type;
                row.cells[3].textContent = step.status;
                if (String(step.status).indexOf('failed') === 0 && step.message) {
                  const failure = document.createElement('div');
                  failure.className = 'failure';
                  failure.textContent = step.message;
                  row.cells[3].appendChild(failure);
                }
                row.cells[4].textContent = typeof step.duration === 'number' ? step.duration.toFixed(1) + ' s' : '';
              });
            }
          };
        })();
        """
}
