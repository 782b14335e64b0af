"""syrupy snapshots of the golden binaries: sha256, load-command table, __text disassembly.

Any change to the template, the assembler, the linker or finalize shows up here as a reviewed
diff (update with ``uv run pytest tests/test_codegen_snapshots.py --snapshot-update``).
"""

from __future__ import annotations

import hashlib

import lief
import pytest

from exe_coder.codegen.disasm import disassemble
from exe_coder.codegen.program import OPERAND_MAX, OPERAND_MIN, ProgramTemplate

PAIRS = [(17, -4), (0, 0), (OPERAND_MIN, OPERAND_MIN), (OPERAND_MAX, OPERAND_MAX)]


def load_command_table(binary: lief.MachO.Binary) -> list[str]:
    """One line a load command: name, cmdsize and the fields the loader cares about (read by LIEF)."""
    rows = []
    for command in binary.commands:
        kind = command.command.name
        fields = ""
        if isinstance(command, lief.MachO.SegmentCommand):
            fields = (f"{command.name} vm={command.virtual_address:#x}+{command.virtual_size:#x} "
                      f"file={command.file_offset:#x}+{command.file_size:#x} prot={command.max_protection}/{command.init_protection} "
                      f"sections={[(s.name, hex(s.offset), s.size) for s in command.sections]}")  # fmt: skip
        elif isinstance(command, lief.MachO.MainCommand):
            fields = f"entryoff={command.entrypoint:#x} stacksize={command.stack_size}"
        elif isinstance(command, lief.MachO.SymbolCommand):
            fields = f"symoff={command.symbol_offset:#x} nsyms={command.numberof_symbols} stroff={command.strings_offset:#x} strsize={command.strings_size}"
        elif isinstance(command, lief.MachO.DynamicSymbolCommand):
            fields = (f"local={command.idx_local_symbol}+{command.nb_local_symbols} "
                      f"extdef={command.idx_external_define_symbol}+{command.nb_external_define_symbols} "
                      f"undef={command.idx_undefined_symbol}+{command.nb_undefined_symbols}")  # fmt: skip
        elif isinstance(command, lief.MachO.DylinkerCommand):
            fields = command.name
        elif isinstance(command, lief.MachO.DylibCommand):
            fields = f"{command.name} current={list(command.current_version)} compat={list(command.compatibility_version)}"
        elif isinstance(command, lief.MachO.BuildVersion):
            fields = f"platform={command.platform.name} minos={list(command.minos)} sdk={list(command.sdk)}"
        elif isinstance(command, lief.MachO.UUIDCommand):
            fields = bytes(command.uuid).hex()
        elif isinstance(command, lief.MachO.CodeSignature):
            fields = f"dataoff={command.data_offset:#x} datasize={command.data_size:#x}"
        rows.append(f"{kind} cmdsize={command.size} {fields}".rstrip())
    return rows


def golden_summary(template: str, a: int, b: int) -> dict:
    image = ProgramTemplate.load(template).build(a=a, b=b)
    fat = lief.MachO.parse(list(image))  # held: the binary and its sections' bytes live in it
    binary = fat.at(0)
    text = binary.get_section("__text")
    return {
        "sha256": hashlib.sha256(image).hexdigest(),
        "size": len(image),
        "load_commands": load_command_table(binary),
        "disassembly": disassemble(bytes(text.content), text.virtual_address),
    }


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a}_{b}" for a, b in PAIRS])
def test_golden_binary_snapshot(snapshot, a: int, b: int) -> None:
    assert golden_summary("add", a, b) == snapshot


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a}_{b}" for a, b in PAIRS])
def test_golden_text_binary_snapshot(snapshot, a: int, b: int) -> None:
    """add_text: its operands are the last 24 bytes of __text (disassembled as data words)."""
    assert golden_summary("add_text", a, b) == snapshot
