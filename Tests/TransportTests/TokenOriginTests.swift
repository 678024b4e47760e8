import Foundation
import Testing
import TestSupport
@testable import Transport

/// The deployment token goes to the server that issued it and nowhere else: not to another
/// host or port a sequence names, and not across a redirect.
@Suite(.serialized) struct TokenOriginTests {
    /// What each GET the server saw carried as Authorization, by path.
    func authorizations(_ served: Served) throws -> [(path: String, authorization: String?)] {
        let data = try HTTPClient(options: .fast).fetch(served.url("/_auth"))
        let rows = (try JSONSerialization.jsonObject(with: data) as? [[Any]]) ?? []
        return rows.compactMap { row in
            guard let path = row.first as? String else { return nil }
            return (path, row.count > 1 ? row[1] as? String : nil)
        }
    }

    @Test func originsCompareSchemeHostAndPort() throws {
        let a = try #require(Origin(url: "http://Server.Example:80/api"))
        #expect(a == Origin(url: "HTTP://server.example/other?x=1"))
        #expect(a != Origin(url: "https://server.example/"))
        #expect(a != Origin(url: "http://server.example:8080/"))
        #expect(a != Origin(url: "http://server.example.evil/"))
        // Userinfo does not make another host the server.
        #expect(a != Origin(url: "http://server.example@evil.example/"))
        #expect(Origin(url: "https://h/")?.port == 443)
        #expect(Origin(url: "ftp://server.example/") == nil)
        #expect(Origin(url: "not a url") == nil)
        let token = try #require(BearerToken("t", for: "http://10.0.0.1:8080"))
        #expect(token.belongs(to: "http://10.0.0.1:8080/content/image.wim"))
        #expect(!token.belongs(to: "http://10.0.0.1/content/image.wim"))
    }

    @Test func tokenOnlyToItsOwnOriginAlsoAcrossRedirects() throws {
        let server = try Served("token-server")
        let mirror = try Served("token-mirror")
        try server.makeFile("own.bin", size: 1000)
        let image = try mirror.makeFile("image.bin", size: 5000)
        var options = TransferOptions.fast
        options.bearerToken = try #require(BearerToken("s3cret", for: server.url("/")))
        let client = HTTPClient(options: options)

        // Its own server gets it.
        _ = try client.fetch(server.url("/own.bin"))
        // Another port on the same host is another origin.
        _ = try client.fetch(mirror.url("/image.bin"))
        // The server redirects to the mirror: the first hop carries it, the second does not,
        // whatever the redirect status.
        let location = mirror.url("/image.bin")
        for code in [301, 302, 303, 307, 308] {
            let escaped = location.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? location
            let data = try client.fetch(server.url("/moved-\(code)?redirect=\(escaped)&code=\(code)"))
            #expect(data == image)
        }
        // And a download (the path images take) behaves the same.
        let target = server.scratch.sub("image.bin")
        let escaped = location.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? location
        _ = try client.download(server.url("/download?redirect=\(escaped)"), to: target, expectedSHA256: sha256(image)) { _ in }

        let atServer = try authorizations(server)
        #expect(atServer.count >= 7)
        #expect(atServer.allSatisfy { $0.authorization == "Bearer s3cret" }, "\(atServer)")
        let atMirror = try authorizations(mirror)
        #expect(atMirror.count >= 7)
        #expect(atMirror.allSatisfy { $0.authorization == nil }, "\(atMirror)")
    }

    @Test func redirectsBackToTheServerCarryItAgain() throws {
        let server = try Served("token-back-server")
        let mirror = try Served("token-back-mirror")
        let data = try server.makeFile("own.bin", size: 100)
        var options = TransferOptions.fast
        options.bearerToken = try #require(BearerToken("s3cret", for: server.url("/")))
        let back = server.url("/own.bin").addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
        #expect(try HTTPClient(options: options).fetch(mirror.url("/bounce?redirect=\(back)")) == data)
        #expect(try authorizations(mirror).map(\.authorization) == [nil])
        #expect(try authorizations(server).map(\.authorization) == ["Bearer s3cret"])
    }

    @Test func tooManyRedirectsAndForeignSchemesEndClearly() throws {
        let served = try Served()
        try served.makeFile("end", size: 10)
        var options = TransferOptions.fast
        options.maxRedirects = 2
        // Three hops: /a → /b → /c → /end.
        var chain = served.url("/end")
        for hop in ["c", "b", "a"] {
            chain = served.url("/\(hop)?redirect=" + (chain.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""))
        }
        #expect {
            _ = try HTTPClient(options: options).fetch(chain)
        } throws: { "\($0)".contains("more than 2 redirects") }
        options.maxRedirects = 3
        #expect(try HTTPClient(options: options).fetch(chain).count == 10)
        #expect {
            _ = try HTTPClient(options: options).fetch(served.url("/ftp?redirect=ftp%3A%2F%2Fexample%2Ff"))
        } throws: { "\($0)".contains("not an http or https URL") }
    }
}
