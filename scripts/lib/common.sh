# Shared by the scripts: installs what the project needs from Debian's packages when it is
# missing, so a fresh Debian 12 machine (or CI's fresh clone) needs nothing done by hand.

# Debian packages the build and the tests need.
IMPRINT_PACKAGES=(
    wimtools libwim-dev      # wimlib: the reference the tests compare against, and the benchmark's peer
    libssl-dev               # libcrypto: SHA-1 with the CPU's SHA instructions
    attr                     # getfattr/setfattr, to inspect what apply keeps in xattrs
    ntfs-3g                  # mkfs.ntfs and the ntfs-3g driver, to build Windows-like fixtures
    ntfs-3g-dev              # libntfs-3g: apply straight into an NTFS volume
    libblkid-dev             # libblkid: partition tables and filesystems, as util-linux sees them
    libcurl4-openssl-dev     # libcurl: every HTTP transfer of the agent
    liblzma-dev xz-utils     # liblzma: .img.xz disk images and .tar.xz driver bundles
    gdisk fdisk              # sgdisk and sfdisk: the tests check our partition tables with them
    dosfstools e2fsprogs     # mkfs.fat and mkfs.ext4, which the agent formats with
    chromium                 # the dashboard test drives a real headless Chromium
    python3
    time                     # /usr/bin/time: peak memory in the benchmarks
    postgresql               # PostgreSQL 15: the server's tests run against it as well as SQLite
    libhivex-bin             # hivexsh/hivexregedit: an independent reader of the registry hives we write
    mtools                   # mcopy/mmd: files onto FAT (the ESP, the USB stick) without a vfat kernel
    efibootmgr               # the firmware's "Windows Boot Manager" entry, carried in the boot environment
    linux-image-amd64        # the boot environment's kernel and modules
    busybox-static cpio      # the boot environment's userland and its initrd archive
    systemd-boot-efi         # the USB stick's UEFI bootloader (Initramfs/usb): one .efi file, text menu entries
    qemu-system-x86 ovmf ipxe-qemu  # the lab's virtual machines: BIOS, UEFI (OVMF) and iPXE ROMs
    dnsmasq-base iproute2    # the lab's DHCP + TFTP, its network namespace and tap device
    ca-certificates
)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        if [ "$(id -u)" != 0 ]; then
            echo "error: need root to install ${missing[*]} (run as root, or install them first)" >&2
            exit 1
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

ensure_swift() {
    if ! command -v swift >/dev/null 2>&1; then
        for d in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
            [ -x "$d/swift" ] && export PATH="$d:$PATH"
        done
    fi
    command -v swift >/dev/null 2>&1 || { echo "error: no Swift toolchain found (install Swift 6 and put it on PATH)" >&2; exit 1; }
}
