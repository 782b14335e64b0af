"""The spec front end: ``.spec`` text (grammar/spec.lark) -> a validated ``Spec``."""

from exe_coder.spec.load import load_spec
from exe_coder.spec.model import Spec

__all__ = ["Spec", "load_spec"]
