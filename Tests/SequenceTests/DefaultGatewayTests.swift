import Foundation
import SequenceModel
@testable import SequenceRunner
import TestSupport
import Testing

/// The default gateways the agent reports (distribution points are chosen by them, as MDT's
/// DefaultGateway), read from /proc/net/route and /proc/net/ipv6_route as the kernel writes them.
@Suite struct DefaultGatewayTests {
    @Test func readsTheDefaultRoutesGateways() throws {
        let proc = ScratchDirectory().sub("proc")
        try FileManager.default.createDirectory(atPath: proc + "/net", withIntermediateDirectories: true)
        try """
            Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
            eth1\t0000000A\t0100000A\t0003\t0\t0\t0\t000000FF\t0\t0\t0
            """.write(toFile: proc + "/net/route", atomically: true, encoding: .utf8)
        try """
            00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0
            fd770000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0
            """.write(toFile: proc + "/net/ipv6_route", atomically: true, encoding: .utf8)
        // 192.0.2.1 (the little-endian word 0x010200C0); a route to 10.0.0.0/8 is no default one.
        #expect(Facts.defaultGateways(procRoot: proc) == ["192.0.2.1", "fe80:0:0:0:0:0:0:1"])
        #expect(Facts.defaultGateways(procRoot: proc + "/missing").isEmpty)
    }
}
