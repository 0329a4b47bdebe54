//! cgroup v2 device access rules (`linux.resources.devices`) as an eBPF program, with runc's
//! semantics.
//!
//! cgroup v2 has no `devices.allow` / `devices.deny` files: a `BPF_PROG_TYPE_CGROUP_DEVICE`
//! program attached to the cgroup decides every open and mknod of a device node. Like runc,
//! the rules are first run through an emulation of the cgroup v1 devices controller (a
//! default verdict plus exceptions, see [`effective_rules`]), and the program tests the
//! exceptions one after another, returning the default when none matches (see [`program`]).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;

use super::config::DeviceRule;

/// `BPF_DEVCG_ACC_MKNOD`: the access bit of mknod (`m`).
const ACC_MKNOD: u32 = 1;
/// `BPF_DEVCG_ACC_READ`: the access bit of opening for reading (`r`).
const ACC_READ: u32 = 2;
/// `BPF_DEVCG_ACC_WRITE`: the access bit of opening for writing (`w`).
const ACC_WRITE: u32 = 4;
/// `rwm`.
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// The device types of the program's context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `b`: `BPF_DEVCG_DEV_BLOCK`.
    Block = 1,
    /// `c`: `BPF_DEVCG_DEV_CHAR`.
    Char = 2,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Block => 'b',
            Kind::Char => 'c',
        }
    }
}

/// A rule with its fields checked; `kind: None` is type `a`, numbers `None` are wildcards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rule {
    allow: bool,
    kind: Option<Kind>,
    major: Option<u32>,
    minor: Option<u32>,
    access: u32,
}

/// runc's default devices, allowed after the configured rules.
const DEFAULT_RULES: [(Kind, Option<u32>, Option<u32>, u32); 10] = [
    (Kind::Char, None, None, ACC_MKNOD), // mknod of any character device
    (Kind::Block, None, None, ACC_MKNOD), // mknod of any block device
    (Kind::Char, Some(1), Some(3), ACC_ALL), // /dev/null
    (Kind::Char, Some(1), Some(8), ACC_ALL), // /dev/random
    (Kind::Char, Some(1), Some(7), ACC_ALL), // /dev/full
    (Kind::Char, Some(5), Some(0), ACC_ALL), // /dev/tty
    (Kind::Char, Some(1), Some(5), ACC_ALL), // /dev/zero
    (Kind::Char, Some(1), Some(9), ACC_ALL), // /dev/urandom
    (Kind::Char, Some(136), None, ACC_ALL), // /dev/pts/*
    (Kind::Char, Some(5), Some(2), ACC_ALL), // /dev/ptmx
];

/// An exception of the emulated cgroup: devices whose listed accesses get the opposite of
/// the default verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Exception {
    kind: Kind,
    major: Option<u32>,
    minor: Option<u32>,
    access: u32,
}

impl Exception {
    /// Whether this exception covers `access` (a set of bits) to the device.
    #[cfg(test)]
    fn matches(&self, kind: Kind, major: u32, minor: u32, access: u32) -> bool {
        self.kind == kind
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
            && access & !self.access == 0
    }

    fn same_device(&self, kind: Kind, major: Option<u32>, minor: Option<u32>) -> bool {
        self.kind == kind && self.major == major && self.minor == minor
    }
}

impl std::fmt::Display for Exception {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let number = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        write!(
            f,
            "{} {}:{} {}",
            self.kind.letter(),
            number(self.major),
            number(self.minor),
            access_letters(self.access)
        )
    }
}

fn access_letters(access: u32) -> String {
    [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')]
        .iter()
        .filter(|(bit, _)| access & bit != 0)
        .map(|(_, c)| c)
        .collect()
}

/// The state of a cgroup v1 devices controller after the rules: a default verdict and the
/// exceptions to it.
#[derive(Debug, PartialEq, Eq)]
struct Emulated {
    default_allow: bool,
    exceptions: Vec<Exception>,
}

impl Emulated {
    /// Apply one rule as cgroup v1 (and runc's emulator) would.
    fn apply(&mut self, rule: &Rule) -> Result<(), String> {
        let Some(kind) = rule.kind else {
            // Type `a` switches the mode and forgets every exception.
            *self = Emulated {
                default_allow: rule.allow,
                exceptions: Vec::new(),
            };
            return Ok(());
        };
        let wanted = Exception {
            kind,
            major: rule.major,
            minor: rule.minor,
            access: rule.access,
        };
        if rule.allow != self.default_allow {
            match self
                .exceptions
                .iter_mut()
                .find(|e| e.same_device(kind, rule.major, rule.minor))
            {
                Some(e) => e.access |= rule.access,
                None => self.exceptions.push(wanted),
            }
            return Ok(());
        }
        // A rule agreeing with the default removes accesses from the exception for exactly
        // this device. cgroup v1 silently keeps a wider wildcard exception covering them;
        // runc refuses the rule instead, and so does this.
        for (major, minor) in [(None, rule.minor), (rule.major, None), (None, None)] {
            if (major, minor) == (rule.major, rule.minor) {
                continue;
            }
            if let Some(e) = self
                .exceptions
                .iter()
                .find(|e| e.same_device(kind, major, minor) && e.access & rule.access != 0)
            {
                let verb = if rule.allow { "allow" } else { "deny" };
                return Err(format!(
                    "{verb} {wanted} cannot punch a hole in the wildcard exception {e}"
                ));
            }
        }
        if let Some(i) = self
            .exceptions
            .iter()
            .position(|e| e.same_device(kind, rule.major, rule.minor))
        {
            self.exceptions[i].access &= !rule.access;
            if self.exceptions[i].access == 0 {
                self.exceptions.remove(i);
            }
        }
        Ok(())
    }

    /// The verdict for `access` to a device, straight from the exceptions.
    #[cfg(test)]
    fn allows(&self, kind: Kind, major: u32, minor: u32, access: u32) -> bool {
        let excepted = self
            .exceptions
            .iter()
            .any(|e| e.matches(kind, major, minor, access));
        self.default_allow != excepted
    }
}

/// Check one configured rule.
fn parse(rule: &DeviceRule) -> Result<Rule, String> {
    let kind = match rule.kind.as_deref() {
        None | Some("" | "a") => None,
        Some("b") => Some(Kind::Block),
        Some("c") => Some(Kind::Char),
        Some(other) => return Err(format!("type {other:?} is not a, b or c")),
    };
    let number = |what: &str, n: Option<i64>| match n {
        None | Some(-1) => Ok(None),
        // The program compares with 32-bit immediates; real numbers are 12 (major) and 20
        // (minor) bits.
        Some(n) => match i32::try_from(n) {
            Ok(n) if n >= 0 => Ok(Some(n.unsigned_abs())),
            _ => Err(format!("{what} number {n} is out of range")),
        },
    };
    let major = number("major", rule.major)?;
    let minor = number("minor", rule.minor)?;
    let access = match rule.access.as_deref() {
        None | Some("") => ACC_ALL,
        Some(letters) => letters.chars().try_fold(0, |bits, c| match c {
            'r' => Ok(bits | ACC_READ),
            'w' => Ok(bits | ACC_WRITE),
            'm' => Ok(bits | ACC_MKNOD),
            _ => Err(format!("access {letters:?} is not made of r, w and m")),
        })?,
    };
    Ok(Rule {
        allow: rule.allow,
        kind,
        major,
        minor,
        access,
    })
}

/// The configured rules, then runc's defaults, through the cgroup v1 emulation: starting from
/// "deny everything".
fn effective_rules(rules: &[DeviceRule]) -> Result<Emulated, String> {
    let mut emulated = Emulated {
        default_allow: false,
        exceptions: Vec::new(),
    };
    for (i, rule) in rules.iter().enumerate() {
        parse(rule)
            .and_then(|r| emulated.apply(&r))
            .map_err(|e| format!("linux.resources.devices[{i}]: {e}"))?;
    }
    for (kind, major, minor, access) in DEFAULT_RULES {
        let rule = Rule {
            allow: true,
            kind: Some(kind),
            major,
            minor,
            access,
        };
        emulated
            .apply(&rule)
            .map_err(|e| format!("runc's default devices: {e}"))?;
    }
    Ok(emulated)
}

// ---------------------------------------------------------------------------------------
// eBPF instruction encoding (include/uapi/linux/bpf.h, bpf_common.h).
//
// An instruction is 8 bytes: opcode, destination and source registers (4 bits each), a
// signed 16-bit offset (jumps: instructions to skip) and a signed 32-bit immediate. The
// opcode is class | size | mode for loads and class | operation | source for ALU and jumps.
// Only what `program` emits is here.

/// Class: load into a register from memory.
const BPF_LDX: u8 = 0x01;
/// Class: 32-bit arithmetic (the upper half of the destination is zeroed).
const BPF_ALU: u8 = 0x04;
/// Class: 64-bit jumps.
const BPF_JMP: u8 = 0x05;
/// Load size: 32-bit word.
const BPF_W: u8 = 0x00;
/// Load mode: from `[src + off]`.
const BPF_MEM: u8 = 0x60;
/// Operand: the immediate.
const BPF_K: u8 = 0x00;
/// Operand: the source register.
const BPF_X: u8 = 0x08;
/// ALU operation: `dst &= operand`.
const BPF_AND: u8 = 0x50;
/// ALU operation: `dst >>= operand` (logical).
const BPF_RSH: u8 = 0x70;
/// ALU operation: `dst = operand`.
const BPF_MOV: u8 = 0xb0;
/// Jump operation: `if dst != operand goto pc + 1 + off`.
const BPF_JNE: u8 = 0x50;
/// Jump operation: return `r0`.
const BPF_EXIT: u8 = 0x90;

/// Return value (the verdict: 1 allows, 0 denies).
const R0: u8 = 0;
/// The context (`struct bpf_cgroup_dev_ctx *`) on entry; a scratch register after.
const R1: u8 = 1;
/// Device type.
const R2: u8 = 2;
/// Requested access bits.
const R3: u8 = 3;
/// Major number.
const R4: u8 = 4;
/// Minor number.
const R5: u8 = 5;

/// `struct bpf_cgroup_dev_ctx` field offsets: `access_type` (`access << 16 | type`),
/// `major`, `minor`, each a `u32`.
const CTX_ACCESS_TYPE: i16 = 0;
/// See [`CTX_ACCESS_TYPE`].
const CTX_MAJOR: i16 = 4;
/// See [`CTX_ACCESS_TYPE`].
const CTX_MINOR: i16 = 8;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Insn {
    code: u8,
    /// `dst_reg:4, src_reg:4` as C bitfields lay them out.
    regs: u8,
    off: i16,
    imm: i32,
}

const _: () = assert!(size_of::<Insn>() == 8);

impl Insn {
    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        // Bitfields fill from the least significant bit on little-endian machines and from
        // the most significant one on big-endian ones.
        let regs = if cfg!(target_endian = "little") {
            (src << 4) | (dst & 0xf)
        } else {
            (dst << 4) | (src & 0xf)
        };
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }

    /// `dst = *(u32 *)(src + off)`.
    fn load_word(dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(BPF_LDX | BPF_W | BPF_MEM, dst, src, off, 0)
    }

    /// `dst = (u32)dst OP imm` for `BPF_AND`, `BPF_RSH`, `BPF_MOV` (then `dst = imm`).
    fn alu32_imm(op: u8, dst: u8, imm: i32) -> Insn {
        Insn::new(BPF_ALU | op | BPF_K, dst, 0, 0, imm)
    }

    /// `dst = (u32)src`.
    fn mov32_reg(dst: u8, src: u8) -> Insn {
        Insn::new(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)
    }

    /// `if dst != imm goto pc + 1 + off`.
    fn jne_imm(dst: u8, imm: i32, off: i16) -> Insn {
        Insn::new(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm)
    }

    /// `return r0`.
    fn exit() -> Insn {
        Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
    }
}

// ---------------------------------------------------------------------------------------

/// The device program for `emulated`:
///
/// ```text
///   r2 = ctx->access_type & 0xffff      ; type
///   r3 = ctx->access_type >> 16         ; requested access
///   r4 = ctx->major
///   r5 = ctx->minor
/// per exception:
///   if r2 != TYPE goto next
///   r1 = r3; r1 &= ~ACCESS & 0xffff; if r1 != 0 goto next   (unless ACCESS is rwm)
///   if r4 != MAJOR goto next                                (unless a wildcard)
///   if r5 != MINOR goto next                                (unless a wildcard)
///   r0 = !DEFAULT; exit
/// next: ...
///   r0 = DEFAULT; exit
/// ```
fn program(emulated: &Emulated) -> Vec<Insn> {
    let verdict = |allow: bool| i32::from(allow);
    let mut insns = vec![
        Insn::load_word(R2, R1, CTX_ACCESS_TYPE),
        Insn::alu32_imm(BPF_AND, R2, 0xffff),
        Insn::load_word(R3, R1, CTX_ACCESS_TYPE),
        Insn::alu32_imm(BPF_RSH, R3, 16),
        Insn::load_word(R4, R1, CTX_MAJOR),
        Insn::load_word(R5, R1, CTX_MINOR),
    ];
    for e in &emulated.exceptions {
        // Jumps are emitted with offset 0, then pointed past the end of the block.
        // Numbers were checked to fit in an i32 (`parse`).
        let mut block = vec![Insn::jne_imm(R2, e.kind as i32, 0)];
        if e.access != ACC_ALL {
            // Requested bits outside the exception's (or outside rwm): no match.
            block.extend([
                Insn::mov32_reg(R1, R3),
                Insn::alu32_imm(BPF_AND, R1, (0xffff & !e.access) as i32),
                Insn::jne_imm(R1, 0, 0),
            ]);
        }
        block.extend(e.major.map(|m| Insn::jne_imm(R4, m as i32, 0)));
        block.extend(e.minor.map(|m| Insn::jne_imm(R5, m as i32, 0)));
        block.extend([
            Insn::alu32_imm(BPF_MOV, R0, verdict(!emulated.default_allow)),
            Insn::exit(),
        ]);
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if insn.code == BPF_JMP | BPF_JNE | BPF_K {
                // At most 8 instructions: it fits.
                insn.off = (len - i - 1) as i16;
            }
        }
        insns.extend(block);
    }
    insns.push(Insn::alu32_imm(
        BPF_MOV,
        R0,
        verdict(emulated.default_allow),
    ));
    insns.push(Insn::exit());
    insns
}

// ---------------------------------------------------------------------------------------
// The bpf(2) system call.

/// `BPF_PROG_LOAD` command.
const BPF_PROG_LOAD: libc::c_int = 5;
/// `BPF_PROG_ATTACH` command.
const BPF_PROG_ATTACH: libc::c_int = 8;
/// `BPF_PROG_TYPE_CGROUP_DEVICE`.
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `BPF_CGROUP_DEVICE` attach type.
const BPF_CGROUP_DEVICE: u32 = 6;
/// `BPF_F_ALLOW_MULTI`: keep other programs attached to the cgroup (all must allow).
const BPF_F_ALLOW_MULTI: u32 = 2;
/// Verifier log size when a load failed.
const LOG_SIZE: usize = 256 * 1024;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`, up to `replace_bpf_fd`.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Load `insns` as a device program; with a `log`, the verifier writes its log there.
#[allow(unsafe_code)]
fn prog_load(insns: &[Insn], log: Option<&mut [u8]>) -> Result<OwnedFd, Errno> {
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..15].copy_from_slice(b"osbuild_devices");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| Errno::E2BIG)?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..ProgLoadAttr::default()
    };
    if let Some(log) = log {
        attr.log_level = 1;
        attr.log_size = u32::try_from(log.len()).map_err(|_| Errno::E2BIG)?;
        attr.log_buf = log.as_mut_ptr() as u64;
    }
    // SAFETY: `attr` is a zero-filled prefix of `union bpf_attr` of the size passed. The
    // kernel reads `insn_cnt` instructions from `insns` and the NUL-terminated `license`,
    // and writes at most `log_size` bytes to `log_buf`: all borrowed for this call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &raw mut attr,
            size_of::<ProgLoadAttr>() as libc::c_uint,
        )
    };
    let fd = Errno::result(fd)?;
    let fd = libc::c_int::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: a successful BPF_PROG_LOAD returns a new file descriptor this process owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attach the device program `prog` to the cgroup directory `cgroup`.
#[allow(unsafe_code)]
fn prog_attach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> Result<(), Errno> {
    let fd = |fd: BorrowedFd<'_>| u32::try_from(fd.as_raw_fd()).map_err(|_| Errno::EBADF);
    let mut attr = ProgAttachAttr {
        target_fd: fd(cgroup)?,
        attach_bpf_fd: fd(prog)?,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..ProgAttachAttr::default()
    };
    // SAFETY: `attr` is a zero-filled prefix of `union bpf_attr` of the size passed, holding
    // two open descriptors; the kernel only reads it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &raw mut attr,
            size_of::<ProgAttachAttr>() as libc::c_uint,
        )
    };
    Errno::result(r).map(drop)
}

/// The verifier's reason in its log: the last non-empty line, the statistics line after it
/// ("processed N insns ...") aside.
fn last_log_line(log: &[u8]) -> String {
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    String::from_utf8_lossy(&log[..end])
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("processed "))
        .unwrap_or_default()
        .to_string()
}

/// Load `insns`; on failure, load them again for the verifier's log and report its last line.
fn load(insns: &[Insn]) -> Result<OwnedFd, String> {
    prog_load(insns, None).or_else(|_| {
        let mut log = vec![0u8; LOG_SIZE];
        prog_load(insns, Some(&mut log)).map_err(|e| {
            let reason = last_log_line(&log);
            if reason.is_empty() {
                format!("BPF_PROG_LOAD: {}", e.desc())
            } else {
                format!("BPF_PROG_LOAD: {} (verifier: {reason})", e.desc())
            }
        })
    })
}

/// Enforce `rules` (`linux.resources.devices`, runc's semantics, runc's default devices
/// appended) on the cgroup v2 directory `cgroup`: a device program is loaded and attached to
/// it alongside any already there (`BPF_F_ALLOW_MULTI`: every one must allow an access).
pub fn apply(cgroup: &Path, rules: &[DeviceRule]) -> Result<(), String> {
    let context = |e: String| format!("device rules for {}: {e}", cgroup.display());
    let insns = program(&effective_rules(rules).map_err(context)?);
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(cgroup)
        .map_err(|e| context(format!("open: {e}")))?;
    let prog = load(&insns).map_err(context)?;
    // The attachment holds the program: `prog` may be closed.
    prog_attach(dir.as_fd(), prog.as_fd())
        .map_err(|e| context(format!("BPF_PROG_ATTACH: {}", e.desc())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `linux.resources.devices` entry.
    fn rule(allow: bool, kind: &str, major: i64, minor: i64, access: &str) -> DeviceRule {
        DeviceRule {
            allow,
            kind: Some(kind.to_string()),
            major: Some(major),
            minor: Some(minor),
            access: Some(access.to_string()),
        }
    }

    /// A rule of the emulator (`kind` `a`, `b` or `c`, -1 for wildcards).
    fn parsed(allow: bool, kind: &str, major: i64, minor: i64, access: &str) -> Rule {
        parse(&rule(allow, kind, major, minor, access)).unwrap()
    }

    fn bits(access: &str) -> u32 {
        parse(&rule(true, "c", 0, 0, access)).unwrap().access
    }

    fn dst_src(insn: &Insn) -> (usize, usize) {
        let (lo, hi) = (usize::from(insn.regs & 0xf), usize::from(insn.regs >> 4));
        if cfg!(target_endian = "little") {
            (lo, hi)
        } else {
            (hi, lo)
        }
    }

    /// Run `insns` on a `struct bpf_cgroup_dev_ctx`: an interpreter of exactly what
    /// `program` emits. Registers that point to the context are tracked, as the verifier
    /// does; jumps must go forward and stay in the program.
    fn run(insns: &[Insn], kind: Kind, major: u32, minor: u32, access: u32) -> bool {
        let mut ctx = Vec::new();
        ctx.extend(((access << 16) | kind as u32).to_ne_bytes());
        ctx.extend(major.to_ne_bytes());
        ctx.extend(minor.to_ne_bytes());
        let mut reg = [0u64; 11];
        let mut is_ctx = [false; 11];
        is_ctx[usize::from(R1)] = true;
        let mut pc = 0;
        loop {
            let insn = insns.get(pc).expect("ran off the end of the program");
            let (dst, src) = dst_src(insn);
            let imm = insn.imm;
            pc += 1;
            match insn.code {
                c if c == BPF_LDX | BPF_W | BPF_MEM => {
                    assert!(is_ctx[src], "load through a non-context register");
                    let at =
                        usize::try_from(i64::try_from(reg[src]).unwrap() + i64::from(insn.off))
                            .unwrap();
                    reg[dst] = u64::from(u32::from_ne_bytes(ctx[at..at + 4].try_into().unwrap()));
                }
                c if c == BPF_ALU | BPF_AND | BPF_K => {
                    reg[dst] = u64::from(reg[dst] as u32 & imm as u32);
                }
                c if c == BPF_ALU | BPF_RSH | BPF_K => {
                    assert!((0..32).contains(&imm));
                    reg[dst] = u64::from(reg[dst] as u32 >> imm);
                }
                c if c == BPF_ALU | BPF_MOV | BPF_K => reg[dst] = u64::from(imm as u32),
                c if c == BPF_ALU | BPF_MOV | BPF_X => {
                    assert!(!is_ctx[src], "pointer copied into arithmetic");
                    reg[dst] = u64::from(reg[src] as u32);
                }
                c if c == BPF_JMP | BPF_JNE | BPF_K => {
                    assert!(insn.off >= 0, "backward jump");
                    if reg[dst] != i64::from(imm) as u64 {
                        pc += usize::try_from(insn.off).unwrap();
                    }
                    continue;
                }
                c if c == BPF_JMP | BPF_EXIT => {
                    assert!(reg[0] <= 1, "verdict {}", reg[0]);
                    return reg[0] == 1;
                }
                c => panic!("unexpected opcode {c:#x}"),
            }
            is_ctx[dst] = false;
        }
    }

    /// Compile `rules`, check the program against the emulated rules over a grid of
    /// devices and accesses, and return both.
    fn compile(rules: &[DeviceRule]) -> (Emulated, Vec<Insn>) {
        let emulated = effective_rules(rules).unwrap();
        let insns = program(&emulated);
        for kind in [Kind::Block, Kind::Char] {
            for major in [1, 4, 5, 136, 204, 229, 253] {
                for minor in [0, 1, 3, 5, 11, 64] {
                    for access in 1..=ACC_ALL {
                        assert_eq!(
                            run(&insns, kind, major, minor, access),
                            emulated.allows(kind, major, minor, access),
                            "{} {major}:{minor} {}",
                            kind.letter(),
                            access_letters(access)
                        );
                    }
                }
            }
        }
        (emulated, insns)
    }

    /// The program's verdict on `access` to `kind major:minor`.
    fn allowed(insns: &[Insn], kind: Kind, major: u32, minor: u32, access: &str) -> bool {
        run(insns, kind, major, minor, bits(access))
    }

    #[test]
    fn defaults_only() {
        let (emulated, p) = compile(&[]);
        assert!(!emulated.default_allow);
        assert_eq!(emulated.exceptions.len(), DEFAULT_RULES.len());
        assert!(allowed(&p, Kind::Char, 1, 3, "rw"));
        assert!(allowed(&p, Kind::Char, 1, 5, "r"));
        assert!(allowed(&p, Kind::Char, 136, 7, "rw"));
        assert!(allowed(&p, Kind::Char, 5, 2, "rw"));
        assert!(!allowed(&p, Kind::Char, 1, 11, "w"));
        assert!(!allowed(&p, Kind::Block, 253, 0, "r"));
        assert!(allowed(&p, Kind::Char, 1, 11, "m"));
        assert!(allowed(&p, Kind::Block, 253, 0, "m"));
        assert!(allowed(&p, Kind::Char, 204, 64, "m"));
        // Accesses are matched against one exception at a time.
        assert!(!allowed(&p, Kind::Char, 1, 11, "rm"));
    }

    #[test]
    fn deny_all_then_allow_one_access() {
        let deny_all = DeviceRule {
            access: Some("rwm".into()),
            ..DeviceRule::default()
        };
        let (_, p) = compile(&[deny_all, rule(true, "c", 1, 11, "w")]);
        assert!(allowed(&p, Kind::Char, 1, 11, "w"));
        assert!(!allowed(&p, Kind::Char, 1, 11, "r"));
        assert!(!allowed(&p, Kind::Char, 1, 11, "rw"));
        assert!(allowed(&p, Kind::Char, 1, 3, "rw"));
        assert!(!allowed(&p, Kind::Char, 4, 1, "w"));
    }

    #[test]
    fn allow_all() {
        let all = DeviceRule {
            allow: true,
            kind: Some("a".into()),
            ..DeviceRule::default()
        };
        let (emulated, p) = compile(&[all]);
        assert_eq!(
            emulated,
            Emulated {
                default_allow: true,
                exceptions: Vec::new()
            }
        );
        // The prologue, then "allow".
        assert_eq!(p.len(), 8);
        assert!(allowed(&p, Kind::Block, 8, 0, "rwm"));
        assert!(allowed(&p, Kind::Char, 1, 11, "rw"));
    }

    #[test]
    fn allow_all_then_deny_a_major() {
        let all = DeviceRule {
            allow: true,
            ..DeviceRule::default()
        };
        let (emulated, p) = compile(&[all, rule(false, "b", 253, -1, "rwm")]);
        assert!(emulated.default_allow);
        assert_eq!(emulated.exceptions.len(), 1);
        assert!(!allowed(&p, Kind::Block, 253, 0, "r"));
        assert!(!allowed(&p, Kind::Block, 253, 64, "m"));
        assert!(allowed(&p, Kind::Block, 254, 0, "rw"));
        assert!(allowed(&p, Kind::Char, 253, 0, "rw"));
    }

    #[test]
    fn linuxkit_all_block_devices() {
        // LinuxKit's `devices: [{path: all, type: b}]`.
        let block = DeviceRule {
            allow: true,
            kind: Some("b".into()),
            access: Some("rwm".into()),
            ..DeviceRule::default()
        };
        let (_, p) = compile(&[block]);
        for (major, minor) in [(8, 0), (253, 3), (259, 1)] {
            assert!(allowed(&p, Kind::Block, major, minor, "rwm"));
        }
        assert!(!allowed(&p, Kind::Char, 4, 64, "r"));
        assert!(allowed(&p, Kind::Char, 1, 9, "r"));
    }

    #[test]
    fn access_is_a_subset() {
        let (_, p) = compile(&[rule(true, "c", 4, 64, "r")]);
        assert!(allowed(&p, Kind::Char, 4, 64, "r"));
        assert!(!allowed(&p, Kind::Char, 4, 64, "rw"));
        assert!(!allowed(&p, Kind::Char, 4, 64, "w"));
        assert!(allowed(&p, Kind::Char, 4, 64, "m"));
        assert!(!allowed(&p, Kind::Char, 4, 65, "r"));
    }

    #[test]
    fn emulator_resets_on_type_a() {
        let mut e = Emulated {
            default_allow: false,
            exceptions: Vec::new(),
        };
        e.apply(&parsed(true, "c", 1, 3, "rwm")).unwrap();
        assert_eq!(e.exceptions.len(), 1);
        // Numbers do not matter with type a.
        e.apply(&parsed(true, "a", 1, 3, "r")).unwrap();
        assert!(e.default_allow && e.exceptions.is_empty());
        e.apply(&parsed(false, "b", 8, -1, "rw")).unwrap();
        assert_eq!(
            e.exceptions,
            [Exception {
                kind: Kind::Block,
                major: Some(8),
                minor: None,
                access: ACC_READ | ACC_WRITE
            }]
        );
        e.apply(&parsed(false, "a", -1, -1, "rwm")).unwrap();
        assert!(!e.default_allow && e.exceptions.is_empty());
    }

    #[test]
    fn emulator_merges_and_removes() {
        let mut e = Emulated {
            default_allow: false,
            exceptions: Vec::new(),
        };
        e.apply(&parsed(true, "c", 1, 3, "rw")).unwrap();
        e.apply(&parsed(true, "c", 1, 3, "m")).unwrap();
        e.apply(&parsed(true, "c", 1, 5, "r")).unwrap();
        assert_eq!(e.exceptions.len(), 2);
        assert_eq!(e.exceptions[0].access, ACC_ALL);
        // Removal needs the very same device: a wildcard or another number is no match.
        e.apply(&parsed(false, "c", 1, -1, "rwm")).unwrap();
        e.apply(&parsed(false, "b", 1, 3, "rwm")).unwrap();
        assert_eq!(e.exceptions.len(), 2);
        e.apply(&parsed(false, "c", 1, 3, "w")).unwrap();
        assert_eq!(e.exceptions[0].access, ACC_READ | ACC_MKNOD);
        e.apply(&parsed(false, "c", 1, 3, "rm")).unwrap();
        assert_eq!(
            e.exceptions,
            [Exception {
                kind: Kind::Char,
                major: Some(1),
                minor: Some(5),
                access: ACC_READ
            }]
        );
    }

    #[test]
    fn emulator_refuses_holes_in_wildcards() {
        let mut e = Emulated {
            default_allow: true,
            exceptions: Vec::new(),
        };
        e.apply(&parsed(false, "c", -1, -1, "rw")).unwrap();
        // No overlap with the wildcard's accesses: fine (and nothing to remove).
        e.apply(&parsed(true, "c", 1, 3, "m")).unwrap();
        let err = e.apply(&parsed(true, "c", 1, 3, "r")).unwrap_err();
        assert_eq!(
            err,
            "allow c 1:3 r cannot punch a hole in the wildcard exception c *:* rw"
        );
        // So a configuration runc refuses is refused here too.
        let all = DeviceRule {
            allow: true,
            ..DeviceRule::default()
        };
        let err = effective_rules(&[all, rule(false, "c", -1, -1, "rwm")]).unwrap_err();
        assert!(
            err.starts_with("runc's default devices: allow c 1:3 rwm cannot"),
            "{err}"
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        let cases = [
            (rule(true, "u", 1, 3, "r"), "type \"u\" is not a, b or c"),
            (
                rule(true, "c", -2, 3, "r"),
                "major number -2 is out of range",
            ),
            (
                rule(true, "c", 1, 1 << 31, "r"),
                "minor number 2147483648 is out of range",
            ),
            (
                rule(true, "c", 1, 3, "rx"),
                "access \"rx\" is not made of r, w and m",
            ),
        ];
        for (r, message) in cases {
            let err = effective_rules(&[DeviceRule::default(), r]).unwrap_err();
            assert_eq!(err, format!("linux.resources.devices[1]: {message}"));
        }
        let err = apply(Path::new("/nonexistent"), &[rule(true, "x", 1, 3, "r")]).unwrap_err();
        assert_eq!(
            err,
            "device rules for /nonexistent: linux.resources.devices[0]: type \"x\" is not a, b or c"
        );
    }

    #[test]
    fn rules_parse_from_json() {
        let rules: Vec<DeviceRule> = serde_json::from_str(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rw"},
            {"allow":true,"type":"b","major":-1}]"#,
        )
        .unwrap();
        assert_eq!(parsed(false, "a", -1, -1, ""), parse(&rules[0]).unwrap());
        assert_eq!(parsed(true, "c", 1, 3, "rw"), parse(&rules[1]).unwrap());
        assert_eq!(
            parse(&rules[2]).unwrap(),
            Rule {
                allow: true,
                kind: Some(Kind::Block),
                major: None,
                minor: None,
                access: ACC_ALL
            }
        );
    }

    #[test]
    fn instruction_encoding() {
        let bytes = |i: Insn| {
            let mut b = vec![i.code, i.regs];
            b.extend(i.off.to_ne_bytes());
            b.extend(i.imm.to_ne_bytes());
            b
        };
        // As the kernel's BPF_LDX_MEM(BPF_W, BPF_REG_2, BPF_REG_1, 4), BPF_JMP_IMM(BPF_JNE,
        // BPF_REG_2, 2, 3) and BPF_EXIT_INSN() encode (little-endian).
        if cfg!(target_endian = "little") {
            assert_eq!(
                bytes(Insn::load_word(R2, R1, 4)),
                [0x61, 0x12, 4, 0, 0, 0, 0, 0]
            );
            assert_eq!(
                bytes(Insn::jne_imm(R2, 2, 3)),
                [0x55, 0x02, 3, 0, 2, 0, 0, 0]
            );
            assert_eq!(
                bytes(Insn::mov32_reg(R1, R3)),
                [0xbc, 0x31, 0, 0, 0, 0, 0, 0]
            );
        }
        assert_eq!(Insn::exit().code, 0x95);
        assert_eq!(Insn::alu32_imm(BPF_MOV, R0, 1).code, 0xb4);
        assert_eq!(Insn::alu32_imm(BPF_AND, R2, 0xffff).code, 0x54);
        assert_eq!(Insn::alu32_imm(BPF_RSH, R3, 16).code, 0x74);
    }

    #[test]
    fn program_layout() {
        let (_, p) = compile(&[rule(true, "c", 4, 64, "r"), rule(true, "c", 10, -1, "rwm")]);
        // Prologue 6; c 4:64 r: type, 3 for access, major, minor, verdict 2; c 10:* rwm:
        // type, major, verdict 2; the defaults (8 with both numbers: 5 each, 3 wildcards:
        // 4 or 6); the default verdict 2.
        let defaults = 7 * 5 + 6 + 6 + 4;
        assert_eq!(p.len(), 6 + 8 + 4 + defaults + 2);
        for (i, insn) in p.iter().enumerate() {
            if insn.code == BPF_JMP | BPF_JNE | BPF_K {
                let target = i + 1 + usize::try_from(insn.off).unwrap();
                assert!(target < p.len());
                // Every jump lands on the first instruction of a block: an exception's type
                // check or the default verdict.
                assert!(
                    p[target] == Insn::jne_imm(R2, p[target].imm, p[target].off)
                        || target == p.len() - 2,
                    "{i}: {insn:?}"
                );
            }
        }
        assert_eq!(p.last(), Some(&Insn::exit()));
    }

    #[test]
    fn verifier_log_reason() {
        let log = b"0: (95) exit\nR0 !read_ok\nprocessed 1 insns (limit 1000000) max_states_per_insn 0\n\0\0";
        assert_eq!(last_log_line(log), "R0 !read_ok");
        assert_eq!(last_log_line(b"\0"), "");
    }

    /// The verifier's complaint reaches the error (root and bpf(2) needed).
    #[test]
    #[ignore = "needs root"]
    fn verifier_reason_is_reported() {
        // r0 is never set.
        let err = load(&[Insn::exit()]).unwrap_err();
        assert_eq!(
            err,
            "BPF_PROG_LOAD: Permission denied (verifier: R0 !read_ok)"
        );
    }

    /// The kernel's verifier accepts every shape of program (root and bpf(2) needed).
    #[test]
    #[ignore = "needs root"]
    fn the_verifier_accepts_the_programs() {
        let all = DeviceRule {
            allow: true,
            ..DeviceRule::default()
        };
        let lists = [
            vec![],
            vec![all.clone()],
            vec![
                all,
                rule(false, "b", 253, -1, "rwm"),
                rule(false, "c", 1, 11, "w"),
            ],
            vec![rule(true, "b", -1, -1, "rwm"), rule(true, "c", 4, 64, "r")],
        ];
        for rules in lists {
            load(&program(&effective_rules(&rules).unwrap())).unwrap();
        }
    }

    /// The cgroup2 mount of this machine, if any.
    fn cgroup2_root() -> Option<std::path::PathBuf> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
        mounts.lines().find_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            (fields.get(2) == Some(&"cgroup2")).then(|| fields[1].into())
        })
    }

    /// Loads and attaches a program for real (root, cgroup2 and bpf(2) needed): a shell moved
    /// into the cgroup may read /dev/zero (a default) but not open /dev/kmsg.
    #[test]
    #[ignore = "needs root and a cgroup2 mount; changes the machine's cgroups"]
    fn loads_and_attaches_for_real() {
        let Some(root) = cgroup2_root() else {
            return osbuild_test_skip::skip("no cgroup2 mount");
        };
        let cgroup = root.join(format!("osbuild-device-filter-test-{}", std::process::id()));
        std::fs::create_dir(&cgroup).unwrap();
        let deny_all = DeviceRule {
            access: Some("rwm".into()),
            ..DeviceRule::default()
        };
        let scratch = tempfile::tempdir().unwrap();
        let applied = apply(&cgroup, &[deny_all]);
        let output = applied.as_ref().ok().map(|()| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(
                    r#"echo $$ > "$0/cgroup.procs" || exit 9
                    head -c 1 /dev/zero > /dev/null && echo zero: ok
                    true > /dev/null && echo null: ok
                    true > /dev/kmsg && echo kmsg: opened for writing
                    true < /dev/kmsg && echo kmsg: opened for reading
                    mknod "$1/kmsg" c 1 11 && echo mknod: ok
                    true < "$1/kmsg" && echo new node: opened"#,
                )
                .arg(&cgroup)
                .arg(scratch.path())
                .output()
                .unwrap()
        });
        for _ in 0..100 {
            if std::fs::remove_dir(&cgroup).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!cgroup.exists(), "{} left behind", cgroup.display());
        applied.unwrap();
        let output = output.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!("stdout:\n{stdout}stderr:\n{stderr}");
        assert_eq!(stdout, "zero: ok\nnull: ok\nmknod: ok\n");
        assert_eq!(stderr.matches("Operation not permitted").count(), 3);
    }
}
