import SequenceModel

/// A deployment's step timeline and log, rebuilt from its stored events.
public enum DashboardTimeline {
    public static func steps(_ events: [Event]) -> [DashboardStep] {
        var order: [String] = []
        var steps: [String: DashboardStep] = [:]
        for event in events {
            guard let number = event.step else { continue }
            switch event.kind {
            case .stepStarted:
                if steps[number] == nil { order.append(number) }
                steps[number] = DashboardStep(number: number, name: event.name ?? "", type: event.type ?? "", status: "running",
                                              duration: nil, message: nil)
            case .stepEnded:
                if steps[number] == nil { order.append(number) }
                steps[number] = DashboardStep(number: number, name: event.name ?? steps[number]?.name ?? "",
                                              type: event.type ?? steps[number]?.type ?? "",
                                              status: event.status?.rawValue ?? "failed", duration: event.duration, message: event.message)
            default:
                continue
            }
        }
        return order.compactMap { steps[$0] }
    }

    public static func log(_ events: [Event]) -> [DashboardLogLine] {
        events.compactMap { event in
            switch event.kind {
            case .log:
                return DashboardLogLine(time: event.time, step: event.step, level: event.level ?? "info", message: event.message ?? "")
            case .stepEnded where event.status == .failed || event.status == .failedContinued:
                return DashboardLogLine(time: event.time, step: event.step, level: "error",
                                        message: "\(event.name ?? "step") failed: \(event.message ?? "")")
            case .result:
                return DashboardLogLine(time: event.time, step: nil, level: event.status == .success ? "info" : "error",
                                        message: "sequence \(event.status?.rawValue ?? "ended")" + (event.message.map { ": \($0)" } ?? ""))
            default:
                return nil
            }
        }
    }

    /// The JSON one server-sent event carries: the deployment's summary and what is new.
    public static func update(_ deployment: DashboardDeployment, newEvents: [Event]) -> [String: Any] {
        var object: [String: Any] = ["id": deployment.id, "state": deployment.state, "percent": deployment.percent]
        if let step = deployment.currentStep { object["currentStep"] = step }
        if let message = deployment.message { object["message"] = message }
        let lines = log(newEvents).map { line -> [String: Any] in
            ["level": line.level, "text": String(line.time.dropFirst(11).prefix(12)) + " " + (line.step.map { "[\($0)] " } ?? "") + line.message]
        }
        if !lines.isEmpty { object["log"] = lines }
        let steps = self.steps(newEvents).map { step -> [String: Any] in
            var item: [String: Any] = ["number": step.number, "name": step.name, "type": step.type, "status": step.status]
            if let duration = step.duration { item["duration"] = duration }
            if let message = step.message { item["message"] = message }
            return item
        }
        if !steps.isEmpty { object["steps"] = steps }
        return object
    }
}
