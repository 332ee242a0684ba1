"""Each vocabulary of the language has one home, resdsl/vocab.py, and every user reads it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

import resdsl
from resdsl import ir, vocab
from resdsl.cli import make_parser

PACKAGE = Path(resdsl.__file__).resolve().parent

# A literal copy of a vocabulary, as each was written before it had a home, and where
# that text may appear now (STATEMENT_WORDS is built from its parts: nowhere).
COPIES = {
    "statement words": (r'"shortcut",\s*"stage"', []),
    "reference kinds": (r'"add",\s*"mul",\s*"concat",\s*"from"', ["vocab.py"]),
    "shortcut policies": (r'"auto",\s*"A",\s*"B",\s*"C"|auto, A, B, C, identity', ["vocab.py"]),
    "parameter types": (r'[\[(]"int",\s*"float",\s*"bool",\s*"str"', ["vocab.py"]),
    "functions": (r'\("min",\s*"max"\)', ["vocab.py"]),
    "reserved names": (r"exec eval compile globals", ["vocab.py"]),
    "module attributes": (r"_backward_hooks _backward_pre_hooks", ["vocab.py"]),
    "generated names": (r'"ValueError",\s*"Optional"', ["vocab.py"]),
}


@pytest.mark.parametrize("what", sorted(COPIES))
def test_no_second_copy_of_a_vocabulary(what):
    pattern, expected = COPIES[what]
    found = [p.relative_to(PACKAGE).as_posix() for p in sorted(PACKAGE.rglob("*.py"))
             if re.search(pattern, p.read_text(encoding="utf-8"))]
    assert found == expected, f"{what} written out in {found}: import it from resdsl.vocab"


def test_ir_accepts_exactly_the_vocabulary():
    for kind in vocab.REF_KINDS:
        assert ir.Ref(kind=kind, target="x").kind == kind
    with pytest.raises(ValidationError):
        ir.Ref(kind="sub", target="x")
    for type_ in vocab.PARAM_TYPES:
        assert ir.Param(name="p", type=type_).type == type_
    with pytest.raises(ValidationError):
        ir.Param(name="p", type="string")


def test_cli_offers_every_shortcut_policy():
    parser = make_parser()
    for policy in vocab.SHORTCUT_POLICIES:
        assert parser.parse_args(["check", "x.res", "--shortcut", policy]).shortcut == policy
    with pytest.raises(SystemExit):
        parser.parse_args(["check", "x.res", "--shortcut", "D"])


@pytest.mark.parametrize("word", vocab.STATEMENT_WORDS)
def test_a_block_may_not_take_a_statement_word(word):
    spec = f"block {word}(c: int):\n    conv 3x3, c\n\nnetwork n:\n    input x: [3, 8, 8]\n    conv 3x3, 4\n"
    with pytest.raises(resdsl.SpecError) as caught:
        resdsl.loads(spec)
    message = str(caught.value)  # 'from' is refused earlier, as a Python keyword
    assert f"block '{word}' has the name of a built-in op" in message or f"'{word}' is a Python keyword" in message


@pytest.mark.parametrize("policy", vocab.SHORTCUT_POLICIES)
def test_every_shortcut_policy_is_accepted(policy):
    spec = f"network n:\n    input x: [4, 8, 8]\n    residual shortcut={policy}:\n        conv 3x3, 4\n"
    assert resdsl.loads(spec).output_shape == (4, 8, 8)
