; A stand-in for Windows' UEFI boot manager (Windows\Boot\EFI\bootmgfw.efi), for the lab:
; Imprint copies it to the ESP as EFI\Microsoft\Boot\bootmgfw.efi and EFI\Boot\bootx64.efi, and
; a deployed UEFI machine's firmware must start it. It prints, on a line of its own,
;     IMPRINT-STANDIN bootmgfw.efi started from \EFI\BOOT\BOOTX64.EFI
; (the file path(s) of its own loaded image, as the firmware gave them) through the system
; table's ConOut->OutputString, which OVMF copies to the serial console, turns the firmware's
; watchdog off and halts for good.
;   nasm -f bin -o bootmgfw.efi bootmgfw.asm
;
; The file is a PE32+ image written field by field here (Microsoft PE/COFF specification,
; "PE Format"): an MS-DOS stub whose e_lfanew (offset 0x3C) points at "PE\0\0"; the COFF file
; header (Machine 0x8664 = AMD64, Characteristics 0x0022 = executable image | large address
; aware, no "relocations stripped" flag: OVMF's loader refuses an image with that flag unless
; it lands at its ImageBase); the PE32+ optional header (Magic 0x20B, 16 data directories,
; so SizeOfOptionalHeader = 240; Subsystem 10 = EFI application, which the UEFI spec requires
; of an application image); SectionAlignment 0x1000 and FileAlignment 0x200, each section's
; RVA a multiple of the first and its file offset and raw size multiples of the second;
; SizeOfImage = the end of the last section rounded up to SectionAlignment; SizeOfHeaders =
; the headers rounded up to FileAlignment. Two sections: .text (code and constant data; the
; code is position independent, RIP-relative only) and .reloc, whose base relocation
; directory (data directory 5) holds one block with only IMAGE_REL_BASED_ABSOLUTE (type 0)
; entries, which a loader skips: nothing needs fixing wherever the image is loaded.
;
; The UEFI side (UEFI specification 2.x, x86-64): the entry point is called with the
; Microsoft x64 convention, RCX = ImageHandle, RDX = EFI_SYSTEM_TABLE *; arguments in RCX,
; RDX, R8, R9, 32 bytes of shadow space above the return address, RSP 16-byte aligned at a
; call; RBX, RBP, RDI, RSI, R12-R15 preserved. Offsets used (all fields 8 bytes but those
; noted): EFI_SYSTEM_TABLE: Hdr (24 bytes), FirmwareVendor 24, FirmwareRevision (4) 32,
; ConsoleInHandle 40, ConIn 48, ConsoleOutHandle 56, ConOut 64, StandardErrorHandle 72,
; StdErr 80, RuntimeServices 88, BootServices 96. EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL: Reset 0,
; OutputString(This, CHAR16 *) 8. EFI_BOOT_SERVICES: Hdr (24 bytes), then 8-byte function
; pointers: HandleProtocol(Handle, EFI_GUID *, VOID **) at 152 (the 17th entry),
; SetWatchdogTimer(Timeout, WatchdogCode, DataSize, CHAR16 *) at 256 (the 30th); the boot
; manager arms a 5-minute watchdog before starting a boot option. EFI_LOADED_IMAGE_PROTOCOL
; (GUID 5B1B31A1-9562-11D2-8E3F-00A0C969723B): Revision (4) 0, ParentHandle 8, SystemTable
; 16, DeviceHandle 24, FilePath 32 (an EFI_DEVICE_PATH_PROTOCOL *, relative to
; DeviceHandle). A device path is a list of nodes {Type (1), SubType (1), Length (2, the whole
; node)} ended by Type 0x7F SubType 0xFF; a media file path node is Type 4 SubType 4 followed
; by a NUL-terminated CHAR16 path name.

        bits 64
        default rel
        org 0

SECTION_ALIGNMENT equ 0x1000
FILE_ALIGNMENT    equ 0x200
TEXT_RVA          equ 0x1000
RELOC_RVA         equ 0x2000

%define TEXT_RVA_OF(label) (TEXT_RVA + (label) - text_start)

; --- MS-DOS header: only e_magic and e_lfanew matter ---------------------------------------
dos_header:
        db "MZ"
        times 0x3C - ($ - dos_header) db 0
        dd pe_signature                 ; e_lfanew

; --- PE signature and COFF file header -----------------------------------------------------
pe_signature:
        db "PE", 0, 0
        dw 0x8664                       ; Machine: AMD64
        dw 2                            ; NumberOfSections
        dd 0                            ; TimeDateStamp
        dd 0                            ; PointerToSymbolTable
        dd 0                            ; NumberOfSymbols
        dw optional_header_end - optional_header ; SizeOfOptionalHeader (240)
        dw 0x0022                       ; Characteristics: EXECUTABLE_IMAGE | LARGE_ADDRESS_AWARE

; --- PE32+ optional header -----------------------------------------------------------------
optional_header:
        dw 0x020B                       ; Magic: PE32+
        db 0, 0                         ; linker version
        dd TEXT_RAW_SIZE                ; SizeOfCode
        dd RELOC_RAW_SIZE               ; SizeOfInitializedData
        dd 0                            ; SizeOfUninitializedData
        dd TEXT_RVA_OF(entry)           ; AddressOfEntryPoint
        dd TEXT_RVA                     ; BaseOfCode
        dq 0x140000000                  ; ImageBase (the loader relocates; nothing to fix up)
        dd SECTION_ALIGNMENT
        dd FILE_ALIGNMENT
        dw 0, 0                         ; operating system version
        dw 0, 0                         ; image version
        dw 0, 0                         ; subsystem version
        dd 0                            ; Win32VersionValue
        dd RELOC_RVA + SECTION_ALIGNMENT ; SizeOfImage: .reloc's page is the last
        dd HEADERS_SIZE                 ; SizeOfHeaders
        dd 0                            ; CheckSum (not checked for EFI images)
        dw 10                           ; Subsystem: EFI_APPLICATION
        dw 0                            ; DllCharacteristics
        dq 0x10000, 0x1000              ; stack reserve, commit
        dq 0x10000, 0x1000              ; heap reserve, commit
        dd 0                            ; LoaderFlags
        dd 16                           ; NumberOfRvaAndSizes
        dq 0                            ; 0 export
        dq 0                            ; 1 import
        dq 0                            ; 2 resource
        dq 0                            ; 3 exception
        dq 0                            ; 4 certificate
        dd RELOC_RVA, reloc_end - reloc_start ; 5 base relocation
        times 10 dq 0                   ; 6 debug .. 15 reserved
optional_header_end:

; --- Section table -------------------------------------------------------------------------
        db ".text", 0, 0, 0
        dd text_end - text_start        ; VirtualSize
        dd TEXT_RVA                     ; VirtualAddress
        dd TEXT_RAW_SIZE                ; SizeOfRawData
        dd text_start                   ; PointerToRawData
        dd 0, 0                         ; PointerToRelocations, PointerToLinenumbers
        dw 0, 0                         ; NumberOfRelocations, NumberOfLinenumbers
        dd 0x60000020                   ; CODE | MEM_EXECUTE | MEM_READ

        db ".reloc", 0, 0
        dd reloc_end - reloc_start
        dd RELOC_RVA
        dd RELOC_RAW_SIZE
        dd reloc_start
        dd 0, 0
        dw 0, 0
        dd 0x42000040                   ; INITIALIZED_DATA | MEM_DISCARDABLE | MEM_READ

headers_end:
        align FILE_ALIGNMENT, db 0
HEADERS_SIZE equ $ - dos_header

; --- .text ---------------------------------------------------------------------------------
text_start:
entry:
        push rbx
        push rsi
        push rdi
        push r12
        sub rsp, 0x38                   ; shadow space + one local at [rsp + 0x28]; RSP is
                                        ; now 16-byte aligned
        mov r12, rcx                    ; ImageHandle
        mov rbx, rdx                    ; EFI_SYSTEM_TABLE *

        lea rdx, [marker]
        call print
        ; HandleProtocol(ImageHandle, &LoadedImageProtocol, &interface)
        mov rcx, r12
        lea rdx, [loaded_image_guid]
        lea r8, [rsp + 0x28]            ; the interface pointer, on our stack
        mov rax, [rbx + 96]             ; BootServices
        call [rax + 152]
        test rax, rax
        jnz .path_done                  ; an EFI_STATUS error has its top bit set
        mov rax, [rsp + 0x28]
        mov rsi, [rax + 32]             ; FilePath
        test rsi, rsi
        jz .path_done
        lea rdx, [from]
        call print
.node:
        cmp byte [rsi], 0x7F            ; end of the device path
        je .path_done
        movzx edi, word [rsi + 2]       ; the node's length
        cmp edi, 4
        jb .path_done                   ; malformed: stop
        cmp word [rsi], 0x0404          ; Type 4 (media), SubType 4 (file path)
        jne .skip
        lea rdx, [rsi + 4]
        call print
.skip:
        add rsi, rdi
        jmp .node
.path_done:
        lea rdx, [newline]
        call print
        ; SetWatchdogTimer(0, 0, 0, NULL): the firmware would reset the machine after 5 minutes.
        xor ecx, ecx
        xor edx, edx
        xor r8d, r8d
        xor r9d, r9d
        mov rax, [rbx + 96]
        call [rax + 256]
        cli
.halt:
        hlt
        jmp .halt

; print: RDX = a NUL-terminated CHAR16 string, written with ConOut->OutputString (RBX = the
; system table). Called with RSP 8 below a 16-byte boundary; re-aligns for the firmware.
print:
        sub rsp, 0x28
        mov rcx, [rbx + 64]             ; ConOut
        call [rcx + 8]                  ; OutputString(ConOut, string)
        add rsp, 0x28
        ret

        align 8, db 0
loaded_image_guid:                      ; 5B1B31A1-9562-11D2-8E3F-00A0C969723B
        dd 0x5B1B31A1
        dw 0x9562, 0x11D2
        db 0x8E, 0x3F, 0x00, 0xA0, 0xC9, 0x69, 0x72, 0x3B
marker:
        dw __utf16__(`\r\nIMPRINT-STANDIN bootmgfw.efi started`), 0
from:
        dw __utf16__(` from `), 0
newline:
        dw __utf16__(`\r\n`), 0
text_end:
        align FILE_ALIGNMENT, db 0
TEXT_RAW_SIZE equ $ - text_start

; --- .reloc: one block, page 0x1000, two ABSOLUTE (padding) entries ------------------------
reloc_start:
        dd TEXT_RVA                     ; page RVA
        dd 12                           ; SizeOfBlock: 8-byte header + 2 entries
        dw 0, 0                         ; type 0 (ABSOLUTE), offset 0: skipped
reloc_end:
        align FILE_ALIGNMENT, db 0
RELOC_RAW_SIZE equ $ - reloc_start
