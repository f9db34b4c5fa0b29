"""Matrix products in the orientation XLA's CPU runtime multiplies fastest.

Every ``Dense`` layer's gradient contracts a transposed operand: the weight gradient is
``x^T @ g`` (both operands contracted along their first axis) and the input gradient is
``g @ W^T`` (the right operand contracted along its last axis). XLA on a CPU hands such
a ``dot_general`` to Eigen as it stands, and for the small matrices of a training step
Eigen multiplies transposed operands much more slowly than plain ones: on the
benchmark machine (2 cores) a (32 x 18) @ (18 x 18)^T product took ~2.6 microseconds,
against ~1.0 for the plain product plus ~0.2 to copy the transpose. The baseline's step
makes three such products; made plain, its training program took ~21 % less time.

:func:`with_plain_products` traces a function to a jaxpr (after JAX has differentiated
it, so the gradient's products are in it) and evaluates that jaxpr again, op by op,
with each product of two matrices made a plain ``(M x K) @ (K x N)`` product of
transposed copies. Nothing else changes. The products add up the same terms, though
Eigen's kernels may add them in another order (the baseline's trained weights came out
bit for bit the same). XLA folds a transposed copy back into the product when the
product's result is transposed next, and JAX's gradient of ``x @ W`` computes
``(g^T @ x)^T``: such a product and its transpose are evaluated together, as the plain
product ``x^T @ g``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["with_plain_products"]

# The dimension numbers of a plain product: rows of the left operand times columns of
# the right one, no batch axes.
_PLAIN = (((1,), (0,)), ((), ()))

# Primitives that call a jaxpr of their own (as their "jaxpr" parameter): the products
# inside them are rewritten too (XLA inlines such calls anyway). Others (scan, while,
# cond, remat, custom derivatives, closed_call) are bound unchanged with whatever
# products they hold.
_CALLS = ("jit", "pjit")


def with_plain_products(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its products of two matrices computed as plain products.

    Args:
        fn: A function of arrays (pytrees of them) that JAX can trace.

    Returns:
        A function of the same arguments returning what ``fn`` returns. Call it while
        tracing (inside ``jax.jit`` or a ``lax.scan`` body): it traces ``fn`` once more.
    """

    def plain(*args: Any) -> Any:
        import jax
        from jax.extend.core import jaxpr_as_fun

        leaves = jax.tree.leaves(args)
        try:
            closed, shapes = jax.make_jaxpr(fn, return_shape=True)(*args)
            # Rewritten into a jaxpr of its own, not straight into the caller's trace: an
            # error part way through then leaves nothing there (effects bound before it,
            # such as a callback, would stay in the program and run twice with fn's own).
            rewritten = jax.make_jaxpr(
                lambda *values: _evaluate(closed.jaxpr, closed.consts, list(values))
            )(*leaves)
        except Exception:
            # Only saves time, and relies on JAX's jaxpr API, which another version may
            # change: trace fn itself, which raises any real error of its own.
            return fn(*args)
        flat = jaxpr_as_fun(rewritten)(*leaves)
        return jax.tree.unflatten(jax.tree.structure(shapes), flat)

    return plain


def _evaluate(jaxpr: Any, consts: list[Any], args: list[Any]) -> list[Any]:
    """The values of ``jaxpr``'s outputs, its products made plain (see module doc)."""
    from jax.extend.core import Literal

    env: dict[Any, Any] = {}
    # The transposes of values computed as plain products the other way round, for the
    # transpose that follows them (JAX's gradient of ``x @ W`` computes ``(g^T @ x)^T``).
    transposed: dict[Any, Any] = {}
    only_transposed = _only_transposed(jaxpr)

    def read(var: Any) -> Any:
        return var.val if isinstance(var, Literal) else env[var]

    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        # A Literal (a constant inlined into the jaxpr) is unhashable, and never in it.
        if (
            name == "transpose"
            and not isinstance(eqn.invars[0], Literal)
            and eqn.invars[0] in transposed
        ):
            env[eqn.outvars[0]] = transposed[eqn.invars[0]]
            continue
        values = [read(var) for var in eqn.invars]
        if name == "dot_general" and eqn.outvars[0] in only_transposed:
            result_t = _plain_product_transposed(values, eqn.params)
            if result_t is None:
                outs = _apply(eqn, values)
            else:
                transposed[eqn.outvars[0]] = result_t
                continue  # Only the transpose reads this product, from `transposed`.
        else:
            outs = _apply(eqn, values)
        env.update(zip(eqn.outvars, outs, strict=True))
    return [read(var) for var in jaxpr.outvars]


def _only_transposed(jaxpr: Any) -> set[Any]:
    """The variables that ``jaxpr`` reads only to transpose them (as matrices)."""
    from jax.extend.core import Literal

    readers: dict[Any, list[Any]] = {}
    for eqn in jaxpr.eqns:
        for var in eqn.invars:
            if not isinstance(var, Literal):
                readers.setdefault(var, []).append(eqn)
    outputs = {var for var in jaxpr.outvars if not isinstance(var, Literal)}
    return {
        var
        for var, eqns in readers.items()
        if var not in outputs
        and all(
            e.primitive.name == "transpose" and tuple(e.params["permutation"]) == (1, 0)
            for e in eqns
        )
    }


def _apply(eqn: Any, values: list[Any]) -> list[Any]:
    """One equation's outputs for input ``values``."""
    primitive = eqn.primitive
    if primitive.name == "dot_general":
        product = _plain_product(values, eqn.params)
        if product is not None:
            return [product]
    elif primitive.name in _CALLS and hasattr(eqn.params.get("jaxpr"), "consts"):
        called = eqn.params["jaxpr"]
        return _evaluate(called.jaxpr, called.consts, values)
    params = primitive.get_bind_params(eqn.params)
    subfuns: tuple[Any, ...] = ()
    if isinstance(params, tuple):  # (subfuns, params) before jax 0.7
        subfuns, params = params
    context = getattr(eqn, "ctx", None)
    if context is not None:
        with context.manager:
            out = primitive.bind(*subfuns, *values, **params)
    else:
        out = primitive.bind(*subfuns, *values, **params)
    return list(out) if primitive.multiple_results else [out]


def _axes(values: list[Any], params: dict[str, Any]) -> tuple[int, int] | None:
    """The contracted axes of a product of two matrices (None: another kind of product)."""
    lhs, rhs = values
    (lhs_axes, rhs_axes), batch = params["dimension_numbers"]
    if lhs.ndim != 2 or rhs.ndim != 2 or any(batch) or len(lhs_axes) != 1:
        return None
    return lhs_axes[0], rhs_axes[0]


def _product(a: Any, b: Any, params: dict[str, Any]) -> Any:
    """The plain product ``a @ b``, with the product's other parameters (precision, ...)."""
    from jax.extend.core.primitives import dot_general_p

    return dot_general_p.bind(a, b, **{**params, "dimension_numbers": _PLAIN})


def _t(a: Any) -> Any:
    from jax import lax

    return lax.transpose(a, (1, 0))


def _plain_product(values: list[Any], params: dict[str, Any]) -> Any | None:
    """The product of two matrices as a plain one (None: leave this product alone)."""
    lhs, rhs = values
    axes = _axes(values, params)
    if axes is None or axes == (1, 0):
        return None
    if axes == (1, 1):  # lhs @ rhs^T
        return _product(lhs, _t(rhs), params)
    if axes == (0, 0):  # lhs^T @ rhs
        return _product(_t(lhs), rhs, params)
    # lhs^T @ rhs^T: XLA turns a product of two transposes back into this one.
    return None


def _plain_product_transposed(values: list[Any], params: dict[str, Any]) -> Any | None:
    """The transpose of the product of two matrices, as a plain product (None: leave it)."""
    lhs, rhs = values
    axes = _axes(values, params)
    if axes is None or axes == (1, 0):
        return None  # A plain product transposed: as it stands, it needs no copies.
    swapped = _swapped(params)
    if axes == (1, 1):  # (lhs @ rhs^T)^T = rhs @ lhs^T
        return _product(rhs, _t(lhs), swapped)
    if axes == (0, 0):  # (lhs^T @ rhs)^T = rhs^T @ lhs
        return _product(_t(rhs), lhs, swapped)
    return _product(rhs, lhs, swapped)  # (lhs^T @ rhs^T)^T = rhs @ lhs


def _swapped(params: dict[str, Any]) -> dict[str, Any]:
    """A product's parameters for its operands swapped: each keeps its own precision."""
    precision = params.get("precision")
    if hasattr(precision, "lhs_precision_type"):  # A DotAlgorithm: types per operand
        precision = precision._replace(
            lhs_precision_type=precision.rhs_precision_type,
            rhs_precision_type=precision.lhs_precision_type,
            lhs_component_count=precision.rhs_component_count,
            rhs_component_count=precision.lhs_component_count,
        )
    elif isinstance(precision, tuple):  # (lhs precision, rhs precision)
        precision = precision[::-1]
    return {**params, "precision": precision} if "precision" in params else params
