"""Writes :mod:`rmsprop._triton_rule`: the family rule of :mod:`rmsprop._rule` for Triton.

Triton cannot compile :func:`rmsprop._rule.family_update` as it is: it reads its
options from a ``Hyperparameters`` object, takes its state as a ``State`` tuple and
its square root as an argument, and Python's scalars are float64 where Triton's
would be float32. This module translates the rule's syntax tree instead:

- helper functions of the rule whose body is one ``return`` are inlined;
- ``hp.<option>`` becomes a compile-time constant (``MOMENTUM``, ...) where the
  option is a switch (:class:`rmsprop._options.Switches`) or tested for truth, and
  an argument (``lr``, ``beta``, ...) where it is a value;
- ``state.cache``, ``state.momentum_buffer``, ``state.grad_avg`` become the blocks
  ``v``, ``b``, ``a``; ``State(...)`` in the result becomes its three values;
- ``sqrt``, ``clamp_at_zero`` and ``/`` become correctly rounded Triton operations
  (:data:`OPERATIONS`);
- ``if C: return X`` followed by more statements becomes ``if C: return X`` with
  the rest as its ``else`` (Triton compiles one ``return`` per path);
- ``hp.one_minus_beta`` and ``hp.one_minus_lr_weight_decay``, which ``hp`` derives,
  become their expressions (:data:`DERIVED`);
- the hyperparameters arrive as float64 scalars, each converted to the work dtype
  where it is read: expressions of them are computed in the work dtype, as the
  Numba kernel computes them and as every front end derives them
  (:func:`rmsprop._options.work_values`), so that the result is theirs, bit for
  bit, in float64 and float32 work alike.

``python -m rmsprop._rule_to_triton`` rewrites the module; a test checks that the
committed file is what :func:`generate` returns. This module imports only ``ast``.
"""

import ast
import copy
import inspect
import sys
from pathlib import Path
from typing import Final, cast

from rmsprop import _rule
from rmsprop._options import OPTION_NAMES, Switches

TARGET: Final = Path(__file__).with_name("_triton_rule.py")
#: The rule's state fields and the blocks that hold them.
STATE_BLOCKS: Final = {"cache": "v", "momentum_buffer": "b", "grad_avg": "a"}
#: The values the kernel passes: the options that are numbers, and the bias correction.
SCALARS: Final = ("lr", "beta", "eps", "momentum", "weight_decay", "correction")
#: The values the rule reads from hp that hp derives (rmsprop._options.DERIVED_NAMES), as
#: the rule would write them.
DERIVED: Final = {
    "one_minus_beta": "1.0 - hp.beta",
    "one_minus_lr_weight_decay": "1.0 - hp.lr * hp.weight_decay",
}
#: Calls of the rule's function arguments, and ``/``, as Triton operations.
CALLS: Final = {"sqrt": "sqrt_rn", "clamp_at_zero": "clamp_at_zero"}
#: The Triton operations the generated rule calls (written here, not generated).
OPERATIONS: Final = '''
@triton.jit
def sqrt_rn(x):
    """Correctly rounded square root (float64's is; float32's default is approximate)."""
    if x.dtype == tl.float64:
        y = tl.sqrt(x)
    else:
        y = tl.sqrt_rn(x)
    return y


@triton.jit
def div_rn(x, y):
    """Correctly rounded division (float64's is; float32's default is approximate)."""
    if x.dtype == tl.float64:
        z = x / y
    else:
        z = tl.div_rn(x, y)
    return z


@triton.jit
def clamp_at_zero(x):
    """Negative values to 0; NaN stays NaN."""
    return tl.where(x < 0, 0.0, x).to(x.dtype)
'''
HEADER: Final = '''"""The family rule for Triton, GENERATED from rmsprop/_rule.py: do not edit.

Written by rmsprop._rule_to_triton: run ``python -m rmsprop._rule_to_triton`` after changing
the rule (a test checks that this file is what it writes). Importing it imports Triton.
"""

import triton
import triton.language as tl
'''


def _switch(name: str) -> str:
    return name.upper()


class _Translate(ast.NodeTransformer):
    """The rule's statements in Triton's terms (:class:`_Cast` converts the scalars after)."""

    def __init__(self, helpers: dict[str, ast.FunctionDef]) -> None:
        self.helpers = helpers

    # -- the options, the state, the calls ------------------------------------------------

    def option(self, node: ast.expr, truth: bool) -> ast.expr | None:
        """``hp.<name>`` as a constant (``truth``: tested for truth) or a value."""
        if not (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "hp"
        ):
            return None
        name = node.attr
        if name in DERIVED:  # a value hp derives: its expression in the kernel's values
            return cast(ast.expr, self.visit(ast.parse(DERIVED[name], mode="eval").body))
        if name not in OPTION_NAMES:
            raise ValueError(f"the rule reads hp.{name}, which is no option")
        if name in Switches._fields and (truth or name not in SCALARS):
            return ast.Name(_switch(name), ast.Load())
        if name not in SCALARS:
            raise ValueError(f"hp.{name} is neither a switch nor a value the kernel passes")
        return ast.Name(name, ast.Load())

    def truth(self, node: ast.expr) -> ast.expr:
        """A test: options in it become compile-time constants."""
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ast.UnaryOp(ast.Not(), self.truth(node.operand))
        if isinstance(node, ast.BoolOp):
            return ast.BoolOp(node.op, [self.truth(v) for v in node.values])
        found = self.option(node, truth=True)
        if found is None:
            raise ValueError(
                f"a test the kernel cannot decide at compile time: {ast.unparse(node)}"
            )
        return found

    def visit_Attribute(self, node: ast.Attribute) -> ast.expr:
        found = self.option(node, truth=False)
        if found is not None:
            return found
        if isinstance(node.value, ast.Name) and node.value.id == "state":
            return ast.Name(STATE_BLOCKS[node.attr], ast.Load())
        raise ValueError(f"the kernel cannot read {ast.unparse(node)}")

    def visit_If(self, node: ast.If) -> ast.If:
        return ast.If(
            self.truth(node.test),
            self.block(node.body),
            self.block(node.orelse),
        )

    def visit_IfExp(self, node: ast.IfExp) -> ast.IfExp:
        return ast.IfExp(self.truth(node.test), self.visit(node.body), self.visit(node.orelse))

    def visit_Call(self, node: ast.Call) -> ast.expr:
        assert isinstance(node.func, ast.Name), ast.unparse(node)
        name = node.func.id
        if name in self.helpers:
            return cast(ast.expr, self.visit(_inline(self.helpers[name], node.args)))
        arguments = [self.visit(argument) for argument in node.args]
        if name == "State":
            return ast.Tuple(arguments, ast.Load())
        if name in CALLS:
            return ast.Call(ast.Name(CALLS[name], ast.Load()), arguments, [])
        raise ValueError(f"the kernel cannot call {name}")

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        left, right = self.visit(node.left), self.visit(node.right)
        if isinstance(node.op, ast.Div):
            return ast.Call(ast.Name("div_rn", ast.Load()), [left, right], [])
        return ast.BinOp(left, node.op, right)

    def visit_Return(self, node: ast.Return) -> ast.Return:
        assert node.value is not None, "the rule returns its results"
        value = self.visit(node.value)
        if isinstance(value, ast.Tuple):  # (p, State(...)) -> p, v, b, a
            flat: list[ast.expr] = []
            for element in value.elts:
                flat += element.elts if isinstance(element, ast.Tuple) else [element]
            value = ast.Tuple(flat, ast.Load())
        return ast.Return(value)

    # -- statements -----------------------------------------------------------------------

    def block(self, statements: list[ast.stmt]) -> list[ast.stmt]:
        """Statements translated; after ``if C: ... return``, the rest becomes its else."""
        out: list[ast.stmt] = []
        for i, statement in enumerate(statements):
            if _is_docstring(statement):
                continue
            if (
                isinstance(statement, ast.If)
                and not statement.orelse
                and isinstance(statement.body[-1], ast.Return)
                and i + 1 < len(statements)
            ):
                early = ast.If(statement.test, statement.body, statements[i + 1 :])
                out.append(self.visit(early))
                return out
            translated = self.visit(statement)
            if not _is_self_assignment(translated):
                out.append(translated)
        return out


class _Cast(ast.NodeTransformer):
    """Each value the kernel passes converted to the work dtype where it is read
    (``.to(WORK)``): expressions of them are computed in the work dtype."""

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if isinstance(node.ctx, ast.Load) and node.id in SCALARS:
            return _to_work(node)
        return node


def _to_work(node: ast.expr) -> ast.expr:
    return ast.Call(ast.Attribute(node, "to", ast.Load()), [ast.Name("WORK", ast.Load())], [])


def _inline(helper: ast.FunctionDef, arguments: list[ast.expr]) -> ast.expr:
    """A one-``return`` helper's expression with its parameters replaced by ``arguments``."""
    body = [s for s in helper.body if not _is_docstring(s)]
    if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None:
        raise ValueError(f"{helper.name} is not one return statement: it cannot be inlined")
    names = dict(zip((a.arg for a in helper.args.args), arguments, strict=True))

    class Replace(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.expr:
            return copy.deepcopy(names[node.id]) if node.id in names else node

    return cast(ast.expr, Replace().visit(copy.deepcopy(body[0].value)))


def _is_docstring(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)


def _is_self_assignment(statement: ast.stmt) -> bool:
    """``lr, beta = lr, beta`` (what ``lr, beta = hp.lr, hp.beta`` becomes)."""
    return isinstance(statement, ast.Assign) and ast.unparse(statement.targets[0]) == ast.unparse(
        statement.value
    )


def generate() -> str:
    """The text of :mod:`rmsprop._triton_rule` for the rule as it is now."""
    tree = ast.parse(inspect.getsource(_rule))
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    rule = functions.pop("family_update")
    body = _Translate(functions).block(rule.body)
    body = [_Cast().visit(statement) for statement in body]
    blocks = ("p", "g", *STATE_BLOCKS.values())
    switches = [f"{_switch(name)}: tl.constexpr" for name in Switches._fields]
    signature = ", ".join([*blocks, *SCALARS, "WORK: tl.constexpr", *switches])
    module = ast.parse(f"@triton.jit\ndef family_update({signature}):\n    pass\n")
    function = module.body[0]
    assert isinstance(function, ast.FunctionDef)
    function.body = [ast.Expr(ast.Constant(_DOC)), *body]
    return f"{HEADER}\n{OPERATIONS}\n\n{ast.unparse(ast.fix_missing_locations(module))}\n"


_DOC: Final = (
    "rmsprop._rule.family_update on blocks: p, g and the state v, b, a (unused ones any\n"
    "    block), the values as float64 scalars, the switches as constants. Returns the new\n"
    "    p, v, b, a (unused ones as given)."
)


def main() -> int:
    """Rewrite :data:`TARGET`; with ``--check``, only say whether it is up to date."""
    text = generate()
    if "--check" in sys.argv[1:]:
        current = TARGET.read_text() if TARGET.exists() else ""
        print("up to date" if current == text else f"{TARGET} is stale: regenerate it")
        return 0 if current == text else 1
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
