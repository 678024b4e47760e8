import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Debian's nginx in the foreground with a configuration of the test's own: one `server`
/// block given, every file nginx writes (pid, logs, temp folders) in the scratch folder, one
/// worker. Stopped when the value goes away.
public final class Nginx {
    public let port: Int
    public let errorLog: String
    private let process = Process()

    /// `server` is the body of the server block after its `listen` line (locations, root...);
    /// `http` goes in the http block before it (a `log_format`, which a server block cannot hold).
    public init(_ scratch: ScratchDirectory, port: Int, server: String, http: String = "") throws {
        self.port = port
        errorLog = scratch.sub("nginx-\(port)-error.log")
        let configuration = scratch.sub("nginx-\(port).conf")
        let temporary = scratch.sub("nginx-\(port)-temp")
        try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: true)
        try """
            worker_processes 1;
            daemon off;
            pid \(scratch.sub("nginx-\(port).pid"));
            error_log \(errorLog);
            events { worker_connections 64; }
            http {
                access_log off;
                sendfile on;
                client_body_temp_path \(temporary)/body;
                proxy_temp_path \(temporary)/proxy;
                fastcgi_temp_path \(temporary)/fastcgi;
                uwsgi_temp_path \(temporary)/uwsgi;
                scgi_temp_path \(temporary)/scgi;
                \(http)
                server {
                    listen 127.0.0.1:\(port);
                    \(server)
                }
            }
            """.write(toFile: configuration, atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/nginx")
        process.arguments = ["-c", configuration, "-e", errorLog]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Ready once its port takes a connection (or it has stopped: the log says why).
        for _ in 0..<200 where process.isRunning {
            if Loopback.accepts(port: port) { return }
            usleep(25_000)
        }
        let log = (try? String(contentsOfFile: errorLog, encoding: .utf8)) ?? ""
        process.terminate()
        process.waitUntilExit()
        throw NginxError(description: "nginx did not start on port \(port): \(log)")
    }

    deinit {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }
}

public struct NginxError: Error, CustomStringConvertible {
    public var description: String
}
