import Foundation

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
    public var created: String
    public var ended: String?

    public init(id: String, machine: String, sequence: String, state: String, percent: Double,
                currentStep: String?, message: String?, created: String, ended: String?) {
        self.id = id
        self.machine = machine
        self.sequence = sequence
        self.state = state
        self.percent = percent
        self.currentStep = currentStep
        self.message = message
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
    public static func index(machines: [DashboardMachine], change: Int) -> String {
        let pending = machines.filter { $0.state == "pending" }
        var body = "<h1>Imprint deployments</h1>"
        if !pending.isEmpty {
            body += "<section id=\"pending\"><h2>Waiting for approval</h2><table><tr><th>Machine</th><th>MAC</th><th>Serial</th><th>Last seen</th><th></th></tr>"
            for machine in pending {
                body += "<tr id=\"pending-\(escape(machine.id))\"><td>\(escape(machine.name))</td><td>\(escape(machine.macs.joined(separator: ", ")))</td>"
                    + "<td>\(escape(machine.serial ?? ""))</td><td>\(escape(machine.lastSeen))</td>"
                    + "<td><form method=\"post\" action=\"/dashboard/machines/\(escape(machine.id))/approve\"><button type=\"submit\">Approve</button></form></td></tr>"
            }
            body += "</table></section>"
        }
        body += "<section id=\"machines\"><h2>Machines</h2><table><tr><th>Machine</th><th>MAC</th><th>Sequence</th><th>Progress</th><th>Step</th><th>State</th><th></th></tr>"
        for machine in machines where machine.state != "pending" {
            let deployment = machine.deployment
            body += "<tr class=\"machine\" id=\"machine-\(escape(machine.id))\"><td>\(escape(machine.name))</td>"
                + "<td>\(escape(machine.macs.first ?? ""))</td>"
            if let deployment {
                body += "<td><a href=\"/dashboard/deployments/\(escape(deployment.id))\">\(escape(deployment.sequence))</a></td>"
                    + "<td>\(progress(deployment))</td>"
                    + "<td class=\"step\" data-deployment=\"\(escape(deployment.id))\">\(escape(deployment.currentStep ?? ""))</td>"
                    + "<td class=\"state \(escape(deployment.state))\" data-deployment=\"\(escape(deployment.id))\">\(escape(deployment.state))"
                    + (deployment.state == "failed" ? "<div class=\"failure\">\(escape(deployment.message ?? ""))</div>" : "") + "</td>"
                    + "<td class=\"actions\">\(deployment.state == "succeeded" ? redeployCell(machine) : "")</td>"
            } else {
                body += "<td colspan=\"5\">no deployment</td>"
            }
            body += "</tr>"
        }
        body += "</table></section>"
        return page(title: "Imprint", body: body, change: change)
    }

    public static func deployment(_ deployment: DashboardDeployment, steps: [DashboardStep], log: [DashboardLogLine], after: Int,
                                  change: Int) -> String {
        var body = "<p><a href=\"/dashboard\">All machines</a></p>"
        body += "<h1>\(escape(deployment.sequence)) on \(escape(deployment.machine))</h1>"
        body += "<p class=\"summary\">\(progress(deployment)) <span class=\"state \(escape(deployment.state))\" data-deployment=\"\(escape(deployment.id))\">\(escape(deployment.state))</span>"
            + " <span class=\"step\" data-deployment=\"\(escape(deployment.id))\">\(escape(deployment.currentStep ?? ""))</span></p>"
        if deployment.state == "failed", let message = deployment.message {
            body += "<p class=\"failure\" id=\"failure\">\(escape(message))</p>"
        }
        body += "<h2>Steps</h2><table id=\"timeline\"><tr><th>#</th><th>Step</th><th>Type</th><th>Status</th><th>Duration</th></tr>"
        for step in steps {
            body += "<tr class=\"step-row \(escape(step.status))\" data-step=\"\(escape(step.number))\"><td>\(escape(step.number))</td><td>\(escape(step.name))</td>"
                + "<td>\(escape(step.type))</td><td class=\"status\">\(escape(step.status))"
                + (step.status.hasPrefix("failed") ? "<div class=\"failure\">\(escape(step.message ?? ""))</div>" : "")
                + "</td><td class=\"duration\">\(step.duration.map { String(format: "%.1f s", $0) } ?? "")</td></tr>"
        }
        body += "</table><h2>Log</h2><pre id=\"log\" data-deployment=\"\(escape(deployment.id))\" data-after=\"\(after)\">"
        for line in log {
            body += "<span class=\"\(escape(line.level))\">\(escape(String(line.time.dropFirst(11).prefix(12)))) "
                + (line.step.map { "[\(escape($0))] " } ?? "") + "\(escape(line.message))</span>\n"
        }
        body += "</pre>"
        return page(title: "Imprint: \(deployment.machine)", body: body, change: change)
    }

    /// A deployed machine boots from its disk until someone asks for it to be imaged again.
    static func redeployCell(_ machine: DashboardMachine) -> String {
        if machine.redeployRequested {
            return "<div class=\"redeploy requested\">deploys again at its next network boot</div>"
        }
        return "<form class=\"redeploy\" method=\"post\" action=\"/dashboard/machines/\(escape(machine.id))/redeploy\">"
            + "<button type=\"submit\">Deploy again</button></form>"
    }

    static func progress(_ deployment: DashboardDeployment) -> String {
        let percent = max(0, min(100, deployment.percent))
        return "<div class=\"progress\" data-deployment=\"\(escape(deployment.id))\" data-percent=\(String(format: "\"%.1f\"", percent))>"
            + "<div class=\"bar \(escape(deployment.state))\" style=\"width: \(String(format: "%.1f", percent))%\"></div>"
            + "<span class=\"label\">\(String(format: "%.1f", percent))%</span></div>"
    }

    static func page(title: String, body: String, live: Bool = true, change: Int = 0) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>\(escape(title))</title>
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <style>\(style)</style></head>
        <body data-change="\(change)">\(body)\(live ? "<script>" + script + "</script>" : "")</body></html>
        """
    }

    public static func escape(_ text: String) -> String {
        var result = ""
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&#39;"
            default: result.append(character)
            }
        }
        return result
    }

    static let style = """
        body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
        table { border-collapse: collapse; width: 100%; margin-bottom: 2em; }
        th, td { text-align: left; padding: 0.4em 0.6em; border-bottom: 1px solid #ddd; vertical-align: top; }
        .progress { position: relative; width: 14em; height: 1.2em; background: #eee; border-radius: 3px; display: inline-block; }
        .progress .bar { height: 100%; background: #2a7ae2; border-radius: 3px; transition: width 0.3s; }
        .progress .bar.succeeded { background: #2e9e44; } .progress .bar.failed { background: #c0392b; }
        .progress .label { position: absolute; left: 0.5em; top: 0; font-size: 0.85em; }
        .failed, .failure { color: #c0392b; font-weight: bold; } .succeeded { color: #2e9e44; }
        tr.failed { background: #fdecea; } tr.skipped { color: #888; }
        pre#log { background: #f6f6f6; padding: 1em; max-height: 30em; overflow: auto; }
        pre#log .warning { color: #a66300; } pre#log .error { color: #c0392b; }
        """

    /// Live updates: one EventSource per page; each message is a deployment's new summary (and,
    /// on a deployment page, its new log lines and step ends).
    static let script = """
        (function () {
          const log = document.getElementById('log');
          const follow = log ? '&deployment=' + encodeURIComponent(log.dataset.deployment) + '&after=' + log.dataset.after : '';
          const source = new EventSource('/dashboard/live?since=' + document.body.dataset.change + follow);
          source.onmessage = function (message) {
            const update = JSON.parse(message.data);
            const id = update.id;
            document.querySelectorAll('.progress[data-deployment="' + id + '"]').forEach(function (bar) {
              const percent = Math.max(0, Math.min(100, update.percent || 0));
              bar.dataset.percent = percent.toFixed(1);
              const fill = bar.querySelector('.bar');
              fill.style.width = percent.toFixed(1) + '%';
              fill.className = 'bar ' + update.state;
              bar.querySelector('.label').textContent = percent.toFixed(1) + '%';
            });
            document.querySelectorAll('.step[data-deployment="' + id + '"]').forEach(function (cell) {
              cell.textContent = update.currentStep || '';
            });
            document.querySelectorAll('.state[data-deployment="' + id + '"]').forEach(function (cell) {
              cell.textContent = update.state;
              cell.className = 'state ' + update.state;
              if (update.state === 'failed' && update.message) {
                const failure = document.createElement('div');
                failure.className = 'failure';
                failure.textContent = update.message;
                cell.appendChild(failure);
              }
            });
            if (log && log.dataset.deployment === id && update.log) {
              update.log.forEach(function (line) {
                const span = document.createElement('span');
                span.className = line.level;
                span.textContent = line.text + '\\n';
                log.appendChild(span);
              });
            }
            if (log && log.dataset.deployment === id && update.steps) {
              const table = document.getElementById('timeline');
              update.steps.forEach(function (step) {
                let row = table.querySelector('tr[data-step="' + step.number + '"]');
                if (!row) {
                  row = table.insertRow(-1);
                  row.dataset.step = step.number;
                  for (let i = 0; i < 5; i++) row.insertCell(-1);
                  row.cells[3].className = 'status';
                  row.cells[4].className = 'duration';
                }
                row.className = 'step-row ' + step.status;
                row.cells[0].textContent = step.number;
                row.cells[1].textContent = step.name;
                row.cells[2].textContent = step.type;
                row.cells[3].textContent = step.status;
                if (step.status.indexOf('failed') === 0 && step.message) {
                  const failure = document.createElement('div');
                  failure.className = 'failure';
                  failure.textContent = step.message;
                  row.cells[3].appendChild(failure);
                }
                row.cells[4].textContent = step.duration != null ? step.duration.toFixed(1) + ' s' : '';
              });
            }
          };
        })();
        """
}
