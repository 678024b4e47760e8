import Foundation
import Hummingbird

/// `/metrics` for Prometheus: deployments by state and this process's counters.
extension ImprintServer {
    func metricsText() async throws -> Response {
        let counts = try await storage.deploymentCounts()
        var text = "# HELP imprint_deployments Deployments by state.\n# TYPE imprint_deployments gauge\n"
        for state in Deployment.State.allCases { text += "imprint_deployments{state=\"\(state.rawValue)\"} \(counts[state] ?? 0)\n" }
        text += "# HELP imprint_events_ingested_total Events stored (duplicates not counted).\n# TYPE imprint_events_ingested_total counter\n"
        text += "imprint_events_ingested_total \(metrics.eventsIngested)\n"
        text += "# HELP imprint_content_bytes_served_total Bytes of /content sent.\n# TYPE imprint_content_bytes_served_total counter\n"
        text += "imprint_content_bytes_served_total \(metrics.contentBytesServed)\n"
        return JSON.raw(Data(text.utf8), contentType: "text/plain; version=0.0.4")
    }
}
