import Foundation
import Hummingbird

/// The dashboard's Multicast page: the sessions with their state and members, a form to create
/// one, and a button to cancel one, for an administrator without curl.
///
/// As the Images pages do, its script calls the admin API again under `/dashboard/multicast/...`:
/// the same handlers (`ImprintServer.multicast`, so the same checks and messages), with the
/// session's cookie for the admin token and its CSRF token in an `X-CSRF-Token` header for
/// everything that changes something.
extension ImprintServer {
    /// GET /dashboard/multicast
    func dashboardMulticastPage(access: DashboardAccess) async throws -> Response {
        var views: [MulticastSessionView] = []
        for session in try await storage.multicastSessions().prefix(200) {
            views.append(try await multicastSessionView(session))
        }
        var machines: [String: String] = [:]
        for machineID in Set(views.flatMap { $0.members.map(\.machineID) }) {
            machines[machineID] = Self.name(try await storage.machine(id: machineID))
        }
        let images = try await storage.libraryImages().filter { $0.latest != nil }.map(\.name)
        return dashboardHTML(DashboardMulticastPage.index(views, machines: machines, images: images, csrf: access.csrfToken))
    }

    /// The multicast API for the page's script: with a session, every request that changes
    /// something carries the session's CSRF token in its header.
    func dashboardMulticastAPI(_ route: MulticastRoute, _ request: Request, _ context: BasicRequestContext,
                               access: DashboardAccess) async throws -> Response {
        guard route.isAdmin else { throw APIError.notFound("route") }
        if request.method != .get && request.method != .head { try requireCSRFHeader(request, access) }
        return try await multicast(route, request, context)
    }
}

/// The Multicast page's HTML, pure: every name, path and message is escaped.
enum DashboardMulticastPage {
    static func escape(_ text: String) -> String { DashboardPage.escape(text) }

    static func index(_ sessions: [MulticastSessionView], machines: [String: String], images: [String], csrf: String) -> String {
        var body = "<h1>Multicast sessions</h1><div id=\"multicast\" data-csrf=\"\(escape(csrf))\">"
            + "<p id=\"multicast-notice\" class=\"form-message\" role=\"alert\"></p>"
        body += sessionsSection(sessions, machines: machines)
        body += createSection(images: images)
        body += "</div>"
        return DashboardPage.page(title: "Imprint: multicast", body: body, csrf: csrf, feed: false)
    }

    static func sessionsSection(_ sessions: [MulticastSessionView], machines: [String: String]) -> String {
        var html = "<section id=\"multicast-sessions\"><h2>Sessions</h2>"
        guard !sessions.isEmpty else {
            return html + "<p class=\"empty\">No multicast session yet: create one below, or give a rule \"multicast\" settings.</p></section>"
        }
        html += "<table><tr><th>Session</th><th>File</th><th>Group</th><th>State</th><th>Start</th><th>Machines</th><th>Sent</th><th></th></tr>"
        for view in sessions {
            let session = view.session
            let state = session.state.rawValue
            let preparing = session.isOpen && session.manifestSHA256 == nil
            let expected = session.expectedMachines.map { "\($0.count) listed" } ?? session.expectedCount.map { "the next \($0)" }
                ?? session.rule.map { "rule \($0)" } ?? ""
            let counts = MulticastMember.State.allCases.map { state in (state, view.members.count(where: { $0.state == state })) }
                .filter { $0.1 > 0 }.map { "\($0.1) \($0.0.rawValue)" }
            html += "<tr class=\"multicast-session \(escape(state))\" data-session=\"\(escape(session.id))\" data-state=\"\(escape(state))\">"
                + "<td>\(escape(session.name))<div class=\"id\">\(escape(session.id))</div></td>"
                + "<td><code>\(escape(session.file))</code>"
                + (session.image.map { image in "<div class=\"hint\">library image \(escape(image))" + (session.imageVersion.map { " version \($0)" } ?? "") + "</div>" } ?? "")
                + "<div class=\"hint\">\(DashboardImagesPage.bytes(session.size))</div></td>"
                + "<td>\(escape(session.group)):\(session.port)<div class=\"hint\">\(String(format: "%.1f", Double(session.rateBitsPerSecond) / 1_000_000)) Mbit/s</div></td>"
                + "<td class=\"state \(escape(state))\">\(escape(preparing ? "preparing (making the block manifest)" : state))"
                + (session.reason.map { "<div class=\"\(session.state == .failed ? "failure" : "hint")\">\(escape($0))</div>" } ?? "") + "</td>"
                + "<td>\(session.minMachines) machine(s)" + (session.startAt.map { " or at \(escape($0))" } ?? "")
                + (session.started.map { "<div class=\"hint\">started \(escape($0))</div>" } ?? "") + "</td>"
                + "<td>\(escape(expected))<div class=\"members\">\(escape(counts.joined(separator: ", ")))</div>"
                + membersList(view.members, machines: machines) + "</td>"
                + "<td>\(session.passes) pass(es), \(DashboardImagesPage.bytes(session.bytesSent))</td><td class=\"actions\">"
                + (session.isOpen
                    ? "<button type=\"button\" data-action=\"cancel\" data-session=\"\(escape(session.id))\" data-confirm=\"Cancel session \(escape(session.name))?\">Cancel</button> "
                    : "<button type=\"button\" data-action=\"delete\" data-session=\"\(escape(session.id))\" data-confirm=\"Delete session \(escape(session.name))?\">Delete</button>")
                + "</td></tr>"
        }
        return html + "</table></section>"
    }

    static func membersList(_ members: [MulticastMember], machines: [String: String]) -> String {
        guard !members.isEmpty else { return "" }
        return "<ul class=\"changes\">" + members.prefix(50).map { member in
            "<li class=\"member \(escape(member.state.rawValue))\">\(escape(machines[member.machineID] ?? member.machineID)): \(escape(member.state.rawValue))</li>"
        }.joined() + (members.count > 50 ? "<li>\(members.count - 50) more</li>" : "") + "</ul>"
    }

    static func createSection(images: [String]) -> String {
        let options = images.map { "<option value=\"\(escape($0))\">\(escape($0))</option>" }.joined()
        return """
            <section id="multicast-create"><h2>Create a session</h2>
            <form id="multicast-form" class="library-form">
            <label>Name <input type="text" name="name" required maxlength="100" placeholder="Room 12, Monday"></label>
            <label>File under the content folder <input type="text" name="file" placeholder="images/install.wim"></label>
            <label>or a library image <select name="image"><option value="">(none: the file above)</option>\(options)</select></label>
            <label>Version <input type="text" name="version" value="latest" size="8"></label>
            <label>Rate (Mbit/s) <input type="number" name="rateMbps" value="100" min="0.1" step="0.1"></label>
            <label>Start when this many machines are heard <input type="number" name="minMachines" value="1" min="1"></label>
            <label>or this many seconds from now <input type="number" name="startAfterSeconds" min="0" placeholder="(no time)"></label>
            <label>Machines: their ids, one a line <textarea name="machines" rows="3"></textarea></label>
            <label>or the next N machines that check in <input type="number" name="count" min="1" placeholder="(the start count)"></label>
            <button type="submit">Create</button>
            <p class="hint">The server chooses the group address and port, makes the file's block manifest, then sends to the machines whose image step fetches this file from the server. A machine that joins late still completes; one the group does not reach fetches by HTTP.</p>
            <p class="form-message" role="alert"></p></form></section>
            """
    }

    /// The page's script: the form as JSON, the buttons, a reload every few seconds while a
    /// session is open. What the server sends is only ever text here.
    static let script = #"""
(function () {
  'use strict';
  const root = document.getElementById('multicast');
  if (root === null) return;
  const csrf = root.dataset.csrf || '';
  const say = window.ImprintUpload.say;
  const api = window.ImprintUpload.apiFor(csrf);
  const form = document.getElementById('multicast-form');
  if (form) {
    form.addEventListener('submit', async function (event) {
      event.preventDefault();
      const message = form.querySelector('.form-message');
      const value = function (name) { const field = form.elements.namedItem(name); return field ? field.value.trim() : ''; };
      const body = {name: value('name')};
      if (value('image')) {
        body.image = value('image');
        body.version = /^[0-9]+$/.test(value('version')) ? Number(value('version')) : (value('version') || 'latest');
      } else if (value('file')) {
        body.file = value('file');
      }
      if (value('rateMbps')) body.rateMbps = Number(value('rateMbps'));
      if (value('minMachines')) body.minMachines = Number(value('minMachines'));
      if (value('startAfterSeconds')) body.startAfterSeconds = Number(value('startAfterSeconds'));
      const machines = value('machines').split(/\s+/).filter(function (id) { return id.length > 0; });
      if (machines.length > 0) body.machines = machines;
      if (value('count')) body.count = Number(value('count'));
      try {
        const session = await api('POST', '/dashboard/multicast/sessions', body);
        say(message, 'Session ' + session.name + ' created: ' + session.group + ':' + session.port + '.', 'done');
        setTimeout(function () { location.reload(); }, 800);
      } catch (error) {
        say(message, error.message, 'error');
      }
    });
  }
  root.addEventListener('click', async function (event) {
    const button = event.target.closest('button[data-action]');
    if (!button) return;
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    const id = encodeURIComponent(button.dataset.session);
    try {
      if (button.dataset.action === 'cancel') await api('POST', '/dashboard/multicast/sessions/' + id + '/cancel');
      if (button.dataset.action === 'delete') await api('DELETE', '/dashboard/multicast/sessions/' + id);
      location.reload();
    } catch (error) {
      say(document.getElementById('multicast-notice'), error.message, 'error');
    }
  });
  // Open sessions change as machines join and finish: the page follows them, unless the
  // administrator is typing in the form.
  if (document.querySelector('tr.multicast-session.waiting, tr.multicast-session.running')) {
    setInterval(function () {
      if (form && form.contains(document.activeElement)) return;
      location.reload();
    }, 5000);
  }
})();
"""#
}
