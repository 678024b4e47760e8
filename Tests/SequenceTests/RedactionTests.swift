import Foundation
import SequenceModel
import Testing

/// The one redactor the agent and the server share: secret by name (patterns), hidden by value
/// (any length), in every text an event carries.
struct RedactionTests {
    @Test(arguments: ["AdminPwd", "AdminPassword", "adminpassword", "DomainJoinPassword", "JoinPasswd", "WifiPassphrase", "ClientSecret",
                      "ApiToken", "ServiceCredentials", "ProductKey", "SSHKey", "BitLockerRecoveryKey", "admin_pass", "AdminPass",
                      "SmartCardPIN", "PINCode", "pin", "LocalAdminPW", "WifiPSK", "KEY", "Api_Keys"])
    func secretNames(name: String) {
        #expect(SecretNames.looksSecret(name))
    }

    @Test(arguments: ["KeyboardLocale", "Keyboard", "Monkey", "Bypass", "Compass", "Passthrough", "Mapping", "Spinner", "Shipping",
                      "ComputerName", "ServerURL", "DeploymentID", "ImageFile", "TargetDisk", "Pinned", "Passive", "Keystone"])
    func ordinaryNames(name: String) {
        #expect(!SecretNames.looksSecret(name))
    }

    @Test func shortValuesAreHiddenToo() {
        let redactor = SecretRedactor(values: ["q7Z", "x", "hunter2"])
        #expect(redactor.redact("pin q7Z, again q7Z.") == "pin ********, again ********.")
        #expect(redactor.redact("x marks") == "******** marks")
        #expect(redactor.redact("nothing here") == "nothing here")
    }

    @Test func longerSecretsAreHiddenWholeAndMasksStay() {
        // `hunter` is inside `hunter2`: the longer one is taken whole at each position.
        let redactor = SecretRedactor(values: ["hunter", "hunter2", "*"])
        #expect(redactor.redact("hunter2 and hunter") == "******** and ********")
        // A secret `*` does not eat the masks it comes after.
        #expect(redactor.redact("a*b hunter") == "a********b ********")
    }

    @Test func escapedFormsAreHidden() {
        let redactor = SecretRedactor(values: ["Pa<ss>&Word\"42/"])
        #expect(redactor.redact("<Value>Pa&lt;ss&gt;&amp;Word&quot;42/</Value>") == "<Value>********</Value>")
        #expect(redactor.redact(#"{"password":"Pa<ss>&Word\"42\/"}"#) == #"{"password":"********"}"#)
        #expect(redactor.redact("raw Pa<ss>&Word\"42/") == "raw ********")
    }

    @Test func nonASCIIStaysValidText() {
        let redactor = SecretRedactor(values: ["é"])
        #expect(redactor.redact("café crème") == "caf******** crème")
        #expect(SecretRedactor(values: ["ü"]).redact("Grüße") == "Gr********ße")
    }

    @Test func emptyValuesHideNothing() {
        let redactor = SecretRedactor(values: ["", ""])
        #expect(redactor.isEmpty && redactor.redact("anything") == "anything")
    }

    @Test func eventsAreRedactedInTheirMessageAndName() {
        let redactor = SecretRedactor(values: ["s3c"])
        let event = Event(sequence: 1, kind: .stepStarted, step: "1", name: "join with s3c", message: "using s3c")
        let redacted = redactor.redact(event)
        #expect(redacted.name == "join with ********" && redacted.message == "using ********" && redacted.step == "1")
    }

    @Test func variablesRedactBySecretNamesAndTheList() {
        let variables = Variables(facts: [:], sequence: ["AdminPwd": "abc", "Site": "lab", "Code": "77"],
                                  server: ["ProductKey": "KEY-1"], secrets: ["Code"])
        #expect(variables.secretNames == ["AdminPwd", "ProductKey", "Code"])
        #expect(variables.redact("abc lab 77 KEY-1") == "******** lab ******** ********")
    }
}
