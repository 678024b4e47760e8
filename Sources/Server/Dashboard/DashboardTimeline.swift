import SequenceModel

/// A deployment's step timeline and log, rebuilt from its stored events. Text an agent sent is
/// cut to `characters` (the admin API has it whole), so one event cannot make a page huge.
public enum DashboardTimeline {
    /// `text`, or its first `limit` characters and how many more there were.
    public static func clipped(_ text: String, to limit: Int) -> String {
        // utf8.count is O(1) on native strings: the common short text costs no counting.
        guard text.utf8.count > limit, text.count > limit else { return text }
        return String(text.prefix(limit)) + " … (\(text.count - limit) more characters)"
    }

    /// The levels the page styles; anything else an agent sends shows as `info`.
    static func level(_ text: String?) -> String {
        switch text {
        case "warning", "error", "info": return text ?? "info"
        default: return "info"
        }
    }

    public static func steps(_ events: [Event], characters: Int = 4_000) -> [DashboardStep] {
        var order: [String] = []
        var steps: [String: DashboardStep] = [:]
        for event in events {
            guard let number = event.step else { continue }
            switch event.kind {
            case .stepStarted:
                if steps[number] == nil { order.append(number) }
                steps[number] = DashboardStep(number: number, name: clipped(event.name ?? "", to: characters),
                                              type: clipped(event.type ?? "", to: characters), status: "running", duration: nil, message: nil)
            case .stepEnded:
                if steps[number] == nil { order.append(number) }
                steps[number] = DashboardStep(number: number, name: event.name.map { clipped($0, to: characters) } ?? steps[number]?.name ?? "",
                                              type: event.type.map { clipped($0, to: characters) } ?? steps[number]?.type ?? "",
                                              status: event.status?.rawValue ?? "failed", duration: event.duration,
                                              message: event.message.map { clipped($0, to: characters) })
            default:
                continue
            }
        }
        return order.compactMap { steps[$0] }.map { step in
            var step = step
            step.number = clipped(step.number, to: 100)
            return step
        }
    }

    public static func log(_ events: [Event], characters: Int = 4_000) -> [DashboardLogLine] {
        events.compactMap { event -> DashboardLogLine? in
            guard var line = logLine(event) else { return nil }
            line.message = clipped(line.message, to: characters)
            line.step = line.step.map { clipped($0, to: 100) }
            return line
        }
    }

    private static func logLine(_ event: Event) -> DashboardLogLine? {
        switch event.kind {
        case .log:
            return DashboardLogLine(time: event.time, step: event.step, level: level(event.level), message: event.message ?? "")
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

    /// The JSON one server-sent event carries: the deployment's summary and what is new.
    public static func update(_ deployment: DashboardDeployment, newEvents: [Event], characters: Int = 4_000) -> [String: Any] {
        var object: [String: Any] = ["id": deployment.id, "state": deployment.state, "percent": deployment.percent]
        if let step = deployment.currentStep { object["currentStep"] = step }
        if let message = deployment.message { object["message"] = message }
        // The failure's kind, so a live update shows it as the page does ("bad input: ...").
        if let failure = deployment.failure { object["failure"] = failure }
        let lines = log(newEvents, characters: characters).map { line -> [String: Any] in
            ["level": line.level, "text": String(line.time.dropFirst(11).prefix(12)) + " " + (line.step.map { "[\($0)] " } ?? "") + line.message]
        }
        if !lines.isEmpty { object["log"] = lines }
        let steps = self.steps(newEvents, characters: characters).map { step -> [String: Any] in
            var item: [String: Any] = ["number": step.number, "name": step.name, "type": step.type, "status": step.status]
            if let duration = step.duration { item["duration"] = duration }
            if let message = step.message { item["message"] = message }
            return item
        }
        if !steps.isEmpty { object["steps"] = steps }
        return object
    }
}
