"""Run a validated arm64 Mach-O under unicorn, as the kernel and dyld would start it.

The segments are mapped at their addresses with their initial protections (``__PAGEZERO``
stays unmapped, so a null dereference faults), a stack holds ``argc/argv/envp/apple``, and
``lr`` is a sentinel: a ``ret`` from main ends the program with ``x0`` as its status, which is
what dyld's ``start`` does by calling ``exit(main(...))``. ``svc`` follows the macOS ABI
(number in x16, arguments in x0..x5, carry clear on success, carry set and errno in x0 on
failure). Only ``write`` to fd 1/2 and ``exit`` are served; every other call is refused.

One unicorn engine per thread is reused (creating one costs ~0.6 ms, more than a whole run):
each run rewrites the program's memory, drops the code translated from changed bytes and
restores a saved CPU context, so nothing of one run can leak into the next.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import threading
import time
import weakref

import numpy as np
from unicorn import (
    UC_ARCH_ARM64,
    UC_HOOK_BLOCK,
    UC_HOOK_INTR,
    UC_HOOK_MEM_INVALID,
    UC_MEM_FETCH_PROT,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_READ_PROT,
    UC_MEM_READ_UNMAPPED,
    UC_MEM_WRITE_PROT,
    UC_MEM_WRITE_UNMAPPED,
    UC_MODE_ARM,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_PROT_WRITE,
    Uc,
    UcError,
)
from unicorn import arm64_const as a64

from exe_coder.runtime.execution import Ending, Execution
from exe_coder.runtime.macho import MachO

DEFAULT_MAX_INSTRUCTIONS = 100_000
DEFAULT_TIMEOUT_S = 2.0
MAX_MAPPED_BYTES = 64 << 20  # larger images are refused rather than risk the host's memory
MAX_OUTPUT_BYTES = 1 << 20  # further writes are refused with EFBIG
MAP_ALIGN = 0x4000

STACK_SIZE = 256 << 10  # plenty for straight-line programs; zeroed before every run
STACK_TOP = 0x7FF0_0000_0000  # far above any image this project builds; checked for overlap
STACK_BASE = STACK_TOP - STACK_SIZE
RETURN_SENTINEL = 0xFFFF_FFFF_FFFF_F000  # lr at entry: reaching it means main returned
# The stack as the kernel leaves it for main: argc=1, argv={"a.out", NULL}, envp={NULL}, apple={NULL}.
INITIAL_SP = STACK_TOP - 64
INITIAL_FRAME = b"".join(v.to_bytes(8, "little") for v in (1, INITIAL_SP + 40, 0, 0, 0)) + b"a.out\0"

SYS_EXIT = 1
SYS_WRITE = 4
SYSCALL_NAMES = {0: "syscall", 1: "exit", 2: "fork", 3: "read", 4: "write", 5: "open", 6: "close", 20: "getpid", 59: "execve"}
EBADF = 9
EFAULT = 14
EFBIG = 27
ENOSYS = 78

EXCP_SWI = 2  # qemu's exception number for svc; every other CPU exception is a crash
EXCEPTION_NAMES = {1: "undefined instruction", 3: "prefetch abort", 4: "data abort", 7: "breakpoint", 11: "hvc", 13: "smc"}
ACCESS_NAMES = {
    UC_MEM_READ_UNMAPPED: "read of unmapped",
    UC_MEM_WRITE_UNMAPPED: "write to unmapped",
    UC_MEM_FETCH_UNMAPPED: "fetch from unmapped",
    UC_MEM_READ_PROT: "read of protected",
    UC_MEM_WRITE_PROT: "write to protected",
    UC_MEM_FETCH_PROT: "fetch from protected",
}
CARRY = 1 << 29  # PSTATE.C in NZCV
# Cortex-A72 (ARMv8.0-A), not unicorn's "max" CPU: max's FP16 decoders abort the whole process
# on some encodings (qemu "code should not be reached"; ~1 in 4,000 random words when fuzzed),
# which a verifier of model-written bytes cannot afford. The price: instructions newer than
# ARMv8.0 (FP16, LSE atomics, pointer authentication beyond the NOP-space hints) are undefined
# here and end as a crash, although an Apple core would run them.
CPU_MODEL = a64.UC_CPU_ARM64_A72
CPU_MODEL_NAME = "Cortex-A72"

PROT_BITS = {1: UC_PROT_READ, 2: UC_PROT_WRITE, 4: UC_PROT_EXEC}  # VM_PROT_* -> UC_PROT_*


def _round_up(value: int, align: int) -> int:
    return -(-value // align) * align


def _changed_spans(old: bytes, new: bytes, word: int = 8, gap: int = 64) -> list[tuple[int, int]]:
    """Byte ranges [lo, hi) where two equal-length, word-aligned buffers differ (merged across small gaps)."""
    if old == new:
        return []
    differs = np.flatnonzero(np.frombuffer(old, np.uint64) != np.frombuffer(new, np.uint64))
    spans: list[tuple[int, int]] = []
    for i in differs.tolist():
        lo = i * word
        if spans and lo - spans[-1][1] <= gap:
            spans[-1] = (spans[-1][0], lo + word)
        else:
            spans.append((lo, lo + word))
    return spans


class _Engine:
    """A reusable unicorn instance plus the state of the run in progress."""

    def __init__(self) -> None:
        uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        uc.ctl_set_cpu_model(CPU_MODEL)
        uc.reg_write(a64.UC_ARM64_REG_CPACR_EL1, 0x3 << 20)  # FP/SIMD enabled, as for any user process
        uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        uc.hook_add(UC_HOOK_BLOCK, self._on_block)
        uc.hook_add(UC_HOOK_MEM_INVALID, self._on_bad_access)
        # The stack lives in host memory we own (page-aligned, from mmap) so that zeroing it is
        # one memset, not a 256 KiB copy through unicorn.
        self.stack_memory = mmap.mmap(-1, STACK_SIZE)
        self.stack = ctypes.addressof(ctypes.c_char.from_buffer(self.stack_memory))
        uc.mem_map_ptr(STACK_BASE, STACK_SIZE, UC_PROT_READ | UC_PROT_WRITE, self.stack)
        uc.reg_write(a64.UC_ARM64_REG_SP, INITIAL_SP)
        uc.reg_write(a64.UC_ARM64_REG_X0, 1)  # argc
        uc.reg_write(a64.UC_ARM64_REG_X1, INITIAL_SP + 8)  # argv
        uc.reg_write(a64.UC_ARM64_REG_X2, INITIAL_SP + 24)  # envp
        uc.reg_write(a64.UC_ARM64_REG_X3, INITIAL_SP + 32)  # apple
        uc.reg_write(a64.UC_ARM64_REG_LR, RETURN_SENTINEL)
        self.start_context = uc.context_save()  # restored before every run: all other registers zero
        self.uc = uc
        self.layout: list[tuple[int, int, int]] = []  # (start, size, prot) currently mapped
        self.contents: list[bytes] = []  # what was last written to each mapped region
        self.watchdog = _Watchdog(uc)
        weakref.finalize(self, self.watchdog.close)
        self.pid = os.getpid()
        self._reset_run()

    def _reset_run(self) -> None:
        self.readable: list[tuple[int, int]] = []  # [start, end) ranges a write() may read from
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.refused: list[str] = []
        self.exit_code: int | None = None
        self.fault: str | None = None
        self.done_before_block = 0  # instructions in blocks that finished before the current one
        self.block_start = 0
        self.block_len = 0
        self.over_budget = False

    # --- hooks (they never raise: an exception inside a unicorn callback is lost or fatal) ---

    def _on_block(self, uc: Uc, address: int, size: int, _user: object) -> None:
        # The instruction budget is kept here, one check a translated block, rather than with
        # emu_start's `count`: `count` instruments every instruction and makes translating a
        # block ~3x dearer, and a patched program retranslates its first block on every run.
        done = self.done_before_block + self.block_len
        length = size // 4
        if done + length > self.budget:
            self.over_budget = True
            uc.emu_stop()  # stops before this block runs
            length = 0
        self.done_before_block, self.block_start, self.block_len = done, address, length

    def _on_bad_access(self, uc: Uc, access: int, address: int, size: int, value: int, _user: object) -> bool:
        self.fault = f"{ACCESS_NAMES.get(access, 'access to')} 0x{address:x}"
        return False  # not handled: the run stops with a memory error

    def _on_interrupt(self, uc: Uc, intno: int, _user: object) -> None:
        if intno != EXCP_SWI:
            pc = uc.reg_read(a64.UC_ARM64_REG_PC)
            self.fault = f"{EXCEPTION_NAMES.get(intno, f'exception {intno}')} at 0x{pc:x}"
            uc.emu_stop()
            return
        number = uc.reg_read(a64.UC_ARM64_REG_X16)
        if number == SYS_EXIT:
            self.exit_code = uc.reg_read(a64.UC_ARM64_REG_X0) & 0xFF  # the wait status keeps the low 8 bits
            uc.emu_stop()
            return
        if number == SYS_WRITE:
            errno, result = self._write(uc)
        else:
            errno, result = ENOSYS, 0
        nzcv = uc.reg_read(a64.UC_ARM64_REG_NZCV)
        if errno:
            name = SYSCALL_NAMES.get(number, f"syscall {number}")
            self.refused.append(f"{name} (x16={number}) -> errno {errno}")
            uc.reg_write(a64.UC_ARM64_REG_X0, errno)
            uc.reg_write(a64.UC_ARM64_REG_NZCV, nzcv | CARRY)
        else:
            uc.reg_write(a64.UC_ARM64_REG_X0, result)
            uc.reg_write(a64.UC_ARM64_REG_NZCV, nzcv & ~CARRY)

    def _write(self, uc: Uc) -> tuple[int, int]:
        fd, buf, length = (uc.reg_read(r) for r in (a64.UC_ARM64_REG_X0, a64.UC_ARM64_REG_X1, a64.UC_ARM64_REG_X2))
        sink = {1: self.stdout, 2: self.stderr}.get(fd)
        if sink is None:
            return EBADF, 0
        if length == 0:
            return 0, 0
        if not any(start <= buf and buf + length <= end for start, end in self.readable):
            return EFAULT, 0
        if len(self.stdout) + len(self.stderr) + length > MAX_OUTPUT_BYTES:
            return EFBIG, 0
        sink += uc.mem_read(buf, length)
        return 0, length

    # --- one run ---

    def _map(self, regions: list[tuple[int, int, int, bytes]]) -> str | None:
        """Map the program's memory, or -- when the layout is the last run's -- bring it up to date.

        Read-only regions cannot have changed since they were written, so only the bytes that
        differ from the last program are rewritten, and only the code translated from those
        bytes is dropped: a patched operand costs one block's retranslation, not the program's.
        Writable regions are rewritten whole (the last program may have changed them).
        """
        uc = self.uc
        layout = [(start, size, prot) for start, size, prot, _ in regions]
        if layout != self.layout:
            for start, size, _ in self.layout:
                uc.mem_unmap(start, size)
            self.layout, self.contents = [], []
            uc.ctl_flush_tb()
            for start, size, prot in layout:
                try:
                    uc.mem_map(start, size, prot)
                except UcError as err:
                    return f"cannot map 0x{start:x}+0x{size:x}: {err}"
                self.layout.append((start, size, prot))
        for index, (start, size, prot, content) in enumerate(regions):
            image = content.ljust(size, b"\0")  # zeros past the file bytes, as the kernel maps them
            old = self.contents[index] if index < len(self.contents) else None
            if old is not None and not prot & UC_PROT_WRITE and image == old:
                continue
            uc.mem_write(start, image)  # one copy of every byte: nothing of the last program survives
            if prot & UC_PROT_EXEC:
                # mem_write does not reliably drop code translated from the bytes it overwrites:
                # drop exactly what changed (everything, the first time or when writable)
                stale = [(0, size)] if old is None or prot & UC_PROT_WRITE else _changed_spans(old, image)
                for lo, hi in stale:
                    uc.ctl_remove_cache(start + lo, start + hi)
            if index < len(self.contents):
                self.contents[index] = image
            else:
                self.contents.append(image)
        return None

    def run(self, f: MachO, max_instructions: int, timeout_s: float) -> Execution:
        uc = self.uc
        self._reset_run()
        self.budget = max_instructions
        entry = f.entry_address()
        if entry is None:
            return Execution(Ending.CRASHED, detail="no entry point")
        regions = []
        for seg in f.segments:
            if seg.initprot & 0x7 == 0 or seg.vmsize == 0:
                continue  # __PAGEZERO and other no-access reservations stay unmapped: touching them faults
            prot = 0
            for bit, uc_bit in PROT_BITS.items():
                if seg.initprot & bit:
                    prot |= uc_bit
            size = _round_up(seg.vmsize, MAP_ALIGN)
            if seg.vmaddr < STACK_TOP and STACK_BASE < seg.vmaddr + size:
                return Execution(Ending.CRASHED, detail=f"{seg.name} overlaps the emulator's stack")
            regions.append((seg.vmaddr, size, prot, f.data[seg.fileoff : seg.fileoff + seg.filesize]))
        if sum(r[1] for r in regions) > MAX_MAPPED_BYTES:
            return Execution(Ending.CRASHED, detail=f"segments need more than {MAX_MAPPED_BYTES >> 20} MiB to emulate")
        problem = self._map(regions)
        if problem is not None:
            return Execution(Ending.CRASHED, detail=problem)
        ctypes.memset(self.stack, 0, STACK_SIZE)
        ctypes.memmove(self.stack + (INITIAL_SP - STACK_BASE), INITIAL_FRAME, len(INITIAL_FRAME))
        for start, _size, prot in self.layout:
            if prot & UC_PROT_READ:
                self.readable.append((start, start + _size))
        self.readable.append((STACK_BASE, STACK_TOP))
        uc.context_restore(self.start_context)

        self.watchdog.arm(timeout_s)
        error: UcError | None = None
        try:
            uc.emu_start(entry, RETURN_SENTINEL)
        except UcError as err:
            error = err
        finally:
            timed_out = self.watchdog.disarm()
        pc = uc.reg_read(a64.UC_ARM64_REG_PC)
        return self._ending(pc, error, timed_out, max_instructions, timeout_s)

    def _ending(self, pc: int, error: UcError | None, timed_out: bool, budget: int, timeout_s: float) -> Execution:
        # instructions run: every finished block, plus the current one up to pc (when pc is in it)
        in_block = (pc - self.block_start) // 4 if self.block_start <= pc < self.block_start + 4 * self.block_len else self.block_len
        ran = self.done_before_block + in_block
        facts = dict(stdout=bytes(self.stdout), stderr=bytes(self.stderr), refused=tuple(self.refused))
        if self.exit_code is not None:  # stopped inside the exit svc; pc is past it
            return Execution(Ending.EXITED, exit_code=self.exit_code, instructions=ran, **facts)
        if self.fault is not None or error is not None:
            where = self.fault or "fault"
            why = f"{where} (pc 0x{pc:x})" if error is None else f"{where}: {error} (pc 0x{pc:x})"
            return Execution(Ending.CRASHED, instructions=ran, detail=why, **facts)
        if pc == RETURN_SENTINEL:
            status = self.uc.reg_read(a64.UC_ARM64_REG_X0) & 0xFF
            return Execution(Ending.EXITED, exit_code=status, instructions=ran, detail="returned from main", **facts)
        if timed_out:
            return Execution(Ending.TIMED_OUT, instructions=ran, detail=f"wall clock over {timeout_s:g} s", **facts)
        if self.over_budget:
            return Execution(Ending.TIMED_OUT, instructions=ran, detail=f"instruction budget of {budget} spent", **facts)
        return Execution(Ending.CRASHED, instructions=ran, detail=f"emulation stopped at pc 0x{pc:x} for no known reason", **facts)


class _Watchdog:
    """Stops a run that outlives its wall-clock limit (a stuck hook, a pathological instruction).

    unicorn's own ``timeout`` starts a thread for every ``emu_start`` (~0.3 ms, more than a run);
    this one thread sleeps until armed and then polls the deadline. It holds its engine only
    weakly, and ends when the engine is collected (e.g. when the thread that owned it ends).
    """

    POLL_S = 0.01

    def __init__(self, uc: Uc) -> None:
        self.uc = weakref.ref(uc)
        self.deadline = 0.0
        self.fired = False
        self.closed = False
        self.armed = threading.Event()
        self.lock = threading.Lock()  # arm/disarm and the deadline check never interleave
        self.thread = threading.Thread(target=self._watch, name="exe-coder-emulator-watchdog", daemon=True)
        self.thread.start()

    def arm(self, timeout_s: float) -> None:
        with self.lock:
            self.fired = False
            self.deadline = time.monotonic() + timeout_s
            self.armed.set()

    def disarm(self) -> bool:
        with self.lock:
            self.armed.clear()
            return self.fired

    def close(self) -> None:
        self.closed = True
        self.armed.set()  # wake the thread so that it sees `closed` and ends

    def _watch(self) -> None:
        while True:
            self.armed.wait()
            if self.closed:
                return
            with self.lock:
                if self.armed.is_set() and not self.fired and time.monotonic() >= self.deadline:
                    uc = self.uc()
                    if uc is not None:
                        self.fired = True
                        uc.emu_stop()
            time.sleep(self.POLL_S)


_engines = threading.local()


def emulate(f: MachO, *, max_instructions: int = DEFAULT_MAX_INSTRUCTIONS, timeout_s: float = DEFAULT_TIMEOUT_S) -> Execution:
    """Run a parsed (and validated) executable to its end, its budget or its first fault."""
    engine = getattr(_engines, "engine", None)
    if engine is None or engine.pid != os.getpid():  # a forked child has no watchdog thread: start afresh
        engine = _engines.engine = _Engine()
    try:
        return engine.run(f, max_instructions, timeout_s)
    except Exception:
        _engines.engine = None  # an engine left in an unknown state is never reused
        raise
