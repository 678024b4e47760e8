import Foundation
import Hummingbird
import SequenceModel

/// What every boot loader's script boots, in one place, so the iPXE and the GRUB scripts cannot
/// drift apart: the kernel and initrd the server serves from `--boot`, and the kernel's command
/// line (`--kernel-arguments`, then what makes /init run the agent against this server).
struct AgentBoot: Sendable {
    static let kernelPath = "/boot/files/vmlinuz"
    static let initrdPath = "/boot/files/initrd"
    /// `--kernel-arguments` as the administrator wrote them, then what makes /init run the agent.
    var commandLine: String

    init(kernelArguments: String, publicURL: String) {
        commandLine = [kernelArguments, "imprint.agent", "imprint.server=\(publicURL)"]
            .filter { !$0.isEmpty }.joined(separator: " ")
    }

    /// The command line in the words the kernel reads: split at blanks outside double quotes,
    /// which group and are dropped (`acpi_osi="Windows 2020"` is one word). GRUB is given
    /// words, and puts a word holding a blank back between double quotes for the kernel.
    var words: [String] {
        var words: [String] = [], word = "", quoted = false, inWord = false
        for character in commandLine {
            if character == "\"" { quoted.toggle(); inWord = true }
            else if character.isWhitespace && !quoted {
                if inWord { words.append(word) }
                word = ""; inWord = false
            } else { word.append(character); inWord = true }
        }
        if inWord { words.append(word) }
        return words
    }
}

/// The boot loaders the server writes scripts for. iPXE gets absolute HTTP URLs; GRUB gets paths
/// on the device it was loaded from (`$root`): Debian 12's signed network GRUB speaks only TFTP,
/// so its files come through whatever TFTP server handed it over (a TFTP-to-HTTP front such
/// as the lab's, or files copied there), and a GRUB loaded by UEFI HTTP Boot (Debian 13's, which
/// has http) fetches them from this server, its `$root` being `(http,host:port)`.
public enum BootLoader: String, Sendable, Hashable, CaseIterable {
    case ipxe, grub

    /// The generic script (`/boot.ipxe`, `/boot.grub`): the machine's own script first (a
    /// deployed machine is sent back to its disk there); if it cannot be fetched, the agent.
    func genericScript(_ boot: AgentBoot, base: String) -> [String] {
        switch self {
        case .ipxe:
            ["#!ipxe",
             "chain --replace --autofree \(base)/boot/${netX/mac}.ipxe || echo Imprint: no per-machine script, booting the agent"]
            + agentLines(boot, base: base)
        case .grub:
            // The machine's script names its menu entries; when it cannot be fetched, the
            // agent's entry comes from here.
            ["# Imprint (GRUB)",
             "set timeout=0",
             "source /boot/${net_default_mac}.grub",
             "if [ -z \"$imprint_entries\" ]; then",
             "  echo Imprint: the per-machine script could not be fetched: booting the agent"]
            + agentLines(boot, base: base).map { "  " + $0 }
            + ["fi"]
        }
    }

    /// A machine's script when it is to be deployed: the agent. The same bytes for every MAC,
    /// known or not, so the answer tells nobody which machines the server knows.
    func agentScript(_ boot: AgentBoot, base: String) -> [String] {
        switch self {
        case .ipxe: ["#!ipxe"] + agentLines(boot, base: base)
        case .grub: ["# Imprint (GRUB)", "set imprint_entries=agent", "set timeout=0"] + agentLines(boot, base: base)
        }
    }

    /// A deployed machine's script: its disk. iPXE's `exit 1` makes iPXE return an error to the
    /// firmware, whose boot manager then goes on to the next entry, the disk (a plain `exit`
    /// returns success when iPXE runs as an EFI application, fetched by UEFI HTTP Boot or PXE,
    /// and the boot manager stops there). GRUB's `exit` (Debian 12's 2.06) returns success, and
    /// UEFI's boot manager stops at an entry that returns success (UEFI 2.10 §3.1.1: it may show
    /// its menu instead, and EDK2's does): so GRUB starts the disk's Windows Boot Manager itself,
    /// as FOG and WDS chain to the disk, and falls back to an entry that exits when no disk
    /// holds one (or firmware refuses it: under Secure Boot, an unsigned one).
    func diskScript() -> [String] {
        let notice = ["echo Imprint: this machine is deployed: starting it from its disk.",
                      "echo Imprint: to image it again, choose Deploy again on the dashboard.",
                      "sleep 3"]
        switch self {
        case .ipxe:
            return ["#!ipxe"] + notice + ["exit 1"]
        case .grub:
            // The first entry starts the disk's boot manager; when it cannot (none, not UEFI, or
            // refused), GRUB falls back to the second, which leaves for the firmware.
            let manager = "/EFI/Microsoft/Boot/bootmgfw.efi"
            return ["# Imprint (GRUB)", "set imprint_entries=disk", "set timeout=0"] + notice + [
                "set default=0",
                "set fallback=1",
                "menuentry \"Windows Boot Manager\" {",
                "  if [ \"$grub_platform\" = efi ]; then",
                "    if search --no-floppy --file --set=imprint_disk \(manager); then",
                "      echo Imprint: Windows Boot Manager on ($imprint_disk)",
                "      chainloader ($imprint_disk)\(manager)",
                "    fi",
                "  fi",
                "}",
                "menuentry \"Back to the firmware\" {",
                "  echo Imprint: no Windows Boot Manager started from a disk: back to the firmware",
                "  exit",
                "}"]
        }
    }

    private func agentLines(_ boot: AgentBoot, base: String) -> [String] {
        switch self {
        case .ipxe:
            // Under UEFI iPXE's kernel line must name the initrd, or the kernel finds no root filesystem.
            ["kernel \(base)\(AgentBoot.kernelPath) initrd=initrd \(boot.commandLine)",
             "initrd \(base)\(AgentBoot.initrdPath)",
             "boot"]
        case .grub:
            // A menu entry, not commands ending in `boot`: GRUB runs it once every script is
            // read, so it has closed them (and their HTTP connections) before the kernel starts.
            ["menuentry \"Imprint agent\" {",
             "  linux \(AgentBoot.kernelPath) \(boot.words.map(Self.grubWord).joined(separator: " "))",
             "  initrd \(AgentBoot.initrdPath)",
             "}"]
        }
    }

    /// One word for GRUB's script parser: as it is when it holds nothing GRUB would expand or
    /// split (`$`, quotes, `;`, spaces...), else single-quoted (a quote inside as '\'').
    static func grubWord(_ word: String) -> String {
        let plain = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._,:/=+-@%")
        if !word.isEmpty, word.allSatisfy(plain.contains) { return word }
        return "'" + word.replacingOccurrences(of: "'", with: #"'\''"#) + "'"
    }
}

/// Boot scripts: the agent for a machine to be deployed, its disk for one that is done. Anyone
/// may ask for them, so they hold what the boot loader needs and nothing else: no machine or
/// deployment id, no sequence name, no time. A machine to be deployed and a MAC the server never
/// saw get the same bytes.
extension ImprintServer {
    var agentBoot: AgentBoot { AgentBoot(kernelArguments: configuration.kernelArguments, publicURL: publicURL) }

    /// `/boot.ipxe`, `/boot.grub`, and `/grub/grub.cfg`: what Debian's signed network GRUB reads
    /// first (`$prefix/grub.cfg`, its prefix `/grub` on the server it was loaded from) is the
    /// generic GRUB script itself, so a GRUB loaded over HTTP needs nothing else set up.
    func bootScript(_ loader: BootLoader, method: HTTPRequest.Method) -> Response {
        script(loader.genericScript(agentBoot, base: publicURL), method: method)
    }

    /// `/boot/{mac}.ipxe`, `/boot/{mac}.grub`: the agent, unless the machine that owns that MAC
    /// is deployed (deploy once, as WDS does): then the boot loader exits and the firmware boots
    /// the next device, its disk. One indexed lookup; the script says nothing of the machine
    /// beyond that (anyone may ask).
    func machineBootScript(_ loader: BootLoader, mac text: String, method: HTTPRequest.Method) async throws -> Response {
        // iPXE percent-encodes the colons of ${netX/mac} in the URL.
        let decoded = text.removingPercentEncoding ?? text
        guard let mac = MachineIdentity.normalizedMAC(decoded) else {
            throw APIError(.badRequest, "\"\(MachineIdentity.printable(decoded))\" is not a MAC address: expected six hex pairs such as 52:54:00:12:34:56",
                           field: "mac")
        }
        if let machine = try await storage.machine(mac: mac), try await finishedDeployment(machineID: machine.id) != nil {
            return script(loader.diskScript(), method: method)
        }
        return script(loader.agentScript(agentBoot, base: publicURL), method: method)
    }

    /// HEAD: the headers only, Content-Length included. GRUB loaded by UEFI HTTP Boot asks for
    /// every file with HEAD first, for its size, and takes a file whose HEAD is not 200 for
    /// missing: `source` would skip the machine's own script.
    private func script(_ lines: [String], method: HTTPRequest.Method) -> Response {
        let response = JSON.raw(Data((lines.joined(separator: "\n") + "\n").utf8), contentType: "text/plain; charset=utf-8")
        return method == .head ? Response(status: response.status, headers: response.headers) : response
    }

    /// The succeeded deployment that makes this machine done, or nil when it is to be deployed:
    /// its newest deployment did not succeed, or an administrator asked for another one since.
    func finishedDeployment(machineID: String) async throws -> Deployment? {
        guard let latest = try await storage.latestDeployment(machineID: machineID), latest.state == .succeeded else { return nil }
        if let requested = try await storage.redeployRequested(machineID: machineID), requested > latest.created { return nil }
        return latest
    }
}
