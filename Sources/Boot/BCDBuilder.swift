import DiskModel
import Foundation
import Primitives

public enum Firmware: String, Sendable, CaseIterable {
    case uefi, bios
}

/// What a store is built for: where the boot manager lives and where Windows is.
public struct BootConfiguration: Sendable {
    public var firmware: Firmware
    /// The ESP (UEFI) or the active system partition (BIOS).
    public var systemPartition: BCDDevice
    public var windowsPartition: BCDDevice
    public var locale: String
    /// Seconds the boot menu waits (shown only with more than one entry).
    public var timeout: UInt64
    /// The boot menu's name for this Windows.
    public var osDescription: String
    /// The OS loader and resume objects get new random GUIDs per store, as bcdboot does.
    public var loaderID: GUID
    public var resumeID: GUID
    /// Windows RE on the recovery partition, as Setup registers it; nil: none.
    public var recovery: RecoveryEnvironment?

    public init(firmware: Firmware, systemPartition: BCDDevice, windowsPartition: BCDDevice, locale: String = "en-US",
                timeout: UInt64 = 30, osDescription: String = "Windows", loaderID: GUID = .random(), resumeID: GUID = .random(),
                recovery: RecoveryEnvironment? = nil) {
        self.firmware = firmware
        self.systemPartition = systemPartition
        self.windowsPartition = windowsPartition
        self.locale = locale
        self.timeout = timeout
        self.osDescription = osDescription
        self.loaderID = loaderID
        self.resumeID = resumeID
        self.recovery = recovery
    }
}

/// Windows RE as Windows Setup leaves it: `Winre.wim` and `boot.sdi` in `\Recovery\WindowsRE`
/// of the recovery partition, booted as a ramdisk by a loader of its own.
public struct RecoveryEnvironment: Sendable, Equatable {
    public static let folder = "\\Recovery\\WindowsRE"
    public static let imagePath = folder + "\\Winre.wim"
    public static let sdiPath = folder + "\\boot.sdi"

    /// The recovery partition, as BCD names it.
    public var partition: BCDDevice
    /// Its first byte on the disk (ReAgent.xml's WinreLocation offset).
    public var partitionOffset: UInt64
    /// The WinRE loader (ReAgent.xml's WinreBCD) and its ramdisk options object; random per
    /// store, as Setup makes them.
    public var loaderID: GUID
    public var optionsID: GUID

    public init(partition: BCDDevice, partitionOffset: UInt64, loaderID: GUID = .random(), optionsID: GUID = .random()) {
        self.partition = partition
        self.partitionOffset = partitionOffset
        self.loaderID = loaderID
        self.optionsID = optionsID
    }

    /// The WIM as a ramdisk, for the WinRE loader's device and osdevice.
    public var ramdisk: BCDDevice { .ramdisk(image: partition, path: Self.imagePath, options: optionsID) }
}

/// The objects `bcdboot C:\Windows` creates in a new store: boot manager, one Windows Boot
/// Loader, its resume application, the memory diagnostic and the inheritable settings
/// objects they name. With Windows RE, also what Setup (reagentc) adds: the WinRE loader, its
/// ramdisk options object, and `recoverysequence`/`recoveryenabled` on the Windows loader and
/// its resume application (the elements and values of a store Windows 10 Setup wrote, kept as
/// Tests/BootTests/Fixtures/win10-uefi-winre.bcd.gz).
public enum BCDBuilder {
    /// nx OptIn (BcdOSLoaderInteger_NxPolicy: OptIn 0, OptOut 1, AlwaysOff 2, AlwaysOn 3).
    static let nxOptIn: UInt64 = 0
    /// bootmenupolicy Standard (Legacy 0, Standard 1).
    static let bootMenuStandard: UInt64 = 1
    /// allowedinmemorysettings 0x15000075, the value bcdboot writes.
    static let allowedInMemory: UInt64 = 0x1500_0075
    /// displaymessage(override) Recovery (Default 0, Resume 1, HyperV 2, Recovery 3, ...).
    static let displayRecovery: UInt64 = 3

    public static func store(_ c: BootConfiguration) -> BCDStore {
        let uefi = c.firmware == .uefi
        let ext = uefi ? "efi" : "exe"
        let system = BCDElementValue.device(c.systemPartition)
        let windows = BCDElementValue.device(c.windowsPartition)
        let locale = BCDElementValue.string(c.locale)
        typealias E = BCDElementType

        var bootManager: [(BCDElementType, BCDElementValue)] = [(E.applicationDevice, system)]
        // BIOS bootmgr is the file \bootmgr found by the volume boot record: it has no path.
        if uefi { bootManager.append((E.applicationPath, .string("\\EFI\\Microsoft\\Boot\\bootmgfw.efi"))) }
        bootManager += [
            (E.description, .string("Windows Boot Manager")), (E.preferredLocale, locale),
            (E.inheritedObjects, .objectList([BCDObjectID.globalSettings])),
            (E.defaultObject, .object(c.loaderID)), (E.resumeObject, .object(c.resumeID)),
            (E.displayOrder, .objectList([c.loaderID])), (E.toolsDisplayOrder, .objectList([BCDObjectID.memoryDiagnostic])),
            (E.timeout, .integer(c.timeout)),
        ]
        var loader: [(BCDElementType, BCDElementValue)] = [
            (E.applicationDevice, windows), (E.applicationPath, .string("\\Windows\\system32\\winload.\(ext)")),
            (E.description, .string(c.osDescription)), (E.preferredLocale, locale),
            (E.inheritedObjects, .objectList([BCDObjectID.bootLoaderSettings])),
            (E.isolatedExecutionContext, .boolean(true)), (E.allowedInMemorySettings, .integerList([allowedInMemory])),
            (E.osDevice, windows), (E.systemRoot, .string("\\Windows")), (E.associatedResumeObject, .object(c.resumeID)),
            (E.nxPolicy, .integer(nxOptIn)), (E.bootMenuPolicy, .integer(bootMenuStandard)),
        ]
        var resume: [(BCDElementType, BCDElementValue)] = [
            (E.applicationDevice, windows), (E.applicationPath, .string("\\Windows\\system32\\winresume.\(ext)")),
            (E.description, .string("Windows Resume Application")), (E.preferredLocale, locale),
            (E.inheritedObjects, .objectList([BCDObjectID.resumeLoaderSettings])),
            (E.isolatedExecutionContext, .boolean(true)), (E.allowedInMemorySettings, .integerList([allowedInMemory])),
            (E.hiberFileDevice, windows), (E.hiberFilePath, .string("\\hiberfil.sys")),
            (E.bootMenuPolicy, .integer(bootMenuStandard)), (E.resumeDebugOptionEnabled, .boolean(false)),
        ]
        let memoryDiagnostic: [(BCDElementType, BCDElementValue)] = [
            (E.applicationDevice, system),
            (E.applicationPath, .string(uefi ? "\\EFI\\Microsoft\\Boot\\memtest.efi" : "\\boot\\memtest.exe")),
            (E.description, .string("Windows Memory Diagnostic")), (E.preferredLocale, locale),
            (E.inheritedObjects, .objectList([BCDObjectID.globalSettings])),
            (E.allowBadMemoryAccess, .boolean(true)), (E.isolatedExecutionContext, .boolean(true)),
        ]
        var recoveryObjects: [BCDObject] = []
        if let re = c.recovery {
            let recovery: [(BCDElementType, BCDElementValue)] = [
                (E.recoverySequence, .objectList([re.loaderID])), (E.recoveryEnabled, .boolean(true)),
            ]
            loader += recovery + [(E.displayMessageOverride, .integer(displayRecovery))]
            resume += recovery
            let ramdisk = BCDElementValue.device(re.ramdisk)
            recoveryObjects = [
                BCDObject(id: re.loaderID, type: BCDObjectType.osLoader, elements: [
                    (E.applicationDevice, ramdisk), (E.applicationPath, .string("\\windows\\system32\\winload.\(ext)")),
                    (E.description, .string("Windows Recovery Environment")), (E.preferredLocale, locale),
                    (E.inheritedObjects, .objectList([BCDObjectID.bootLoaderSettings])),
                    (E.displayMessage, .integer(displayRecovery)),
                    (E.osDevice, ramdisk), (E.systemRoot, .string("\\windows")),
                    (E.nxPolicy, .integer(nxOptIn)), (E.bootMenuPolicy, .integer(bootMenuStandard)),
                    (E.winPE, .boolean(true)), (E.winREMarker, .boolean(true)),
                ]),
                BCDObject(id: re.optionsID, type: BCDObjectType.deviceOptions, elements: [
                    (E.description, .string("Windows Recovery")),
                    (E.ramdiskSdiDevice, .device(re.partition)), (E.ramdiskSdiPath, .string(RecoveryEnvironment.sdiPath)),
                ]),
            ]
        }
        return BCDStore(objects: [
            BCDObject(id: BCDObjectID.bootManager, type: BCDObjectType.bootManager, elements: bootManager),
            BCDObject(id: c.loaderID, type: BCDObjectType.osLoader, elements: loader),
            BCDObject(id: c.resumeID, type: BCDObjectType.resume, elements: resume),
            BCDObject(id: BCDObjectID.memoryDiagnostic, type: BCDObjectType.memoryDiagnostic, elements: memoryDiagnostic),
            BCDObject(id: BCDObjectID.globalSettings, type: BCDObjectType.inheritAny, elements: [
                (E.inheritedObjects, .objectList([BCDObjectID.debuggerSettings, BCDObjectID.emsSettings, BCDObjectID.badMemory])),
            ]),
            // Serial port 1 at 115200: the values Windows' own template store has; debugging stays off.
            BCDObject(id: BCDObjectID.debuggerSettings, type: BCDObjectType.inheritAny, elements: [
                (E.debuggerType, .integer(0)), (E.serialDebuggerPort, .integer(1)), (E.serialDebuggerBaudRate, .integer(115_200)),
            ]),
            BCDObject(id: BCDObjectID.emsSettings, type: BCDObjectType.inheritAny, elements: [(E.emsEnabled, .boolean(false))]),
            BCDObject(id: BCDObjectID.badMemory, type: BCDObjectType.inheritAny, elements: []),
            BCDObject(id: BCDObjectID.bootLoaderSettings, type: BCDObjectType.inheritOSLoader, elements: [
                (E.inheritedObjects, .objectList([BCDObjectID.globalSettings, BCDObjectID.hypervisorSettings])),
            ]),
            BCDObject(id: BCDObjectID.hypervisorSettings, type: BCDObjectType.inheritOSLoader, elements: [
                (E.hypervisorDebuggerType, .integer(0)), (E.hypervisorDebuggerPort, .integer(1)),
                (E.hypervisorDebuggerBaudRate, .integer(115_200)),
            ]),
            BCDObject(id: BCDObjectID.resumeLoaderSettings, type: BCDObjectType.inheritResume, elements: [
                (E.inheritedObjects, .objectList([BCDObjectID.globalSettings])),
            ]),
        ] + recoveryObjects)
    }
}
