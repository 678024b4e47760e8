import Apply
import DiskModel
import Failures
import Foundation
import SequenceModel
import Synchronization

/// How a run ended.
public struct RunResult: Sendable {
    public enum Status: String, Sendable { case success, failed }
    public var status: Status
    public var failedStep: String?
    public var message: String?
    /// What kind of failure ended the run; nil when it succeeded.
    public var failure: FailureKind?
    public var duration: Double
    /// `reboot` or `poweroff` when the sequence asked for one.
    public var powerAction: String?
}

/// Runs a task sequence: each step in order, groups nested, with conditions, retries,
/// continue-on-error and timeouts, reporting every start, progress and end.
public final class SequenceEngine {
    let sequence: TaskSequence
    let context: RunContext

    public init(sequence: TaskSequence, facts: Facts, serverVariables: [String: String] = [:],
                options: RunOptions, bus: EventBus) {
        self.sequence = sequence
        let variables = Variables(facts: facts.variables, sequence: sequence.variables, server: serverVariables, secrets: sequence.secrets)
        // The context hands the bus a copy of the variables to redact with, at once and after
        // each change; the bus outlives the run and keeps the last copy (for the final events).
        context = RunContext(options: options, bus: bus, variables: variables)
        context.requireVerifiedContent = sequence.requireVerifiedContent
        context.keeper = options.recording.map { RunStateKeeper(sequence: sequence, recording: $0) }
    }

    public func run() -> RunResult {
        context.bus.countSteps(total: Self.workSteps(sequence.steps))
        let started = Date()
        context.bus.emit(Event(kind: .sequenceStarted, name: sequence.name,
                               message: "version \(sequence.version), \(sequence.allSteps.count) steps, from \(sequence.origin)"))
        defer { context.releaseAll() }
        var result: RunResult
        do {
            if let resume = context.options.recording?.resume {
                do { try RunResumption.restore(resume, sequence, context) } catch {
                    // Refused before anything was written: nor is the state.
                    context.keeper = nil
                    throw error
                }
            }
            try refuseUnverifiedContent()
            try runSteps(sequence.steps)
            try finishDrivers()
            result = RunResult(status: .success, duration: Date().timeIntervalSince(started), powerAction: context.powerAction?.typeName)
        } catch let failure as SequenceStopped {
            result = RunResult(status: .failed, failedStep: failure.step.number, message: failure.message, failure: failure.kind,
                               duration: Date().timeIntervalSince(started))
        } catch {
            result = RunResult(status: .failed, message: "\(error)", failure: FailureKind(of: error), duration: Date().timeIntervalSince(started))
        }
        context.keeper?.finish(succeeded: result.status == .success, context)
        var message = result.message.map { text in result.failedStep.map { "step \($0) failed: \(text)" } ?? text }
        if result.status == .success, let action = result.powerAction {
            message = context.options.allowPowerActions ? "\(action) follows" : "\(action) requested (not done outside the boot environment)"
        }
        context.bus.emit(Event(kind: .result, name: sequence.name, status: result.status == .success ? .success : .failed,
                               duration: result.duration, message: message, failure: result.failure))
        return result
    }

    /// With `requireVerifiedContent`, an image step whose source (as the variables stand now)
    /// is plain HTTP with no SHA-256 stops the run before the first step: before any disk is
    /// wiped, not when the image step is reached. The step checks again when it runs, as a
    /// `setVariable` may change its source in between.
    private func refuseUnverifiedContent() throws {
        guard sequence.requireVerifiedContent else { return }
        for step in sequence.allSteps {
            let source: String, sha256: String?
            switch step.action {
            case let .applyImage(parameters): (source, sha256) = (parameters.source, parameters.sha256)
            case let .writeImage(parameters): (source, sha256) = (parameters.source, parameters.sha256)
            default: continue
            }
            let resolved = context.variables.substitute(source)
            guard UnverifiedContent.isUnverified(source: resolved, sha256: sha256.map { context.variables.substitute($0) }) else { continue }
            let message = context.variables.redact(UnverifiedContent.refusal(resolved)) + "; nothing was run"
            context.bus.emit(Event(kind: .stepStarted, step: step.number, name: step.name, type: step.type))
            context.bus.emit(Event(kind: .stepEnded, step: step.number, name: step.name, type: step.type, status: .failed,
                                   duration: 0, message: message, failure: .refused))
            throw SequenceStopped(step: step, message: message, kind: .refused)
        }
    }

    struct SequenceStopped: Error {
        var step: Step
        var message: String
        var kind: FailureKind
    }

    /// Steps that do work (groups only hold them): what the overall percent counts.
    static func workSteps(_ steps: [Step]) -> Int {
        steps.reduce(0) { count, step in
            if case .group = step.action { return count + workSteps(step.children) }
            return count + 1
        }
    }

    private func runSteps(_ steps: [Step]) throws {
        for step in steps { try run(step) }
    }

    private func run(_ step: Step) throws {
        if let keeper = context.keeper, keeper.isEnded(step) {
            // Done before the power cut: never run twice in one run.
            context.bus.stepsFinished(Self.workSteps([step]))
            context.bus.emit(Event(kind: .stepEnded, step: step.number, name: step.name, type: step.type, status: .skipped,
                                   duration: 0, message: "done before the interruption"))
            return
        }
        if let keeper = context.keeper, keeper.wasStarted(step) {
            do { try RunResumption.mayRunAgain(step, context) } catch {
                let message = "\(error)"
                context.bus.emit(Event(kind: .stepStarted, step: step.number, name: step.name, type: step.type))
                end(step, Date(), .failed, message, failure: .refused)
                throw SequenceStopped(step: step, message: message, kind: .refused)
            }
        }
        if let condition = step.condition {
            let (holds, why) = condition.evaluate { context.variables.substitute($0) }
            if !holds {
                context.keeper?.ended(step, context)
                context.bus.stepsFinished(Self.workSteps([step]))
                context.bus.emit(Event(kind: .stepEnded, step: step.number, name: step.name, type: step.type, status: .skipped,
                                       duration: 0, message: "condition not met: \(why)"))
                return
            }
        }
        let started = Date()
        context.keeper?.started(step, context)
        context.bus.emit(Event(kind: .stepStarted, step: step.number, name: step.name, type: step.type))
        if case let .group(children) = step.action {
            do {
                try runSteps(children)
            } catch let stopped as SequenceStopped where step.continueOnError {
                end(step, started, .failedContinued, "step \(stopped.step.number) failed: \(stopped.message); continuing",
                    failure: stopped.kind)
                return
            }
            end(step, started, .success, nil)
            return
        }
        var attempt = 0
        while true {
            attempt += 1
            do {
                try runWithTimeout(step)
                end(step, started, .success, attempt > 1 ? "succeeded on attempt \(attempt)" : nil)
                return
            } catch {
                let message = context.variables.redact("\(error)")
                let kind = FailureKind(of: error)
                if attempt <= step.retry.count && !(error is DestructiveRefused) {
                    context.bus.log("attempt \(attempt) of \(step.retry.count + 1) failed: \(message); retrying in \(Int(step.retry.delay)) s",
                                    step: step, level: "warning")
                    Thread.sleep(forTimeInterval: step.retry.delay)
                    continue
                }
                if step.continueOnError {
                    end(step, started, .failedContinued, message, failure: kind)
                    return
                }
                end(step, started, .failed, message, failure: kind)
                throw SequenceStopped(step: step, message: message, kind: kind)
            }
        }
    }

    private func end(_ step: Step, _ started: Date, _ status: Event.Status, _ message: String?, failure: FailureKind? = nil) {
        if case .group = step.action {} else { context.bus.stepsFinished(1) }
        // A failed step stays begun: the run is over (its state says ended), nothing resumes it.
        if status != .failed { context.keeper?.ended(step, context) }
        context.bus.emit(Event(kind: .stepEnded, step: step.number, name: step.name, type: step.type, status: status,
                               duration: Date().timeIntervalSince(started), message: message, failure: failure))
    }

    /// Runs the step on its own thread and waits at most its timeout; past it, transfers,
    /// commands and applies are told to stop at their next safe point, and the step fails
    /// once it has stopped (never leaving it running while the next step starts). The stop
    /// is this run's own (`cancelled`, `applyStop`): the process-wide `applyStopSignal` is left
    /// to the signal handlers, so a SIGTERM that arrives meanwhile still stops what follows.
    private func runWithTimeout(_ step: Step) throws {
        if step.action.isDestructive && !context.options.allowDestructive { throw DestructiveRefused(step: step) }
        guard let timeout = step.timeout else { return try StepRunner.run(step, context) }
        final class Outcome: Sendable { let error = Mutex<(any Error)?>(nil) }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        let context = self.context
        let thread = Thread {
            do { try StepRunner.run(step, context) } catch { outcome.error.withLock { $0 = error } }
            done.signal()
        }
        thread.stackSize = 8 << 20
        thread.start()
        if done.wait(timeout: .now() + timeout) == .timedOut {
            context.cancelled.value = true
            context.applyStop.request(SIGALRM)
            done.wait()
            context.cancelled.value = false
            context.applyStop.clear()
            throw StepFailure("timed out after \(Int(timeout)) s", kind: .interrupted)
        }
        if let error = outcome.error.withLock({ $0 }) { throw error }
    }

    /// Drivers put on a volume with no unattend step: a minimal unattend.xml so Windows finds them.
    private func finishDrivers() throws {
        for (volume, paths) in context.driverPaths where !paths.isEmpty && context.unattendWritten[volume] == nil {
            try UnattendWriter.write(UnattendWriter.minimal, volume: volume, context)
        }
    }
}

struct DestructiveRefused: ClassifiedError, CustomStringConvertible {
    var step: Step
    var failureKind: FailureKind { .refused }
    var description: String {
        "\(step.type) writes a disk and runs only with --yes (or as the boot environment's agent)"
    }
}
