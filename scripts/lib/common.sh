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
    grub-pc-bin              # GRUB i386-pc: the USB stick's legacy BIOS boot (Initramfs/usb; no boot loader is installed)
    qemu-system-x86 ovmf ipxe-qemu  # the lab's virtual machines: BIOS, UEFI (OVMF) and iPXE ROMs
    dnsmasq-base iproute2    # the lab's DHCP + TFTP, its network namespace and tap device
    sbsigntool               # sbverify: the signatures of the Secure Boot chain (shim, GRUB, kernel)
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

# Debian's signed Secure Boot chain: shim (signed by Microsoft's UEFI CA) and GRUB (signed by
# Debian; grubnetx64.efi is its network build). Unpacked from the packages with dpkg-deb into
# CACHE, never installed: their maintainer scripts would put them into this machine's own ESP
# and firmware boot entries. Prints the directory holding shimx64.efi.signed,
# grubx64.efi.signed and grubnetx64.efi.signed; the same package versions are reused.
signed_boot_chain() {
    local cache=$1 packages=(shim-signed grub-efi-amd64-signed) versions="" p v
    for p in "${packages[@]}"; do
        v=$(apt-cache policy "$p" 2>/dev/null | sed -n 's/^ *Candidate: //p')
        if [ -z "$v" ] || [ "$v" = "(none)" ]; then
            [ "$(id -u)" = 0 ] || { echo "error: $p is unknown to apt, and apt-get update needs root" >&2; return 1; }
            apt-get update -qq
            v=$(apt-cache policy "$p" 2>/dev/null | sed -n 's/^ *Candidate: //p')
            [ -n "$v" ] && [ "$v" != "(none)" ] || { echo "error: apt knows no package $p (Debian 12 main has it)" >&2; return 1; }
        fi
        versions+="${versions:+_}$p=$v"
    done
    local dir=$cache/$(printf '%s' "$versions" | tr -c 'A-Za-z0-9._=+\n-' '_')
    local files=("$dir/usr/lib/shim/shimx64.efi.signed" "$dir/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
                 "$dir/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")
    if ! ls "${files[@]}" >/dev/null 2>&1; then
        log "unpacking Debian's signed shim and GRUB into $dir (apt-get download + dpkg-deb -x: nothing installed)"
        local work; work=$(mktemp -d)
        # The sandbox user _apt cannot write a root-owned mktemp directory; root downloads.
        if ! (cd "$work" && apt-get download -q -o APT::Sandbox::User=root "${packages[@]}" >"$work/download.log" 2>&1); then
            cat "$work/download.log" >&2; rm -rf "$work"
            echo "error: apt-get download ${packages[*]} failed" >&2; return 1
        fi
        rm -rf "$dir.new"; mkdir -p "$dir.new"
        for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$dir.new"; done
        rm -rf "$work" "$dir"; mv "$dir.new" "$dir"
        ls "${files[@]}" >/dev/null || { echo "error: the packages did not hold ${files[*]}" >&2; return 1; }
    fi
    echo "$dir"
}
