"""The language's vocabularies, each listed once: statement words, option values,
parameter types, functions, and the names a spec may not use.

The grammar (``syntax/resdsl.lark``) spells the structural keywords (``network``,
``block``, ``input``, ``import``, ``defaults``, ``stage``); every word the
front end, the elaborator or a back end tests for is named here, so a new
statement kind or policy is added in one place. No torch, no third-party import.
"""

from __future__ import annotations

import keyword
from typing import Literal, get_args

# ---- statements ------------------------------------------------------------------
#: Statements that refer to an earlier labelled tensor instead of applying an op.
RefKind = Literal["add", "mul", "concat", "from"]
REF_KINDS: tuple[str, ...] = get_args(RefKind)
#: Words that open an indented body of statements.
BODY_WORDS = ("residual", "shortcut", "sequential")
#: A learnable tensor (``[label:] parameter D1, D2, ..., init=V``): a statement, not an op.
PARAMETER_WORD = "parameter"
#: ``order A, B, ...``: the registration order of a block's submodules (its state-dict order).
ORDER_WORD = "order"
#: Every statement word that is not an op: a block may not take one of these names.
STATEMENT_WORDS = (*BODY_WORDS, "stage", *REF_KINDS, PARAMETER_WORD, "if", "elif", "else", "let", "repeat",
                   ORDER_WORD)

# ---- options and types -----------------------------------------------------------
#: How a residual's shortcut is chosen (``residual shortcut=B:``, ``--shortcut B``).
ShortcutPolicy = Literal["auto", "A", "B", "C", "identity", "none"]
SHORTCUT_POLICIES: tuple[str, ...] = get_args(ShortcutPolicy)
#: Types a network or block parameter may declare.
ParamType = Literal["int", "float", "bool", "str"]
PARAM_TYPES: tuple[str, ...] = get_args(ParamType)
#: Element types of a network input (``input ids: [seq], int``): float (the default), or
#: integer token ids, which only ops that take ids (``embedding``) may read.
INPUT_DTYPES = ("float", "int")
#: Functions the expression evaluator knows.
FUNCTIONS = ("min", "max", "ceil", "floor", "round", "int", "make_divisible", "channels", "dim")
#: Functions code generation writes as the Python builtins of the same name.
PYTHON_FUNCTIONS = ("min", "max")
#: Functions whose arguments name tensors (a label, or ``input``), not values.
TENSOR_FUNCTIONS = ("channels", "dim")

# ---- names -----------------------------------------------------------------------
#: Attribute names of torch.nn.Module, public and private (its methods, and the
#: instance attributes ``nn.Module()`` sets, such as ``_modules`` and ``training``). A
#: submodule with one of these names would shadow it and break build or forward. Kept
#: here (not read from torch) so the front end stays torch-free;
#: tests/test_limits_work.py checks it against the installed torch (dunder names are
#: refused by their '__' prefix).
MODULE_ATTRIBUTES = frozenset(
    """T_destination _apply _backward_hooks _backward_pre_hooks _buffers _call_impl
    _compiled_call_impl _forward_hooks _forward_hooks_always_called _forward_hooks_with_kwargs
    _forward_pre_hooks _forward_pre_hooks_with_kwargs _get_backward_hooks
    _get_backward_pre_hooks _get_name _is_full_backward_hook _load_from_state_dict
    _load_state_dict_post_hooks _load_state_dict_pre_hooks _maybe_warn_non_full_backward_hook
    _modules _named_members _non_persistent_buffers_set _parameters
    _register_load_state_dict_pre_hook _register_state_dict_hook _replicate_for_data_parallel
    _save_to_state_dict _slow_forward _state_dict_hooks _state_dict_pre_hooks _version
    _wrapped_call_impl add_module apply bfloat16 buffers call_super_init children compile cpu
    cuda double dump_patches eval extra_repr float forward get_buffer get_extra_state
    get_parameter get_submodule half ipu load_state_dict modules mtia named_buffers
    named_children named_modules named_parameters parameters register_backward_hook
    register_buffer register_forward_hook register_forward_pre_hook register_full_backward_hook
    register_full_backward_pre_hook register_load_state_dict_post_hook
    register_load_state_dict_pre_hook register_module register_parameter
    register_state_dict_post_hook register_state_dict_pre_hook requires_grad_ set_extra_state
    set_submodule share_memory smart_apply state_dict to to_empty train training type xpu
    zero_grad""".split()
)

#: Builtins that run or reach code, and the names generated modules are written with;
#: a spec may not rebind them there (Python keywords and '__' names are refused too).
RESERVED_NAMES = frozenset(
    "exec eval compile globals locals vars open getattr setattr delattr breakpoint "
    "self torch nn".split()
)

#: Names the generated code itself uses (imports, builtins, its helpers): code
#: generation renames a spec name equal to one with a trailing ``_`` (``F`` -> ``F_``).
GENERATED_NAMES = frozenset({
    "self", "torch", "nn", "F", "super", "min", "max", "int", "float", "bool", "tuple", "range",
    "None", "True", "False", "ValueError", "Optional", "_center_crop", "_drop_path", "ChannelLayerNorm",
    "_parameter", "OrderedDict", "_make_divisible", "round",
    "Permute", "_channel_shuffle",
})


def identifier_problem(name: str, what: str, attribute: bool = True) -> tuple[str, str] | None:
    """Why ``name`` cannot name a module attribute or a Python name in generated code, as
    (message, hint), or None. ``attribute=False``: a name that never becomes an attribute."""
    if name.startswith("__"):
        return f"{what} '{name}' starts with '__', which resdsl reserves", \
            f"rename it, e.g. '{name.lstrip('_') or 'x'}'"
    if keyword.iskeyword(name):
        return f"{what} '{name}' is a Python keyword and cannot name a module or tensor", f"rename it, e.g. '{name}_'"
    if attribute and name in MODULE_ATTRIBUTES:
        internal = " (an internal attribute)" if name.startswith("_") else ""
        return f"{what} '{name}' would shadow torch.nn.Module.{name}{internal}", f"rename it, e.g. '{name.lstrip('_')}_'"
    if name in RESERVED_NAMES:
        return f"{what} '{name}' is reserved: generated Python code relies on that name", f"rename it, e.g. '{name}_'"
    return None
