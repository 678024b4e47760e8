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
    libhivex-dev             # libhivex: the registry tests compare every key and value of real hives with it
    mtools                   # mcopy/mmd: files onto FAT (the ESP, the USB stick) without a vfat kernel
    efibootmgr               # the firmware's "Windows Boot Manager" entry, carried in the boot environment
    linux-image-amd64        # the boot environment's kernel and modules
    busybox-static cpio      # the boot environment's userland and its initrd archive
    grub-pc-bin              # GRUB i386-pc: the USB stick's legacy BIOS boot (Initramfs/usb; no boot loader is installed)
    nasm                     # the lab image's stand-in boot managers (Initramfs/lab/standins)
    qemu-system-x86 ovmf ipxe-qemu  # the lab's virtual machines: BIOS, UEFI (OVMF) and iPXE ROMs
    dnsmasq-base iproute2    # the lab's DHCP + TFTP, its network namespace and tap device
    nftables                 # nft: scripts/netlab's packet loss and multicast block (this kernel has no sch_netem)
    sbsigntool               # sbverify: the signatures of the Secure Boot chain (shim, GRUB, kernel)
    nginx                    # in front of imprint-server (X-Accel-Redirect), distribution points: tests, lab, benchmark
    xfsprogs                 # mkfs.xfs: the library's reflinked version copies are tested on XFS
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
# and firmware boot entries. The same package versions are reused.
#
# signed_boot_chain CACHE: shim-signed and grub-efi-amd64-signed from this machine's own apt
# sources (Debian 12). Prints the directory holding usr/lib/shim/shimx64.efi.signed and
# usr/lib/grub/x86_64-efi-signed/{grubx64,grubnetx64}.efi.signed.
# signed_boot_chain CACHE RELEASE: grub-efi-amd64-signed only, the newest of Debian RELEASE
# (trixie: its network GRUB has http, Debian 12's has not), through an apt configuration of its
# own under CACHE/apt-RELEASE (its own sources list, lists, status and downloads): this machine's
# apt sources and state are never read or changed. apt verifies the release's InRelease against
# this machine's Debian keyring, Packages against InRelease's SHA-256 and the .deb against
# Packages'. Its lists are fetched again when a day old, so a point release's GRUB is taken (and
# a pool file that has gone away is not asked for). Prints the directory holding
# usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed.
signed_boot_chain() {
    local cache=$1 release=${2:-} packages=(shim-signed grub-efi-amd64-signed) apt=() versions="" p v
    local signed=usr/lib/grub/x86_64-efi-signed
    local files=(usr/lib/shim/shimx64.efi.signed "$signed/grubx64.efi.signed" "$signed/grubnetx64.efi.signed")
    if [ -n "$release" ]; then
        packages=(grub-efi-amd64-signed); files=("$signed/grubnetx64.efi.signed")
        local keyring=/usr/share/keyrings/debian-archive-keyring.gpg conf
        [ -r "$keyring" ] || { echo "error: $keyring is missing (apt-get install debian-archive-keyring): nothing could verify Debian $release" >&2; return 1; }
        # Absolute: apt takes a relative Dir:: path as relative to /etc/apt.
        mkdir -p "$cache"; conf=$(cd "$cache" && pwd)/apt-$release
        mkdir -p "$conf"/{lists/partial,archives/partial,sources.list.d,preferences.d}
        [ -f "$conf/status" ] || : > "$conf/status"
        echo "deb [signed-by=$keyring] http://deb.debian.org/debian $release main" > "$conf/sources.list"
        # Everything apt reads or writes is under $conf, except its configuration files (a proxy
        # set there still applies). An empty status: no package of this machine counts as installed.
        apt=(-o "Dir::Etc::SourceList=$conf/sources.list" -o "Dir::Etc::SourceParts=$conf/sources.list.d"
             -o "Dir::Etc::Preferences=$conf/preferences" -o "Dir::Etc::PreferencesParts=$conf/preferences.d"
             -o "Dir::State::Lists=$conf/lists" -o "Dir::State::status=$conf/status"
             -o "Dir::State::extended_states=$conf/extended_states" -o "Dir::Cache=$conf"
             -o "Dir::Cache::Archives=$conf/archives" -o APT::Architectures::=amd64 -o Acquire::Languages=none
             -o APT::Sandbox::User=root)
        # A stamp of our own: apt gives the lists the archive's Last-Modified time, not the fetch's.
        if [ -z "$(find "$conf" -maxdepth 1 -name updated -mmin -1440 2>/dev/null)" ]; then
            log "fetching Debian $release's package lists into $conf (an apt configuration of its own)"
            # apt-get update fails (status 100) when InRelease does not verify against the keyring.
            if ! apt-get "${apt[@]}" -q update > "$conf/update.log" 2>&1 || grep -qE '^(W|E): ' "$conf/update.log"; then
                cat "$conf/update.log" >&2
                echo "error: apt-get update of Debian $release failed: its lists could not be fetched, or its InRelease did not verify against $keyring" >&2
                return 1
            fi
            touch "$conf/updated"
        fi
    fi
    for p in "${packages[@]}"; do
        v=$(apt-cache "${apt[@]}" policy "$p" 2>/dev/null | sed -n 's/^ *Candidate: //p')
        if [ -n "$release" ] && { [ -z "$v" ] || [ "$v" = "(none)" ]; }; then
            echo "error: Debian $release's lists ($conf/lists) hold no package $p" >&2; return 1
        fi
        if [ -z "$v" ] || [ "$v" = "(none)" ]; then
            [ "$(id -u)" = 0 ] || { echo "error: $p is unknown to apt, and apt-get update needs root" >&2; return 1; }
            apt-get update -qq
            v=$(apt-cache policy "$p" 2>/dev/null | sed -n 's/^ *Candidate: //p')
            [ -n "$v" ] && [ "$v" != "(none)" ] || { echo "error: apt knows no package $p (Debian 12 main has it)" >&2; return 1; }
        fi
        versions+="${versions:+_}$p=$v"
    done
    local dir=$cache/${release:+$release-}$(printf '%s' "$versions" | tr -c 'A-Za-z0-9._=+\n-' '_')
    if ! (cd "$dir" 2>/dev/null && ls "${files[@]}") >/dev/null 2>&1; then
        log "unpacking ${packages[*]}${release:+ of Debian $release} into $dir (apt-get download + dpkg-deb -x: nothing installed)"
        local work; work=$(mktemp -d)
        # The sandbox user _apt cannot write a root-owned mktemp directory; root downloads.
        # apt-get download refuses a package it cannot authenticate (no --allow-unauthenticated).
        if ! (cd "$work" && apt-get download -q -o APT::Sandbox::User=root "${apt[@]}" "${packages[@]}" >"$work/download.log" 2>&1); then
            cat "$work/download.log" >&2; rm -rf "$work"
            echo "error: apt-get download ${packages[*]}${release:+ (Debian $release)} failed" >&2; return 1
        fi
        rm -rf "$dir.new"; mkdir -p "$dir.new"
        for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$dir.new"; done
        rm -rf "$work" "$dir"; mv "$dir.new" "$dir"
        (cd "$dir" && ls "${files[@]}") >/dev/null || { echo "error: the packages did not hold ${files[*]}" >&2; return 1; }
    fi
    echo "$dir"
}
