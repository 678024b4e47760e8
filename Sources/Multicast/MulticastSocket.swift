#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 address and UDP port, as the socket calls take them.
public struct UDPAddress: Hashable, Sendable, CustomStringConvertible {
    public var address: UInt32   // network byte order, as in sockaddr_in
    public var port: UInt16      // host byte order

    public init?(_ text: String, port: Int) {
        var parsed = in_addr()
        guard inet_pton(AF_INET, text, &parsed) == 1, (0...65535).contains(port) else { return nil }
        address = parsed.s_addr
        self.port = UInt16(port)
    }

    init(_ storage: sockaddr_in) {
        address = storage.sin_addr.s_addr
        port = UInt16(bigEndian: storage.sin_port)
    }

    var socketAddress: sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr.s_addr = address
        return a
    }

    public var description: String {
        var a = in_addr(s_addr: address)
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        inet_ntop(AF_INET, &a, &text, socklen_t(text.count))
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + ":\(port)"
    }
}

/// A UDP socket for one session: the sender's (bound to any port, sending to the group) or a
/// receiver's (bound to the group's port and a member of the group). Closed when released.
final class MulticastSocket: @unchecked Sendable {  // a descriptor; each socket is used by one thread
    let descriptor: Int32

    private init(descriptor: Int32) { self.descriptor = descriptor }
    deinit { close(descriptor) }

    private static func make() throws(MulticastError) -> MulticastSocket {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .socket(operation: "socket", errno: errno) }
        return MulticastSocket(descriptor: fd)
    }

    /// The sender's socket: heartbeats come back to its port; datagrams leave through
    /// `interface` (an IPv4 address) when given, else the route to the group.
    static func sender(interface: String?, ttl: Int) throws(MulticastError) -> MulticastSocket {
        let s = try make()
        var any = sockaddr_in()
        any.sin_family = sa_family_t(AF_INET)
        try s.bind(any)
        try s.set(Int32(IPPROTO_IP), IP_MULTICAST_TTL, Int32(ttl), "IP_MULTICAST_TTL")
        // Receivers on the sender's own machine (a test, a distribution point imaging itself) hear it too.
        try s.set(Int32(IPPROTO_IP), IP_MULTICAST_LOOP, 1, "IP_MULTICAST_LOOP")
        s.setBuffer(SO_SNDBUF, SO_SNDBUFFORCE, 4 << 20)
        if let interface {
            var address = in_addr()
            guard inet_pton(AF_INET, interface, &address) == 1 else {
                throw .badSetting("the interface address \"\(interface)\" is not an IPv4 address")
            }
            let result = withUnsafePointer(to: &address) {
                setsockopt(s.descriptor, Int32(IPPROTO_IP), IP_MULTICAST_IF, $0, socklen_t(MemoryLayout<in_addr>.size))
            }
            guard result == 0 else { throw .socket(operation: "IP_MULTICAST_IF \(interface)", errno: errno) }
        }
        return s
    }

    /// A receiver's socket: bound to the group's port (shared, so several receivers on one
    /// machine all hear the group) and joined to the group on `interface` or the default one.
    static func receiver(group: UDPAddress, interface: String?) throws(MulticastError) -> MulticastSocket {
        let s = try make()
        try s.set(SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR")
        // A big queue: the applying thread may be busy for a moment; lost datagrams cost a pass.
        s.setBuffer(SO_RCVBUF, SO_RCVBUFFORCE, 16 << 20)
        var bound = sockaddr_in()
        bound.sin_family = sa_family_t(AF_INET)
        bound.sin_port = group.port.bigEndian
        bound.sin_addr.s_addr = group.address
        try s.bind(bound)
        var request = ip_mreq()
        request.imr_multiaddr.s_addr = group.address
        if let interface {
            guard inet_pton(AF_INET, interface, &request.imr_interface) == 1 else {
                throw .badSetting("the interface address \"\(interface)\" is not an IPv4 address")
            }
        }
        let result = withUnsafePointer(to: &request) {
            setsockopt(s.descriptor, Int32(IPPROTO_IP), IP_ADD_MEMBERSHIP, $0, socklen_t(MemoryLayout<ip_mreq>.size))
        }
        guard result == 0 else { throw .socket(operation: "joining \(group)", errno: errno) }
        return s
    }

    private func bind(_ address: sockaddr_in) throws(MulticastError) {
        var a = address
        let result = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw .socket(operation: "bind to port \(UInt16(bigEndian: address.sin_port))", errno: errno) }
    }

    private func set(_ level: Int32, _ option: Int32, _ value: Int32, _ name: String) throws(MulticastError) {
        var v = value
        guard setsockopt(descriptor, level, option, &v, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw .socket(operation: name, errno: errno)
        }
    }

    /// A bigger kernel buffer; root may exceed the system's limit (FORCE), others get what it allows.
    private func setBuffer(_ option: Int32, _ forced: Int32, _ bytes: Int32) {
        var v = bytes
        if setsockopt(descriptor, SOL_SOCKET, forced, &v, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(descriptor, SOL_SOCKET, option, &v, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// Sends one datagram; a full buffer (ENOBUFS, EAGAIN) is retried after a moment, a
    /// network with no route is an error.
    func send(_ bytes: UnsafeRawBufferPointer, to destination: UDPAddress) throws(MulticastError) {
        var address = destination.socketAddress
        while true {
            let sent = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(descriptor, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if sent >= 0 { return }
            let code = errno
            if code == EINTR { continue }
            if code == ENOBUFS || code == EAGAIN { usleep(200); continue }
            throw .socket(operation: "sending to \(destination)", errno: code)
        }
    }

    /// Receives one datagram into `buffer`, waiting at most `timeoutMilliseconds` (0: only what is
    /// queued). Nil when nothing came.
    func receive(into buffer: UnsafeMutableRawBufferPointer, timeoutMilliseconds: Int32) throws(MulticastError) -> (count: Int, from: UDPAddress)? {
        var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&poller, 1, timeoutMilliseconds)
            if ready < 0 && errno == EINTR { continue }
            if ready < 0 { throw .socket(operation: "poll", errno: errno) }
            if ready == 0 { return nil }
            break
        }
        var from = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let count = withUnsafeMutablePointer(to: &from) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                recvfrom(descriptor, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT), $0, &length)
            }
        }
        if count < 0 {
            if errno == EAGAIN || errno == EINTR { return nil }
            throw .socket(operation: "recvfrom", errno: errno)
        }
        return (count, UDPAddress(from))
    }
}

/// Seconds on the monotonic clock: intervals and rates, unaffected by the wall clock being set.
func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}
