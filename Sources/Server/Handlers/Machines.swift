import Foundation
import Hummingbird
import SequenceModel

/// The machines' admin API beyond the list, approval, redeploy and registration (issue 20): one
/// machine with its deployment history, rejecting one, forgetting one, and registering a batch
/// from CSV. The dashboard's Machines pages call the same functions, so a form's error is the API's.
public enum MachineRoute: Sendable, Hashable {
    case machine, reject, forget, importCSV
}

extension ImprintServer {
    /// The deployments a machine's page and `GET /api/v1/admin/machines/{id}` show, newest first.
    static let machineHistoryLimit = 200

    func machinesAPI(_ route: MachineRoute, _ request: Request, _ context: BasicRequestContext) async throws -> Response {
        var request = request
        switch route {
        case .machine:
            let id = try request.requiredParameter("id", context)
            guard let machine = try await storage.machine(id: id) else { throw APIError.notFound("machine \(id)") }
            struct View: Encodable {
                var machine: Machine
                var redeployRequested: String?
                var deployments: [DeploymentSummary]
            }
            let deployments = try await storage.machineDeployments(machineID: id, limit: Self.machineHistoryLimit)
            return JSON.response(View(machine: machine, redeployRequested: try await storage.redeployRequested(machineID: id),
                                      deployments: deployments.map(DeploymentSummary.init)))

        case .reject:
            return JSON.response(try await rejectMachine(id: try request.requiredParameter("id", context)))

        case .forget:
            let forgotten = try await forgetMachine(id: try request.requiredParameter("id", context))
            struct Forgotten: Encodable { var id: String; var deployments: Int }
            return JSON.response(Forgotten(id: forgotten.machine.id, deployments: forgotten.deployments))

        case .importCSV:
            let data = try await request.bodyData(limit: MachineCSV.byteLimit)
            guard let text = String(data: data, encoding: .utf8) else {
                throw APIError(.unprocessableContent, "the CSV is not UTF-8 text", field: "line 1")
            }
            let machines = try await importMachines(csv: text, handler: .machines(.importCSV))
            struct Imported: Encodable { var machines: [Machine] }
            return JSON.response(Imported(machines: machines), status: .created)
        }
    }

    // MARK: - Checked as the API checks them (API, dashboard forms, CSV rows)

    /// A registration from what an administrator typed, checked as POST /api/v1/admin/machines
    /// checks one; an error names the field (`macs[1]`, `uuid`, `serial`, `manufacturer`, `model`).
    static func machineRegistration(macs: [String], uuid: String?, serial: String?, manufacturer: String?,
                                    model: String?) throws(APIError) -> MachineRegistration {
        let identity: MachineIdentity
        do {
            identity = try MachineIdentity(macs: macs, uuid: uuid, serial: serial, prefix: "", macsField: "macs", uuidField: "uuid",
                                           serialField: "serial")
        } catch { throw APIError(.unprocessableContent, error.message, field: error.field) }
        guard !identity.isEmpty else {
            throw APIError(.unprocessableContent, "name the machine by at least one MAC address, its UUID or its serial number", field: "macs")
        }
        for (field, value) in [("manufacturer", manufacturer), ("model", model)] {
            if let value, value.count > 200 || value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                throw APIError(.unprocessableContent, "at most 200 characters and no control characters", field: field)
            }
        }
        func blankIsNil(_ text: String?) -> String? { text.flatMap { $0.isEmpty ? nil : $0 } }
        return MachineRegistration(identity: identity, manufacturer: blankIsNil(manufacturer), model: blankIsNil(model))
    }

    /// Stores one registration (the API's POST and the dashboard's form); 409 at the field whose
    /// MAC, UUID or serial belongs to a machine already.
    func registerMachine(_ registration: MachineRegistration) async throws -> Machine {
        do {
            let machine = try await storage.registerMachine(registration.identity, manufacturer: registration.manufacturer, model: registration.model)
            AuditNote.current?.object(machine.id)
            logger.info("machine \(machine.id) registered by \(Principal.current?.name ?? "an administrator"): \(Self.describe(registration.identity))")
            return machine
        } catch let conflict as RegistrationConflict {
            throw APIError(.conflict, conflict.message, field: conflict.field)
        }
    }

    /// Rejects a machine: its check-ins are told so, and it gets no deployment until approved.
    /// A deployment already running goes on (its agent holds its token and may be writing the
    /// disk); resetting that token cuts it off, since the rejected machine gets no new one.
    func rejectMachine(id: String) async throws -> Machine {
        guard try await storage.setMachineState(id: id, state: .rejected), let machine = try await storage.machine(id: id) else {
            throw APIError.notFound("machine \(id)")
        }
        logger.warning("machine \(id) rejected by \(Principal.current?.name ?? "an administrator")")
        return machine
    }

    /// Forgets a machine and what hangs on it; 409 while a deployment of it is active with a
    /// token nobody reset, naming it and the way out.
    func forgetMachine(id: String) async throws -> (machine: Machine, deployments: Int) {
        switch try await storage.forgetMachine(id: id) {
        case .notFound:
            throw APIError.notFound("machine \(id)")
        case let .busy(deployment):
            throw APIError(.conflict, "machine \(id) has deployment \(deployment.id) \(deployment.state.rawValue) with a live token: its agent may be "
                           + "writing the disk. Let it end, or reset its token (POST /api/v1/admin/deployments/\(deployment.id)/reset-token), "
                           + "then forget the machine", field: "id")
        case let .forgotten(machine, count):
            logger.warning("machine \(id) forgotten by \(Principal.current?.name ?? "an administrator"), with \(count) deployment(s)")
            return (machine, count)
        }
    }

    /// A CSV batch, every row checked as one registration is and against the rows before it,
    /// stored all or none. 422 naming each faulty line and column (`issues`, path "line 3, column 2
    /// (uuid)"); 409 the same for identifiers that belong to known machines. Each machine made is
    /// recorded in the audit log (as one registration is), under `handler`'s route.
    func importMachines(csv text: String, handler: RouteSpec.Handler) async throws -> [Machine] {
        let rows: [MachineCSV.Row]
        do { rows = try MachineCSV.parse(text) } catch { throw Self.csvError(.unprocessableContent, error.problems) }
        let stored: [Machine]
        do { stored = try await storage.registerMachines(rows.map(\.registration)) } catch let batch as BatchRegistrationConflict {
            let problems = batch.conflicts.map { index, conflict in
                rows[index].problem(field: conflict.field, message: conflict.message)
            }
            throw Self.csvError(.conflict, problems)
        }
        if let principal = Principal.current {
            let route = RouteSpec.byHandler[handler]
            for machine in stored {
                let after = try? await auditSnapshot(.machine, id: machine.id)
                let entry = AuditEntry(id: 0, time: StoredTime.now(), actor: principal.name, role: principal.role, via: principal.via.rawValue,
                                       action: route.map { "\($0.method.rawValue) \($0.path)" } ?? "import",
                                       objectKind: "machine", objectID: machine.id, before: nil, after: after.map(Self.auditMasked))
                do { try await storage.appendAudit(entry) } catch {
                    // The machines are stored: the caller learns of it; the log says the record is missing (as `audited` does).
                    logger.error("audit: could not record \(entry.action) of machine \(machine.id) by \(entry.actor): \(error)")
                }
            }
        }
        logger.info("\(stored.count) machine(s) registered from CSV by \(Principal.current?.name ?? "an administrator")")
        return stored
    }

    static func csvError(_ status: HTTPResponse.Status, _ problems: [MachineCSV.Problem]) -> APIError {
        let first = problems.first
        let count = Set(problems.map(\.line)).count
        var message = "\(count) line(s) of the CSV have errors; nothing was imported"
        if let first { message += "; first: \(first.description)" }
        return APIError(status, message, field: first?.location,
                        issues: problems.prefix(MachineCSV.problemLimit).map {
                            APIError.IssueBody(severity: "error", path: $0.location + ($0.column.map { " (\($0))" } ?? ""), message: $0.message)
                        })
    }
}

/// A batch of machines to register, as CSV: a header line naming the columns (`mac` or `macs`,
/// `uuid`, `serial`, `manufacturer`, `model`, any order and case; at least one identifier),
/// then a machine per line. Several MACs in one cell are separated by spaces or `;`. Fields
/// may be quoted as RFC 4180 says (a `"` inside doubled); `;` separates the columns instead of
/// `,` when the header has a `;` and no `,` (what Excel writes in many languages).
enum MachineCSV {
    static let byteLimit = 1 << 20
    static let rowLimit = 5_000
    /// At most this many problems listed; the count says how many lines had one.
    static let problemLimit = 100

    enum Column: String, CaseIterable { case macs, uuid, serial, manufacturer, model }

    /// A line and column at fault (column nil: the whole line) and why.
    struct Problem: Error, Sendable, Equatable {
        var line: Int
        /// 1-based, as a spreadsheet counts.
        var columnNumber: Int?
        /// The header's name of that column.
        var column: String?
        var message: String

        var location: String { "line \(line)" + (columnNumber.map { ", column \($0)" } ?? "") }
        var description: String { location + (column.map { " (\($0))" } ?? "") + ": " + message }
    }

    struct Problems: Error { var problems: [Problem] }

    static func problem(line: Int, columns: [Column: (number: Int, name: String)], field: String, message: String) -> Problem {
        let column = Column(rawValue: String(field.prefix { $0 != "[" })) ?? .macs
        let place = columns[column]
        return Problem(line: line, columnNumber: place?.number, column: place?.name, message: message)
    }

    /// One machine of the batch and where it came from.
    struct Row: Sendable {
        var line: Int
        var registration: MachineRegistration
        /// Where each column is (1-based) and what the header called it.
        var columns: [Column: (number: Int, name: String)]

        /// A registration's field (`macs[1]`, `uuid`...) as its line and column.
        func problem(field: String, message: String) -> Problem {
            MachineCSV.problem(line: line, columns: columns, field: field, message: message)
        }
    }

    /// Every row checked; throws `Problems` with each faulty line's first error (and every
    /// repeat of an identifier already on an earlier line).
    static func parse(_ text: String) throws(Problems) -> [Row] {
        var body = Substring(text)
        if body.hasPrefix("\u{FEFF}") { body = body.dropFirst() }
        let headerLine = body.prefix { $0 != "\n" && $0 != "\r\n" }
        let separator: Character = headerLine.contains(";") && !headerLine.contains(",") ? ";" : ","
        let records = split(body, separator: separator)
        guard let header = records.first, !header.cells.allSatisfy({ $0.trimmingCharacters(in: .whitespaces).isEmpty }) else {
            throw Problems(problems: [Problem(line: 1, message: "the CSV is empty: its first line names the columns ("
                                                + Column.allCases.map(\.rawValue).joined(separator: ", ") + "), then a machine per line")])
        }
        var columns: [Column: (number: Int, name: String)] = [:]
        var problems: [Problem] = []
        for (index, cell) in header.cells.enumerated() {
            let name = cell.trimmingCharacters(in: .whitespaces)
            let key = name.lowercased().replacingOccurrences(of: " ", with: "")
            let column: Column? = key == "mac" || key == "macs" ? .macs : (key == "serialnumber" ? .serial : Column(rawValue: key))
            guard let column else {
                problems.append(Problem(line: header.line, columnNumber: index + 1, column: name,
                                        message: "\"\(MachineIdentity.printable(name))\" is not a column this import knows: "
                                            + "mac, uuid, serial, manufacturer, model"))
                continue
            }
            if let earlier = columns[column] {
                problems.append(Problem(line: header.line, columnNumber: index + 1, column: name,
                                        message: "the column \(column.rawValue) is named twice (column \(earlier.number) too)"))
            }
            columns[column] = (index + 1, name)
        }
        if problems.isEmpty, columns[.macs] == nil, columns[.uuid] == nil, columns[.serial] == nil {
            problems.append(Problem(line: header.line, message: "the header names no identifier: a column mac, uuid or serial is needed"))
        }
        guard problems.isEmpty else { throw Problems(problems: problems) }

        var rows: [Row] = []
        // Which line holds each identifier already: the batch must not contradict itself either.
        var seen: [String: Int] = [:]
        for record in records.dropFirst() where !record.cells.allSatisfy({ $0.trimmingCharacters(in: .whitespaces).isEmpty }) {
            guard rows.count + problems.count < rowLimit else {
                problems.append(Problem(line: record.line, message: "more than \(rowLimit) machines: import them in several batches"))
                break
            }
            if let problem = record.problem {
                problems.append(Problem(line: record.line, message: problem))
                continue
            }
            guard record.cells.count <= header.cells.count else {
                problems.append(Problem(line: record.line, columnNumber: header.cells.count + 1,
                                        message: "\(record.cells.count) cells; the header names \(header.cells.count) columns"))
                continue
            }
            func cell(_ column: Column) -> String? {
                guard let place = columns[column], place.number <= record.cells.count else { return nil }
                let value = record.cells[place.number - 1].trimmingCharacters(in: .whitespaces)
                return value.isEmpty ? nil : value
            }
            let macs = (cell(.macs) ?? "").split(whereSeparator: { $0 == " " || $0 == ";" || $0 == "," }).map(String.init)
            let registration: MachineRegistration
            do {
                registration = try ImprintServer.machineRegistration(macs: macs, uuid: cell(.uuid), serial: cell(.serial),
                                                                     manufacturer: cell(.manufacturer), model: cell(.model))
            } catch {
                problems.append(problem(line: record.line, columns: columns, field: error.field ?? "macs", message: error.message))
                continue
            }
            let row = Row(line: record.line, registration: registration, columns: columns)
            var repeated: Problem?
            let identity = registration.identity
            for (index, mac) in identity.macs.enumerated() {
                if let line = seen["mac " + mac] { repeated = row.problem(field: "macs[\(index)]", message: "MAC \(mac) is on line \(line) already"); break }
            }
            if repeated == nil, let uuid = identity.uuid, let line = seen["uuid " + uuid] {
                repeated = row.problem(field: "uuid", message: "UUID \(uuid) is on line \(line) already")
            }
            if repeated == nil, let serial = identity.serial, let line = seen["serial " + serial] {
                repeated = row.problem(field: "serial", message: "serial \(serial) is on line \(line) already")
            }
            if let repeated {
                problems.append(repeated)
                continue
            }
            for mac in identity.macs { seen["mac " + mac] = record.line }
            if let uuid = identity.uuid { seen["uuid " + uuid] = record.line }
            if let serial = identity.serial { seen["serial " + serial] = record.line }
            rows.append(row)
        }
        guard problems.isEmpty else { throw Problems(problems: problems) }
        guard !rows.isEmpty else {
            throw Problems(problems: [Problem(line: header.line + 1, message: "no machine: the header is followed by no line")])
        }
        return rows
    }

    struct Record {
        /// Where the record starts (a quoted cell may hold line breaks).
        var line: Int
        var cells: [String]
        /// A quote left open, or text after a closing quote.
        var problem: String?
    }

    /// RFC 4180's records, each with the line it starts on.
    static func split(_ text: Substring, separator: Character) -> [Record] {
        var records: [Record] = []
        var cells: [String] = []
        var cell = ""
        var line = 1, start = 1
        var quoted = false, wasQuoted = false
        var problem: String?
        var characters = text.makeIterator()
        var pending: Character? = characters.next()
        func endRecord() {
            cells.append(cell)
            records.append(Record(line: start, cells: cells, problem: problem))
            cells = []; cell = ""; problem = nil; wasQuoted = false
        }
        while let character = pending {
            pending = characters.next()
            if quoted {
                if character == "\"" {
                    if pending == "\"" { cell.append("\""); pending = characters.next() } else { quoted = false }
                } else {
                    if character == "\n" || character == "\r\n" { line += 1 }
                    cell.append(character)
                }
                continue
            }
            switch character {
            case "\"":
                if cell.trimmingCharacters(in: .whitespaces).isEmpty && !wasQuoted {
                    cell = ""; quoted = true; wasQuoted = true
                } else if problem == nil {
                    problem = "a quote (\") inside a cell that does not start with one: quote the whole cell, and double the quotes inside"
                }
            case separator:
                cells.append(cell); cell = ""; wasQuoted = false
            case "\n", "\r\n", "\r":
                endRecord()
                line += 1
                start = line
            default:
                if wasQuoted, !character.isWhitespace, problem == nil {
                    problem = "text after a quoted cell's closing quote"
                }
                cell.append(character)
            }
        }
        if quoted {
            problem = "a quoted cell is not closed (a \" is missing)"
        }
        if quoted || !cell.isEmpty || !cells.isEmpty { endRecord() }
        return records
    }
}

/// The parts of a `multipart/form-data` body, as a form with a file input posts it: each
/// part's name, file name when it is a file, and bytes.
struct MultipartForm: Sendable {
    struct Part: Sendable {
        var name: String
        var filename: String?
        var data: Data
    }
    var parts: [Part] = []

    subscript(name: String) -> Part? { parts.first { $0.name == name } }

    /// nil when `contentType` is not multipart/form-data with a boundary; throws 400 on a body
    /// that does not follow it.
    init?(contentType: String?, body: Data) throws(APIError) {
        guard let contentType, contentType.lowercased().hasPrefix("multipart/form-data") else { return nil }
        let boundaryParameter = contentType.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            .first { $0.lowercased().hasPrefix("boundary=") }
        guard var boundary = boundaryParameter.map({ String($0.dropFirst("boundary=".count)) }), !boundary.isEmpty, boundary.count <= 200 else {
            throw APIError(.badRequest, "a multipart/form-data body without a boundary")
        }
        if boundary.hasPrefix("\""), boundary.hasSuffix("\""), boundary.count >= 2 { boundary = String(boundary.dropFirst().dropLast()) }
        let bytes = [UInt8](body)
        let delimiter = Array("--\(boundary)".utf8)
        var position = Self.find(delimiter, in: bytes, from: 0)
        guard var at = position else { throw APIError(.badRequest, "the multipart/form-data body holds no part") }
        while true {
            at += delimiter.count
            // "--" after a delimiter: the last one.
            if at + 1 < bytes.count, bytes[at] == 0x2D, bytes[at + 1] == 0x2D { break }
            guard let headersEnd = Self.find(Array("\r\n\r\n".utf8), in: bytes, from: at) else {
                throw APIError(.badRequest, "a part of the multipart/form-data body has no end to its headers")
            }
            let headers = String(decoding: bytes[at..<headersEnd], as: UTF8.self)
            let dataStart = headersEnd + 4
            position = Self.find(Array("\r\n".utf8) + delimiter, in: bytes, from: dataStart)
            guard let next = position else { throw APIError(.badRequest, "a part of the multipart/form-data body is not closed") }
            var name: String?, filename: String?
            for line in headers.components(separatedBy: "\r\n") where line.lowercased().hasPrefix("content-disposition:") {
                name = Self.parameter("name", in: line)
                filename = Self.parameter("filename", in: line)
            }
            if let name { parts.append(Part(name: name, filename: filename, data: Data(bytes[dataStart..<next]))) }
            at = next + 2
        }
    }

    /// `name="value"` in a Content-Disposition line.
    private static func parameter(_ name: String, in line: String) -> String? {
        for piece in line.split(separator: ";").dropFirst() {
            let pair = piece.trimmingCharacters(in: .whitespaces)
            guard pair.lowercased().hasPrefix(name + "=") else { continue }
            var value = String(pair.dropFirst(name.count + 1))
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            return value
        }
        return nil
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count, start <= haystack.count - needle.count else { return nil }
        let first = needle[0]
        var index = start
        while index <= haystack.count - needle.count {
            if haystack[index] == first, haystack[index..<index + needle.count].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }
}
