import Foundation
import TestSupport
import Testing
import Transport

/// `imprint-server --tls-certificate --tls-key`: HTTPS with a self-signed certificate, reached
/// by curl trusting it and by the agent's HTTP client with `caBundle` set.
@Suite(.serialized)
struct TLSTests {
    @Test func servesHTTPSWithTheGivenCertificate() throws {
        let scratch = ScratchDirectory()
        let certificate = scratch.sub("cert.pem"), key = scratch.sub("key.pem")
        try run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                 "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", certificate])
        let server = try ServerProcess(arguments: ["--data", scratch.sub("data"), "--content", scratch.sub("content"),
                                                   "--boot", scratch.sub("boot"), "--admin-token", "tls-admin",
                                                   "--tls-certificate", certificate, "--tls-key", key])
        let base = "https://127.0.0.1:\(server.port)"

        let metrics = try run(["curl", "-sS", "--fail", "--cacert", certificate, base + "/metrics"])
        #expect(String(decoding: metrics.stdout, as: UTF8.self).contains("imprint_events_ingested_total 0"))
        // Not trusted without the certificate, and no plain HTTP on the same port.
        let untrusted = try run(["curl", "-sS", base + "/metrics"], allowFailure: true)
        #expect(untrusted.status != 0)
        let plain = try run(["curl", "-sS", "--fail", "http://127.0.0.1:\(server.port)/metrics"], allowFailure: true)
        #expect(plain.status != 0)
        // What machines are told to call back is https too.
        let script = try run(["curl", "-sS", "--fail", "--cacert", certificate, base + "/boot.ipxe"])
        #expect(String(decoding: script.stdout, as: UTF8.self).contains("imprint.server=\(base)"))

        // The agent's path: libcurl through Transport, trusting the bundle.
        let client = HTTPClient(options: TransferOptions(retries: 0, caBundle: certificate))
        let body = try client.fetch(base + "/metrics")
        #expect(String(decoding: body, as: UTF8.self).contains("imprint_deployments{state=\"running\"} 0"))
        let stranger = HTTPClient(options: TransferOptions(retries: 0))
        #expect(throws: TransportError.self) { _ = try stranger.fetch(base + "/metrics") }
    }

    @Test func refusesAKeyWithoutItsCertificateOrAnUnreadableOne() throws {
        let scratch = ScratchDirectory()
        // With --public-url, so that what is refused is the TLS files and nothing else.
        let missing = try run([ServerProcess.binary, "--data", scratch.sub("data"), "--admin-token", "x", "--public-url", "https://127.0.0.1:8443",
                               "--tls-key", scratch.sub("none.pem")],
                              allowFailure: true)
        #expect(missing.status != 0)
        try Data("not a certificate".utf8).write(to: URL(fileURLWithPath: scratch.sub("bad.pem")))
        let bad = try run([ServerProcess.binary, "--data", scratch.sub("data"), "--admin-token", "x", "--public-url", "https://127.0.0.1:8443",
                           "--tls-certificate", scratch.sub("bad.pem"), "--tls-key", scratch.sub("bad.pem")], allowFailure: true)
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("bad.pem"))
    }
}
