"""A Triton frontend pitfall, checked on the source of every kernel (no GPU, no interpreter needed).

Triton (3.6 and 3.9) finds a loop's carried values by which names the body rebinds to a new value. Inside a
loop, `x = y` where y is itself carried by the loop (bound before it and rebound in it) can look like no change
when x and y were bound to the same tensor before the loop; x is then dropped from the loop and reads its
value from before the loop after it. The interpreter runs plain Python and gets it right, so only compiled
code is wrong: the entmax threshold kernel stored `tau_eval` this way and wrote the first pass's tau on the
GPU (2026-12-03, docs/benchmarks/entmax.md). Copies of carried values inside loops are therefore banned in
`@triton.jit` functions; write the carried value itself where it is needed.
"""

import ast
from pathlib import Path

KERNELS = Path(__file__).resolve().parents[1] / "kernels"


def _is_jit(fn: ast.FunctionDef) -> bool:
    return any("jit" in ast.unparse(d) for d in fn.decorator_list)


def _bound_names(nodes) -> set[str]:
    return {t.id for n in nodes for a in ast.walk(n) if isinstance(a, ast.Assign | ast.AugAssign) for t in _targets(a)}


def _targets(node):
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [t for t in targets if isinstance(t, ast.Name)]


def loop_alias_copies(source: str) -> list[str]:
    """`x = y` statements inside loops of jit functions where y is carried by that loop."""
    found = []
    for fn in ast.walk(ast.parse(source)):
        if not (isinstance(fn, ast.FunctionDef) and _is_jit(fn)):
            continue
        for loop in ast.walk(fn):
            if not isinstance(loop, ast.For | ast.While):
                continue
            earlier = [n for n in ast.walk(fn) if isinstance(n, ast.Assign | ast.AugAssign) and n.lineno < loop.lineno]
            before = _bound_names(earlier) | {a.arg for a in fn.args.args}
            carried = before & _bound_names(loop.body)
            for node in ast.walk(loop):
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and node.value.id in carried:
                    found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_check_finds_the_entmax_pattern():
    source = """
@triton.jit
def k(X):
    lo = tl.load(X)
    tau = lo
    tau_eval = lo
    for it in range(4):
        if tl.min(tau) < 0:
            tau_eval = tau
            tau = tau + 1.0
    tl.store(X, tau_eval)
"""
    assert loop_alias_copies(source) == ["line 9: tau_eval = tau"]


def test_no_kernel_copies_a_loop_carried_value_inside_its_loop():
    found = {
        str(path.relative_to(KERNELS)): hits
        for path in sorted(KERNELS.rglob("*.py"))
        if (hits := loop_alias_copies(path.read_text()))
    }
    assert not found, found
