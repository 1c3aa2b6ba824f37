import Testing
import Protocol

@Suite(.timeLimit(.minutes(2))) struct HexTests {
    @Test func bytesBecomeTwoLowercaseDigitsEach() {
        #expect([UInt8]().hexString == "")
        #expect([0x00, 0x0f, 0xa0, 0xff].hexString == "000fa0ff")
    }
}
