; A stand-in for Windows' BIOS boot manager (Windows\Boot\PCAT\bootmgr), for the lab: Imprint
; copies it to the root of the active System Reserved partition as \bootmgr, and a deployed
; BIOS machine must reach it. It prints
;     IMPRINT-STANDIN bootmgr started, boot drive 0x80
; on COM1 (written to the UART directly: SeaBIOS does not copy int 10h text to the serial
; port) and on the screen (BIOS int 10h teletype), then halts for good.
;   nasm -f bin -o bootmgr bootmgr.asm
;
; The contract it relies on, GRUB 2.06's i386-pc `ntldr` command (grub-core/loader/i386/pc/
; ntldr.c, read in GRUB's source): the whole file is loaded at physical 0x20000 and entered
; in real mode at CS:IP = 0x2000:0000, with DS = ES = FS = GS = SS = 0, SP = 0x7C00, A20
; enabled, EDX = the BIOS number of GRUB's root drive (DL), and the first sector of the root
; partition at 0000:7C00 (its BPB's hidden-sectors/drive fields patched). No header is
; expected: execution starts at the file's first byte. Windows' own bootmgr is entered the
; same way by the NTFS boot sector (2000:0000, DL = drive), so this is also what a real
; boot sector would do with it.
;
; The UART (PC 16550 at I/O 0x3F8): IER = base+1, FCR = base+2, LCR = base+3, MCR = base+4,
; LSR = base+5; with LCR bit 7 (DLAB) set, base+0/base+1 are the divisor's low/high bytes
; (115200 / divisor baud, so 1 = 115200); LCR 0x03 = 8 data bits, no parity, 1 stop bit; a
; byte may be written to base+0 when LSR bit 5 (transmit holding register empty) is set.
; BIOS int 10h, AH = 0Eh: teletype output of AL on page BH (colour BL in graphics modes).

        bits 16
        org 0                           ; CS = 0x2000, IP = 0: offsets are from the file's start

COM1    equ 0x3F8

start:
        cli
        mov ax, cs
        mov ds, ax
        mov es, ax
        mov ss, ax                      ; a stack of our own, at the top of our 64 KiB segment
        mov sp, 0xFFF0
        sti
        cld
        mov [drive], dl

        ; COM1: no interrupts, 115200 baud, 8N1, FIFOs on and cleared, DTR + RTS.
        mov dx, COM1 + 1
        xor al, al
        out dx, al
        mov dx, COM1 + 3
        mov al, 0x80
        out dx, al
        mov dx, COM1 + 0
        mov al, 1
        out dx, al
        mov dx, COM1 + 1
        xor al, al
        out dx, al
        mov dx, COM1 + 3
        mov al, 0x03
        out dx, al
        mov dx, COM1 + 2
        mov al, 0xC7
        out dx, al
        mov dx, COM1 + 4
        mov al, 0x03
        out dx, al

        ; The drive number as two hex digits into the message.
        mov al, [drive]
        shr al, 4
        call hexdigit
        mov [drivehex], al
        mov al, [drive]
        and al, 0x0F
        call hexdigit
        mov [drivehex + 1], al

        mov si, message
.next:
        lodsb
        test al, al
        jz .done
        call serial_out
        mov ah, 0x0E
        mov bx, 0x0007
        int 0x10
        jmp .next
.done:
        cli
.halt:
        hlt
        jmp .halt

; AL (0..15) -> its hexadecimal digit in AL.
hexdigit:
        add al, '0'
        cmp al, '9'
        jbe .ok
        add al, 'A' - '9' - 1
.ok:
        ret

; Writes AL to COM1 once the transmitter can take it (a bounded wait: a missing UART must not
; hang the screen output).
serial_out:
        push ax
        push cx
        mov ah, al
        mov cx, 0xFFFF
        mov dx, COM1 + 5
.wait:
        in al, dx
        test al, 0x20
        jnz .ready
        loop .wait
.ready:
        mov al, ah
        mov dx, COM1
        out dx, al
        pop cx
        pop ax
        ret

message:
        db 13, 10, "IMPRINT-STANDIN bootmgr started, boot drive 0x"
drivehex:
        db "??", 13, 10, 0
drive:
        db 0
