"""The back end: assembly templates to signed macOS arm64 executables.

    templates/<name>.s.j2 --render (program.py)--> assembly text
        --assemble (assembler.py, encodings in isa.py)--> code + symbols + patch sites
        --link (macho.py)--> Mach-O image with the UUID and signature left zero
        --finalize (finalize.py, codesign.py)--> content-derived UUID + ad-hoc signature

``program.ProgramTemplate`` drives the whole chain (``build``) or re-encodes the operands of a
cached golden image in place (``patch``); ``disasm`` lists code for snapshots and ``inspect``;
``emit`` writes a finished binary atomically.
"""
