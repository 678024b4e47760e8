import ArgumentParser
import Foundation
import Logging
import Server

/// `imprint-server user add NAME --role administrator`: a user made on the server's machine,
/// with the database the server uses, the password read from standard input (never an
/// argument, which `ps` and the shell's history would show).
struct UserCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user", abstract: "Manage the server's users from its own machine (the first administrator).",
        subcommands: [Add.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a user; the password is read from standard input (asked for when it is a terminal).")

        @Argument(help: "The user's name: letters, digits, '-', '_' and '.'.") var name: String
        @Option(help: "viewer, operator or administrator.") var role = "viewer"
        @Option(help: "The server's --data folder.") var data = "/var/lib/imprint-server"
        @Option(help: "The server's --database (default: SQLite in --data).") var database: String?
        @Option(help: "The server's --secrets-key-file (or IMPRINT_SECRETS_KEY).") var secretsKeyFile: String?

        func run() async throws {
            guard let role = Role(rawValue: role) else {
                throw ValidationError("--role: one of " + Role.allCases.map(\.rawValue).joined(separator: ", "))
            }
            let location: DatabaseLocation
            do { location = try DatabaseLocation(parsing: database) } catch { throw ValidationError("--database: \(error)") }
            let password = try Self.readPassword(for: name)
            var logger = Logger(label: "imprint-server")
            logger.logLevel = .warning
            var configuration = ServerConfiguration(host: "127.0.0.1", port: 0, dataDirectory: data, contentDirectory: data + "/content",
                                                    bootDirectory: data + "/boot", adminToken: "unused", unknownMachines: .pending,
                                                    publicURL: "http://127.0.0.1")
            configuration.secretsKeyFile = secretsKeyFile
            configuration.secretsKey = ProcessInfo.processInfo.environment["IMPRINT_SECRETS_KEY"].flatMap { $0.isEmpty ? nil : $0 }
            try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
            let (storage, _) = try await ImprintServer.openStorage(configuration: configuration, database: location, logger: logger)
            do {
                let user = try await ImprintServer.addUser(name: name, role: role, password: password, storage: storage)
                print("user \(user.name) added (\(user.role.rawValue))")
            } catch let error as APIError {
                await ImprintServer.close(storage)
                throw Refused(description: error.message)
            } catch {
                await ImprintServer.close(storage)
                throw error
            }
            await ImprintServer.close(storage)
        }

        struct Refused: Error, CustomStringConvertible { var description: String }

        /// From a terminal: asked twice, without echo. Otherwise: the first line of standard input.
        static func readPassword(for name: String) throws -> String {
            if isatty(STDIN_FILENO) == 1 {
                guard let first = getpass("Password for \(name): ").map({ String(cString: $0) }),
                      let second = getpass("The same again: ").map({ String(cString: $0) }) else {
                    throw ValidationError("no password was read")
                }
                guard first == second else { throw ValidationError("the two passwords differ") }
                return first
            }
            guard let line = readLine(strippingNewline: true), !line.isEmpty else {
                throw ValidationError("give the password on standard input (one line), e.g. from a file: < password.txt")
            }
            return line
        }
    }
}
