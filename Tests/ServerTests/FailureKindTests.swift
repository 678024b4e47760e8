import Foundation
import Testing

/// A failed deployment keeps the kind of failure its result event named, on both databases, so
/// the admin API and the dashboard can tell "the network" from "the image" at a glance.
@Suite("Failure kinds on the server")
struct FailureKindTests {
    @Test(arguments: StorageKind.allCases) func failedDeploymentKeepsItsKind(storage: StorageKind) async throws {
        try await ServerHarness.with(storage: storage, unknownMachines: .default) { harness in
            let (id, token) = try await harness.assignedDeployment()
            var result = ServerHarness.event(2, "result", status: "failed")
            result["failure"] = "network"
            result["message"] = "step 3 failed: http://10.0.0.1/x.wim: connection refused"
            let posted = try await harness.request("POST", "/api/v1/deployments/\(id)/events",
                                                   body: ServerHarness.batch([ServerHarness.event(1, "sequenceStarted"), result]), token: token)
            #expect(posted.status == 200)

            let deployment = try await harness.admin("GET", "/deployments/\(id)")
            #expect(deployment.json["state"] as? String == "failed")
            #expect(deployment.json["failure"] as? String == "network")

            let page = try await harness.request("GET", "/dashboard", token: harness.adminToken)
            let html = String(decoding: page.body, as: UTF8.self)
            #expect(html.contains("data-kind=\"network\">network 1</span>"), "\(html)")

            // An unknown kind from an agent is refused like any malformed event.
            let (other, otherToken) = try await harness.assignedDeployment(mac: "52:54:00:00:00:02")
            var strange = ServerHarness.event(1, "result", status: "failed")
            strange["failure"] = "gremlins"
            let refused = try await harness.request("POST", "/api/v1/deployments/\(other)/events",
                                                    body: ServerHarness.batch([strange]), token: otherToken)
            #expect(refused.status == 422 && refused.json["field"] as? String == "events[0].failure")
        }
    }
}
