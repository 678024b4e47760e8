// libFuzzer target for what agents post to the server: every input is decoded as a check-in
// body and as an event batch by the very functions the server's handlers call
// (`CheckInRequest.decode`, `EventBatch.decode`, `EventBatch.firstProblem`). Neither may crash,
// a refusal is a JSONProblem (typed throws) with a reason and the field at fault, and what
// decodes encodes back to itself.
// Compiled into the SequenceModel module by scripts/fuzz, linked with every other target into one binary.
import DiskModel
import Foundation

public func fuzzCheckIn(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Data(bytes: data, count: size)
    do {
        let request = try CheckInRequest.decode(input)
        // The server keeps and shows what it decoded: it must encode back as it came.
        guard let again = try? JSONEncoder().encode(request), (try? CheckInRequest.decode(again)) == request else {
            fatalError("a check-in that decodes does not encode back to itself")
        }
    } catch {
        expectDecoderComplaint(error, body: "check-in")
    }
    do {
        let batch = try EventBatch.decode(input)
        if let problem = batch.firstProblem {
            guard batch.events.indices.contains(problem.index), !problem.field.isEmpty, !problem.message.isEmpty else {
                fatalError("an event problem without its event, field or reason: \(problem)")
            }
        }
    } catch {
        expectDecoderComplaint(error, body: "event batch")
        // An error inside an event names that event (the agent resends from there).
        if error.location.count >= 2, error.location[0] == .key("events"), case let .index(index) = error.location[1] {
            guard error.eventIndex == index else { fatalError("events[\(index)] reported as event \(String(describing: error.eventIndex))") }
        }
    }
    return 0
}

/// What the client reads in its 422: a reason, and the field at fault whenever the fault is
/// inside the body (the decoders throw nothing but JSONProblem: their signatures say so).
private func expectDecoderComplaint(_ problem: JSONProblem, body: String) {
    guard !problem.reason.isEmpty else { fatalError("a \(body) refused without a reason: \(problem)") }
    guard problem.location.isEmpty || problem.fieldPath?.isEmpty == false else {
        fatalError("a \(body) refused at \(problem.location) without a field to name: \(problem)")
    }
}
