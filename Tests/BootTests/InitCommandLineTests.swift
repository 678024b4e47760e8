import Foundation
import TestSupport
import Testing

/// The boot environment's /init reads the kernel command line, which whoever controls the PXE
/// or GRUB configuration writes. Its words must arrive as text: no globbing against the
/// initrd's files, no command substitution, no splitting beyond the spaces between words.
@Suite struct InitCommandLineTests {
    /// `parse_cmdline` exactly as /init defines it, and the line that feeds it.
    static func parser() throws -> String {
        let script = try String(contentsOfFile: packageRoot.appendingPathComponent("Initramfs/init").path, encoding: .utf8)
        let lines = script.split(separator: "\n", omittingEmptySubsequences: false)
        let start = try #require(lines.firstIndex { $0.hasPrefix("parse_cmdline() {") })
        let end = try #require(lines[start...].firstIndex { $0 == "}" })
        #expect(lines.contains("parse_cmdline </proc/cmdline"), "/init no longer reads /proc/cmdline through parse_cmdline")
        return lines[start...end].joined(separator: "\n")
    }

    @Test(arguments: ["busybox sh", "dash"])
    func wordsAreTakenLiterally(shell: String) throws {
        let scratch = ScratchDirectory("init-cmdline-\(shell.replacingOccurrences(of: " ", with: "-"))")
        let directory = scratch.sub("cwd")
        // Files a glob would find, in the directory the shell runs in.
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for name in ["alpha", "beta", "sda1"] { try writeJSON("{}", directory + "/" + name) }
        let cmdline = "BOOT_IMAGE=/vmlinuz quiet imprint.choice=* imprint.server=http://10.0.0.1:8080/$(touch${IFS}pwned) "
            + "imprint.media=/dev/sd? imprint.sequence=/*/[a-z]* imprint.token=`touch${IFS}pwned2` "
            + "imprint.deployment=${HOME} imprint.onfailure=poweroff imprint.dhcp=yes\n"
        try cmdline.write(toFile: scratch.sub("cmdline"), atomically: true, encoding: .utf8)
        let program = try Self.parser() + """

            SERVER= TOKEN= DEPLOYMENT= SEQUENCE= CHOICE= MEDIA_SPEC= ONFAILURE=shell ONSUCCESS=reboot DHCP=
            parse_cmdline <"$1"
            printf '%s\\n' "$SERVER" "$TOKEN" "$DEPLOYMENT" "$SEQUENCE" "$CHOICE" "$MEDIA_SPEC" "$ONFAILURE" "$ONSUCCESS" "$DHCP"
            # Globbing is on again for the rest of /init.
            set -- *
            printf '%s\\n' "$#"
            """
        try program.write(toFile: scratch.sub("parse.sh"), atomically: true, encoding: .utf8)
        let result = try run(["/bin/sh", "-c", "cd \"$1\" && exec \(shell) \"$2\" \"$3\"", "sh", directory, scratch.sub("parse.sh"), scratch.sub("cmdline")])
        let values = result.output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(Array(values.prefix(9)) == [
            "http://10.0.0.1:8080/$(touch${IFS}pwned)", "`touch${IFS}pwned2`", "${HOME}", "/*/[a-z]*", "*", "/dev/sd?",
            "poweroff", "reboot", "yes",
        ])
        #expect(values.dropFirst(9).first == "3")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).sorted() == ["alpha", "beta", "sda1"])
    }
}
