import Primitives
import Testing

@Suite("Glob: fnmatch's patterns, the case rule stated at each use")
struct GlobTests {
    func matches(_ pattern: String, _ text: String, _ rule: CaseRule = .caseSensitive) -> Bool {
        Glob(pattern, rule).matches(text)
    }

    @Test func starsAndQuestionMarks() {
        #expect(matches("*", ""))
        #expect(matches("*", "anything at all"))
        #expect(matches("", ""))
        #expect(!matches("", "a"))
        #expect(matches("Latitude 7?50", "Latitude 7450"))
        #expect(!matches("Latitude 7?50", "Latitude 74500"))
        #expect(matches("/dev/nvme*", "/dev/nvme0n1"))
        #expect(!matches("/dev/nvme*", "/dev/sda"))
        #expect(matches("a*b*c", "aXXbYYc"))
        #expect(matches("a*b*c", "abc"))
        #expect(!matches("a*b*c", "acb"))
        #expect(matches("**a***", "xxaxx"))
        #expect(matches("?", "é"))
        #expect(!matches("??", "é"))
        // No escapes: a backslash is a character, as in Windows paths.
        #expect(matches(#"C:\Windows\*"#, #"C:\Windows\System32"#))
    }

    @Test func bracketsRangesAndNegation() {
        #expect(matches("sd[a-c]", "sdb"))
        #expect(!matches("sd[a-c]", "sdd"))
        #expect(matches("sd[abc]", "sdc"))
        #expect(matches("sd[!a]", "sdb"))
        #expect(!matches("sd[!a]", "sda"))
        #expect(matches("sd[^a]", "sdb"))
        #expect(!matches("sd[^a]", "sda"))
        #expect(matches("[0-9][0-9]", "42"))
        #expect(!matches("[0-9][0-9]", "4x"))
        // `]` first and `-` first or last are members; `[*]` is a literal star.
        #expect(matches("[]x]", "]"))
        #expect(matches("[!]x]", "y"))
        #expect(!matches("[!]x]", "]"))
        #expect(matches("[-a]", "-"))
        #expect(matches("[a-]", "-"))
        #expect(matches("a[*]b", "a*b"))
        #expect(!matches("a[*]b", "axb"))
        // A reversed range holds nothing; an unclosed `[` is literal. Neither traps.
        #expect(!matches("[z-a]", "m"))
        #expect(matches("a[b", "a[b"))
        #expect(!matches("a[b", "ab"))
        #expect(matches("[", "["))
    }

    @Test func caseRules() {
        #expect(matches("samsung*", "Samsung SSD 980", .caseInsensitive))
        #expect(!matches("samsung*", "Samsung SSD 980", .caseSensitive))
        #expect(matches("S4EV*", "S4EV123"))
        #expect(!matches("s4ev*", "S4EV123"))
        #expect(matches("[A-C]x", "bX", .caseInsensitive))
        #expect(!matches("[A-C]x", "bX", .caseSensitive))
        #expect(matches("WINDOWS", "Windows", .caseInsensitive))
        #expect(Glob("x", .caseInsensitive) != Glob("x", .caseSensitive))
        #expect(Glob("Model*", .caseInsensitive).pattern == "Model*")
    }

    /// The worst cases of backtracking matchers: each must take a moment, not minutes.
    @Test(.timeLimit(.minutes(1))) func pathologicalPatternsFinishFast() {
        let text = String(repeating: "a", count: 20_000)
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            #expect(!matches("*a*a*a*a*a*a*a*b", text))
            #expect(matches("*a*a*a*a*a*a*a*a", text))
            #expect(!matches(String(repeating: "*a", count: 50) + "b", text))
            #expect(!matches("*[!a]*", text))
            #expect(!matches(String(repeating: "?", count: 20_001), text))
        }
        #expect(elapsed < .seconds(5), "took \(elapsed)")
    }
}
