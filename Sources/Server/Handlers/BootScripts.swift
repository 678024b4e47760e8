import Foundation
import Hummingbird
import SequenceModel

/// iPXE scripts: the agent for a machine to be deployed, its disk for one that is done. Anyone
/// may ask for them, so they hold what iPXE needs and nothing else: no comment, no machine or
/// deployment id, no sequence name, no time. A machine to be deployed and a MAC the server never
/// saw get the same bytes.
extension ImprintServer {
    /// `chainsMachineScript`: `/boot.ipxe`, which first chains the machine's own script.
    func bootScript(chainsMachineScript: Bool) -> Response {
        let base = publicURL
        var lines = ["#!ipxe"]
        if chainsMachineScript {
            // The machine's own script first: a deployed machine is sent back to its disk there.
            // If it cannot be fetched, this one boots the agent all the same.
            lines.append("chain --replace --autofree \(base)/boot/${netX/mac}.ipxe || echo Imprint: no per-machine script, booting the agent")
        }
        lines += [
            "kernel \(base)/boot/files/vmlinuz initrd=initrd \(configuration.kernelArguments) imprint.agent imprint.server=\(base)",
            "initrd \(base)/boot/files/initrd",
            "boot",
        ]
        return JSON.raw(Data((lines.joined(separator: "\n") + "\n").utf8), contentType: "text/plain; charset=utf-8")
    }

    /// `/boot/{mac}.ipxe`: the agent, unless the machine that owns that MAC is deployed (deploy
    /// once, as WDS does): then iPXE exits and the firmware boots the next device, its disk.
    /// One indexed lookup; the script says nothing of the machine beyond that (anyone may ask).
    func machineBootScript(mac text: String) async throws -> Response {
        // iPXE percent-encodes the colons of ${netX/mac} in the URL.
        let decoded = text.removingPercentEncoding ?? text
        guard let mac = MachineIdentity.normalizedMAC(decoded) else {
            throw APIError(.badRequest, "\"\(MachineIdentity.printable(decoded))\" is not a MAC address: expected six hex pairs such as 52:54:00:12:34:56",
                           field: "mac")
        }
        if let machine = try await storage.machine(mac: mac), try await finishedDeployment(machineID: machine.id) != nil {
            let lines = [
                "#!ipxe",
                "echo Imprint: this machine is deployed: starting it from its disk.",
                "echo Imprint: to image it again, choose Deploy again on the dashboard.",
                "sleep 3",
                "exit",
            ]
            return JSON.raw(Data((lines.joined(separator: "\n") + "\n").utf8), contentType: "text/plain; charset=utf-8")
        }
        return bootScript(chainsMachineScript: false)
    }

    /// The succeeded deployment that makes this machine done, or nil when it is to be deployed:
    /// its newest deployment did not succeed, or an administrator asked for another one since.
    func finishedDeployment(machineID: String) async throws -> Deployment? {
        guard let latest = try await storage.latestDeployment(machineID: machineID), latest.state == .succeeded else { return nil }
        if let requested = try await storage.redeployRequested(machineID: machineID), requested > latest.created { return nil }
        return latest
    }
}
