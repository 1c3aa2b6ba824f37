import Foundation

#if canImport(Glibc)
    import Glibc
#endif
import Protocol

/// A step's OCI bundle configuration (`config.json`): the same isolation as the Docker path,
/// point by point — the image's user with no capabilities (six for root), no new
/// privileges, a seccomp filter refusing what Docker's default refuses, Docker's masked and
/// read-only `/proc` and `/sys` paths, memory / CPU / pids limits in a cgroup of its own, a
/// network namespace with only `lo`, and nothing of the host mounted.
struct OCIBundle: Sendable {
    var args: [String]
    var env: [String]
    var cwd: String
    var user: ContainerUser
    var additionalGids: [Int] = []
    var capabilities: [String]
    var limits: ContainerLimits
    var hostname: String
    /// `/stepfleet/<container id>`: under each controller (cgroup v1) or the unified root (v2).
    var cgroupsPath: String
    var cgroupV2: Bool
    var rootPath = "rootfs"

    /// Docker's masked paths (moby `oci/defaults.go`): unreadable in a step.
    static let maskedPaths = [
        "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
        "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
    ]
    /// Docker's read-only paths.
    static let readonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

    /// This process's open-file limit (a step cannot be given more than the worker has).
    static let openFiles: (soft: Int, hard: Int) = {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (1024, 4096) }
        let hard = limit.rlim_max == rlim_t.max ? 1_048_576 : Int(limit.rlim_max)
        let soft = limit.rlim_cur == rlim_t.max ? hard : Int(limit.rlim_cur)
        return (soft, hard)
    }()

    func config() -> JSON {
        let caps = JSON.array(capabilities.map { .string("CAP_" + $0) })
        var namespaces: [JSON] = [["type": "pid"], ["type": "network"], ["type": "ipc"], ["type": "uts"], ["type": "mount"]]
        if cgroupV2 { namespaces.append(["type": "cgroup"]) }
        let period = 100_000
        return [
            "ociVersion": "1.0.2",
            "process": [
                "terminal": false,
                "user": ["uid": JSON(user.uid), "gid": JSON(user.gid), "additionalGids": .array(additionalGids.map { JSON($0) })],
                "args": .array(args.map { .string($0) }),
                "env": .array(env.map { .string($0) }),
                "cwd": .string(cwd),
                "capabilities": ["bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []],
                "rlimits": [
                    // The worker's own open-file limit, as the engine passes on its own.
                    ["type": "RLIMIT_NOFILE", "hard": JSON(Self.openFiles.hard), "soft": JSON(Self.openFiles.soft)],
                    // No single file past the disk limit, as on the Docker path.
                    ["type": "RLIMIT_FSIZE", "hard": JSON(limits.diskBytes), "soft": JSON(limits.diskBytes)],
                ],
                "noNewPrivileges": true,
            ],
            "root": ["path": .string(rootPath), "readonly": false],
            "hostname": .string(hostname),
            "mounts": [
                ["destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]],
                ["destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]],
                [
                    "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                    "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
                ],
                ["destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]],
                ["destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]],
                ["destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]],
                ["destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]],
            ],
            "linux": [
                "namespaces": .array(namespaces),
                "cgroupsPath": .string(cgroupsPath),
                "resources": [
                    "devices": [["allow": false, "access": "rwm"]],
                    "memory": ["limit": JSON(limits.memoryBytes), "swap": JSON(limits.memoryBytes)],
                    "cpu": ["quota": JSON(Int(limits.cpus * Double(period))), "period": JSON(period)],
                    "pids": ["limit": JSON(limits.pids)],
                ],
                "maskedPaths": .array(Self.maskedPaths.map { .string($0) }),
                "readonlyPaths": .array(Self.readonlyPaths.map { .string($0) }),
                "seccomp": OCISeccomp.profile(),
            ],
        ]
    }
}

/// The seccomp filter of a step: every system call is allowed but those Docker's default
/// profile refuses to a container without extra capabilities, which fail with `EPERM`
/// (a deny list where Docker keeps an allow list: a kernel's new calls are allowed here).
enum OCISeccomp {
    /// Refused outright.
    static let refused = [
        // Mounting and file-system handles.
        "mount", "umount", "umount2", "mount_setattr", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "pivot_root", "chroot",
        "name_to_handle_at", "open_by_handle_at",
        // Namespaces.
        "unshare", "setns",
        // Kernel keyring.
        "keyctl", "add_key", "request_key",
        // BPF, perf, userfaultfd, io_uring.
        "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
        // Kernel modules and kexec, reboot.
        "init_module", "finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms", "kexec_load", "kexec_file_load",
        "reboot",
        // Other processes' memory.
        "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
        // Clocks, accounting, swap, quotas, I/O ports, old interfaces.
        "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime", "acct", "swapon", "swapoff", "quotactl", "quotactl_fd", "iopl", "ioperm",
        "syslog", "lookup_dcookie", "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old",
        // Memory policy (CAP_SYS_NICE in Docker's profile).
        "mbind", "set_mempolicy", "move_pages", "get_mempolicy",
    ]

    /// Namespace flags a `clone` may not carry.
    static let namespaceFlags: [UInt64] = [
        0x0002_0000,  // CLONE_NEWNS
        0x0200_0000,  // CLONE_NEWCGROUP
        0x0400_0000,  // CLONE_NEWUTS
        0x0800_0000,  // CLONE_NEWIPC
        0x1000_0000,  // CLONE_NEWUSER
        0x2000_0000,  // CLONE_NEWPID
        0x4000_0000,  // CLONE_NEWNET
        0x0000_0080,  // CLONE_NEWTIME
    ]

    static var architectures: [JSON] {
        #if arch(x86_64)
            return ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        #elseif arch(arm64)
            return ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
        #else
            return []
        #endif
    }

    static func profile() -> JSON {
        var syscalls: [JSON] = [
            ["names": .array(refused.map { .string($0) }), "action": "SCMP_ACT_ERRNO", "errnoRet": 1]
        ]
        // clone with a namespace flag: each flag a rule of its own (rules of one call are or-ed).
        for flag in namespaceFlags {
            syscalls.append([
                "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                "args": [["index": 0, "value": JSON(Int(flag)), "valueTwo": JSON(Int(flag)), "op": "SCMP_CMP_MASKED_EQ"]],
            ])
        }
        // clone3's flags are behind a pointer seccomp cannot read: say it does not exist, and
        // the C library falls back to clone, whose flags are checked above (as Docker does).
        syscalls.append(["names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38])
        return ["defaultAction": "SCMP_ACT_ALLOW", "architectures": .array(architectures), "syscalls": .array(syscalls)]
    }
}
