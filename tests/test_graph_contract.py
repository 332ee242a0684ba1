"""The graph contract: node data is one frozen, slotted OpNode carrying the IR
statement that made it; nothing reads node data by a string key."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from pathlib import Path

import pytest

import resdsl
from resdsl import ir
from resdsl.backends.codegen import frozen_params, generate
from resdsl.errors import NOWHERE
from resdsl.graph import OpEdge, OpNode, op_edges, op_node, op_nodes, residual_units, update_node

PACKAGE = Path(resdsl.__file__).parent
SPECS = Path(__file__).parent.parent / "resdsl" / "zoo"

# Reads of networkx's attribute dicts, which only resdsl/graph.py may do (graph
# attributes, ``graph.graph["containers"]`` and the like, are not node data).
STRING_KEY_READS = re.compile(
    r"""graph\.nodes\[|\.nodes\(data|graph\.edges\[|\.edges\(data|in_edges\(|out_edges\("""
    r"""|(?<!graph)\[["'](op|args|inputs|in_shapes|shape|module|container|span|label|params|shortcut|kind|ports)["']\]"""
)


def test_no_module_reads_node_or_edge_data_by_string_key():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "graph.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if STRING_KEY_READS.search(line):
                found.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert found == [], "\n".join(found)


def test_every_field_is_declared_with_a_type_and_a_comment():
    source = (PACKAGE / "graph.py").read_text()
    for cls in (OpNode, OpEdge):
        assert cls.__dataclass_params__.frozen and "__slots__" in vars(cls)
        for field in dataclasses.fields(cls):
            assert re.search(rf"^    {field.name}: .+  # \S", source, re.M), field.name


def test_every_node_carries_the_statement_that_made_it():
    net = resdsl.loads(
        "network t:\n    input x: [8, 8, 8]\n"
        "    block unit(c: int):\n        conv 3x3, c\n        relu\n"
        "    stem: conv 3x3, 8\n"
        "    body: stage unit(8) x 2\n"
        "    residual:\n        conv 3x3, 16, stride=2\n"
        "    conv 1x1, 8\n",
        "t.res",
    )
    graph, tree = net.graph, net.ir
    assert op_node(graph, graph.graph["input"]).stmt is tree.input
    stem = next(d for d in op_nodes(graph) if d.module == "stem")
    assert stem.stmt is tree.body[0]
    # Both instances of the block point at the one statement of its body.
    body_conv = [d for d in op_nodes(graph) if d.op == "conv" and d.container.startswith("body.")]
    assert len(body_conv) == 2 and body_conv[0].stmt is body_conv[1].stmt is net.blocks["unit"].body[0]
    (unit,) = residual_units(graph)
    residual = tree.body[2]
    assert isinstance(residual, ir.Residual) and unit.stmt is residual
    assert op_node(graph, unit.merge).stmt is residual  # the merge and the projection: the residual's
    assert all(d.stmt is residual for d in op_nodes(graph) if d.shortcut)
    assert all(d.span == d.stmt.span for d in op_nodes(graph))


def test_text_and_yaml_nodes_carry_equal_but_distinct_statements():
    # cifar_resnet: both forms define its blocks (resnet18.res imports std/resnet's
    # rank-generic ones, its verbatim YAML twin spells them 2-D)
    text = resdsl.load(SPECS / "cifar_resnet.res")
    yaml = resdsl.load(SPECS / "yaml" / "cifar_resnet.yaml")
    pairs = list(zip(op_nodes(text.graph), op_nodes(yaml.graph)))
    assert len(pairs) == text.graph.number_of_nodes() == yaml.graph.number_of_nodes()
    assert all(a.stmt == b.stmt and a.stmt is not b.stmt for a, b in pairs)


def _code(source: str) -> str:
    """The program without its comments (``# file:line`` after each statement) or layout."""
    return ast.dump(ast.parse(source))


@pytest.mark.parametrize("spec", ["cifar_resnet.res", "resnet50.res", "unet.res", "preact_resnet.res"])
def test_code_generation_finds_statements_by_identity_not_by_position(spec):
    """Every node's span collapsed to one position: a (file, line, column) lookup would
    find one statement for all of them; the statement each node carries still works."""
    net = resdsl.load(SPECS / spec)
    source, frozen = generate(net).text, frozen_params(net)
    net = resdsl.load(SPECS / spec)
    for node in list(net.graph):
        update_node(net.graph, node, span=NOWHERE)
    assert frozen_params(net) == frozen
    assert _code(generate(net).text) == _code(source)


def test_update_node_stores_a_new_frozen_object():
    net = resdsl.loads("network t:\n    input x: [4]\n    linear 4\n", "t.res")
    before = op_node(net.graph, 1)
    after = update_node(net.graph, 1, shortcut=True)
    assert op_node(net.graph, 1) is after and after.shortcut and not before.shortcut
    assert dataclasses.replace(after, shortcut=False) == before


def test_edges_carry_one_frozen_record():
    net = resdsl.loads("network t:\n    input x: [4]\n    a: linear 4\n    add a\n", "t.res")
    edges = {(u, v): e for u, v, e in op_edges(net.graph)}
    assert edges[(1, 2)] == OpEdge("data", (4,), (0, 1))  # the same tensor into both ports
    assert all(net.graph.edges[u, v].keys() == {"edge"} for u, v in net.graph.edges)


def test_the_written_out_init_takes_and_stores_exactly_the_declared_fields():
    for cls in (OpNode, OpEdge):  # OpNode writes its own __init__ (speed): it must match
        declared = dataclasses.fields(cls)
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        assert [p.name for p in params] == [f.name for f in declared]
        assert [p.default for p in params] == [
            inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default for f in declared]
        values = [object() for _ in declared]
        made = cls(*values)
        assert [getattr(made, f.name) for f in declared] == values
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(made, declared[0].name, None)
