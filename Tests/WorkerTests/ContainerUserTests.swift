import Testing
@testable import Worker

/// The image's `USER` resolved as the engine resolves it.
@Suite(.timeLimit(.minutes(2))) struct ContainerUserTests {
    static let passwd = """
        root:x:0:0:root:/root:/bin/bash
        # a comment
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
        opschain:x:1000:1000::/home/opschain:/bin/bash
        deploy:x:1001:50::/home/deploy:/bin/sh
        """
    static let group = """
        root:x:0:
        staff:x:50:
        opschain:x:1000:
        """

    @Test func namesAndNumbersResolve() throws {
        #expect(try ContainerUser.resolve("", passwd: nil, group: nil) == .root)
        #expect(try ContainerUser.resolve("opschain", passwd: Self.passwd, group: Self.group) == ContainerUser(uid: 1000, gid: 1000))
        #expect(try ContainerUser.resolve("deploy", passwd: Self.passwd, group: Self.group) == ContainerUser(uid: 1001, gid: 50))
        #expect(try ContainerUser.resolve("deploy:opschain", passwd: Self.passwd, group: Self.group) == ContainerUser(uid: 1001, gid: 1000))
        #expect(try ContainerUser.resolve("1001", passwd: Self.passwd, group: Self.group) == ContainerUser(uid: 1001, gid: 50))
        #expect(try ContainerUser.resolve("4242", passwd: Self.passwd, group: Self.group) == ContainerUser(uid: 4242, gid: 0))
        #expect(try ContainerUser.resolve("4242:77", passwd: nil, group: nil) == ContainerUser(uid: 4242, gid: 77))
        #expect(try ContainerUser.resolve("opschain:staff", passwd: Self.passwd, group: Self.group) == ContainerUser(uid: 1000, gid: 50))
    }

    @Test func unknownNamesAreRefusedWithTheirText() {
        #expect(throws: ContainerUser.Unresolved(spec: "nobody-here", reason: "is not a user in the image's /etc/passwd")) {
            try ContainerUser.resolve("nobody-here", passwd: Self.passwd, group: Self.group)
        }
        #expect(throws: ContainerUser.Unresolved(spec: "opschain:wheel", reason: "names a group that is not in the image's /etc/group")) {
            try ContainerUser.resolve("opschain:wheel", passwd: Self.passwd, group: Self.group)
        }
        #expect(throws: ContainerUser.Unresolved(spec: "app", reason: "names a user but the image has no /etc/passwd")) {
            try ContainerUser.resolve("app", passwd: nil, group: nil)
        }
    }

    @Test func rootAndNumericSpecsAreJudgedFromTheText() {
        #expect(ContainerUser.namesRoot(""))
        #expect(ContainerUser.namesRoot("root"))
        #expect(ContainerUser.namesRoot("0:1000"))
        #expect(!ContainerUser.namesRoot("opschain"))
        #expect(!ContainerUser.namesRoot("1000"))
        #expect(ContainerUser.isNumeric("1000:1000"))
        #expect(ContainerUser.isNumeric(""))
        #expect(!ContainerUser.isNumeric("1000"))
        #expect(!ContainerUser.isNumeric("opschain:1000"))
    }
}
