"""Plain matrix products (engines._products): same values, plain products in the program."""

from __future__ import annotations

import os
import re

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
from jax import lax

from appsleuth.data.prepare import prepare_data
from appsleuth.data.synth import generate_sherlock
from appsleuth.engines import clear_fused_cache, run_fused
from appsleuth.engines import fused as fused_module
from appsleuth.engines._products import with_plain_products

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="the fused engine needs KERAS_BACKEND=jax"
)

_DOT = re.compile(r" dot\(.*?lhs_contracting_dims=\{(\d+)\}, rhs_contracting_dims=\{(\d+)\}")


def _contractions(compiled) -> list[tuple[int, int]]:
    """The (lhs, rhs) contracting axes of every product in a compiled program."""
    return [(int(a), int(b)) for a, b in _DOT.findall(compiled.as_text())]


def _compile(fn, *args):
    """``fn`` compiled as the fused engine compiles a program with small products on a
    CPU (XLA's library product fusions, off there, take transposed operands as they are)."""
    options = fused_module._option_sets(32 * 19 * 18)[0]
    return jax.jit(fn).lower(*args).compile(options)


def _matrices(shape_a, shape_b, seed=0):
    rng = np.random.default_rng(seed)
    return (
        jnp.asarray(rng.normal(size=shape_a).astype(np.float32)),
        jnp.asarray(rng.normal(size=shape_b).astype(np.float32)),
    )


# (lhs shape, rhs shape, lhs axis, rhs axis): each orientation of a product of matrices.
ORIENTATIONS = [
    ((32, 19), (19, 18), 1, 0),
    ((32, 18), (19, 18), 1, 1),  # g @ W^T: a Dense layer's input gradient
    ((32, 19), (32, 18), 0, 0),  # x^T @ g: its weight gradient
]


@pytest.mark.parametrize(("shape_a", "shape_b", "axis_a", "axis_b"), ORIENTATIONS)
def test_products_equal_and_are_plain(shape_a, shape_b, axis_a, axis_b):
    a, b = _matrices(shape_a, shape_b)

    def product(a, b):
        return lax.dot_general(a, b, (((axis_a,), (axis_b,)), ((), ())))

    expected = np.asarray(jax.jit(product)(a, b))
    compiled = _compile(with_plain_products(product), a, b)
    np.testing.assert_allclose(np.asarray(compiled(a, b)), expected, rtol=1e-5, atol=1e-5)
    assert _contractions(compiled) == [(1, 0)]


@pytest.mark.parametrize(
    ("shape_a", "shape_b", "axis_a", "axis_b"),
    [*ORIENTATIONS, ((19, 32), (18, 19), 0, 1)],
)
def test_products_read_only_by_a_transpose_are_computed_transposed(
    shape_a, shape_b, axis_a, axis_b
):
    a, b = _matrices(shape_a, shape_b)

    def transposed_product(a, b):
        return lax.dot_general(a, b, (((axis_a,), (axis_b,)), ((), ()))).T * 2.0

    expected = np.asarray(jax.jit(transposed_product)(a, b))
    compiled = _compile(with_plain_products(transposed_product), a, b)
    np.testing.assert_allclose(np.asarray(compiled(a, b)), expected, rtol=1e-5, atol=1e-5)
    if (axis_a, axis_b) != (1, 0):  # A plain product transposed is left as it is.
        assert _contractions(compiled) == [(1, 0)]


def test_training_steps_of_a_two_layer_network_use_plain_products():
    """x^T @ g is followed by a transpose in JAX's gradient: still plain once compiled."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(3, 32, 19)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, 18, (3, 32)))
    weights = _matrices((19, 18), (18, 18))

    def loss(weights, x, labels):
        w1, w2 = weights
        logits = jax.nn.relu(x @ w1) @ w2
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(32), labels])

    def step(weights, batch):
        value, grads = jax.value_and_grad(loss)(weights, *batch)
        return jax.tree.map(lambda w, g: w - 0.1 * g, weights, grads), value

    def train(step):
        return lambda weights, x, labels: lax.scan(step, weights, (x, labels))

    expected = _compile(train(step), weights, x, labels)
    compiled = _compile(train(with_plain_products(step)), weights, x, labels)
    exp_w, exp_loss = expected(weights, x, labels)
    got_w, got_loss = compiled(weights, x, labels)
    np.testing.assert_allclose(np.asarray(got_loss), np.asarray(exp_loss), rtol=1e-6)
    for got, exp in zip(got_w, exp_w, strict=True):
        # The same sums, added up in another order by Eigen's kernels: rounding may differ.
        np.testing.assert_allclose(np.asarray(got), np.asarray(exp), atol=1e-6)
    assert set(_contractions(expected)) != {(1, 0)}
    assert _contractions(compiled) == [(1, 0)] * 5


def test_products_inside_nested_jit_are_rewritten_and_others_kept():
    a, b = _matrices((32, 19), (32, 18))
    batched = jnp.stack([a, a + 1.0])

    @jax.jit
    def inner(a, b):
        return a.T @ b

    def fn(a, b, batched):
        # A product with batch axes and one of rank 3 are left as they are.
        by_batch = jnp.einsum("bij,bik->bjk", batched, jnp.stack([b, b]))
        rank3 = lax.dot_general(batched, a, (((1,), (0,)), ((), ())))
        return inner(a, b), by_batch, rank3, {"none": None, "scale": jnp.float32(2.0)}

    expected = jax.jit(fn)(a, b, batched)
    got = jax.jit(with_plain_products(fn))(a, b, batched)
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-5, atol=1e-5)


def test_integer_and_mixed_precision_products_keep_their_types():
    a = jnp.arange(32 * 19, dtype=jnp.int32).reshape(32, 19) % 7
    b = jnp.arange(32 * 18, dtype=jnp.int32).reshape(32, 18) % 5
    exact = jax.jit(with_plain_products(lambda a, b: a.T @ b))(a, b)
    assert exact.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(exact), np.asarray(a).T @ np.asarray(b))

    half_a, half_b = (m.astype(jnp.bfloat16) for m in _matrices((32, 19), (32, 18)))

    def mixed(a, b):
        return lax.dot_general(a, b, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)

    got = jax.jit(with_plain_products(mixed))(half_a, half_b)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(
        np.asarray(got), np.asarray(jax.jit(mixed)(half_a, half_b)), rtol=1e-2, atol=1e-2
    )


@pytest.mark.parametrize(
    ("precision", "swapped"),
    [
        (
            (lax.Precision.DEFAULT, lax.Precision.HIGHEST),
            (lax.Precision.HIGHEST, lax.Precision.DEFAULT),
        ),
        (
            lax.DotAlgorithm(jnp.float32, jnp.bfloat16, jnp.float32),
            lax.DotAlgorithm(jnp.bfloat16, jnp.float32, jnp.float32),
        ),
        (lax.Precision.HIGHEST, (lax.Precision.HIGHEST, lax.Precision.HIGHEST)),
    ],
    ids=["pair", "algorithm", "one"],
)
def test_operands_swapped_to_compute_a_product_transposed_keep_their_precisions(precision, swapped):
    a, b = _matrices((32, 19), (32, 18))

    def transposed_product(a, b):  # (a^T @ b)^T, computed as b^T @ a
        return lax.dot_general(a, b, (((0,), (0,)), ((), ())), precision=precision).T * 2.0

    closed = jax.make_jaxpr(with_plain_products(transposed_product))(a, b)
    (product,) = [e for e in closed.jaxpr.eqns if e.primitive.name == "dot_general"]
    assert product.invars[1] is closed.jaxpr.invars[0]  # a is now the right operand
    assert product.params["precision"] == swapped


def test_scan_and_custom_derivatives_pass_through():
    x, w = _matrices((4, 8, 5), (5, 5))

    @jax.custom_jvp
    def clipped(v):
        return jnp.clip(v, -1.0, 1.0)

    @clipped.defjvp
    def _clipped_jvp(primals, tangents):
        (v,), (dv,) = primals, tangents
        return clipped(v), dv * (jnp.abs(v) < 1.0)

    def fn(w, x):
        def body(carry, rows):
            return carry + jnp.sum(clipped(rows @ carry.T)), None

        out, _ = lax.scan(body, w, x)
        return out

    expected = jax.jit(jax.grad(lambda w: jnp.sum(fn(w, x))))(w)
    got = jax.jit(with_plain_products(jax.grad(lambda w: jnp.sum(fn(w, x)))))(w)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_a_function_that_fails_raises_its_own_error():
    def broken(a, b):
        return a @ b  # (3, 4) @ (5, 6): JAX's own shape error

    a, b = _matrices((3, 4), (5, 6))
    with pytest.raises(TypeError, match="dot_general requires contracting dimensions"):
        jax.jit(with_plain_products(broken))(a, b)


def test_a_jaxpr_that_cannot_be_evaluated_falls_back_to_the_function(monkeypatch):
    from appsleuth.engines import _products

    def unreadable(*args):
        raise AttributeError("a jaxpr from another JAX version")

    monkeypatch.setattr(_products, "_evaluate", unreadable)
    a, b = _matrices((32, 19), (32, 18))

    def product(a, b):  # x^T @ g
        return lax.dot_general(a, b, (((0,), (0,)), ((), ())))

    compiled = _compile(with_plain_products(product), a, b)
    np.testing.assert_allclose(
        np.asarray(compiled(a, b)), np.asarray(a).T @ np.asarray(b), rtol=1e-5, atol=1e-4
    )
    assert _contractions(compiled) == [(0, 0)]  # As traced, the transposed operand


def test_a_transposed_constant_inlined_into_the_jaxpr_is_rewritten():
    """JAX's simplified jaxpr constants inline arrays as Literals, which are unhashable."""
    flag = "jax_use_simplified_jaxpr_constants"
    previous = getattr(jax.config, flag, None)
    if previous is None:
        pytest.skip(f"this JAX has no {flag}")
    constant = np.arange(32 * 19, dtype=np.float32).reshape(32, 19) / 100
    a, b = _matrices((32, 19), (32, 18))

    def fn(a, b):
        return lax.dot_general(a, b, (((0,), (0,)), ((), ()))) + lax.transpose(constant, (1, 0)) @ b

    jax.config.update(flag, True)
    try:
        compiled = _compile(with_plain_products(fn), a, b)
    finally:
        jax.config.update(flag, previous)
    expected = np.asarray(a).T @ np.asarray(b) + constant.T @ np.asarray(b)
    np.testing.assert_allclose(np.asarray(compiled(a, b)), expected, rtol=1e-4, atol=1e-4)
    assert set(_contractions(compiled)) == {(1, 0)}


def test_a_rewrite_that_fails_part_way_leaves_no_effect_behind(monkeypatch):
    """Effects bound before the failure would stay in the program beside fn's own."""
    from appsleuth.engines import _products

    original = _products._apply
    products = []

    def failing_at_the_second_product(eqn, values):
        if eqn.primitive.name == "dot_general":
            products.append(eqn)
            if len(products) == 2:
                raise AttributeError("a jaxpr from another JAX version")
        return original(eqn, values)

    monkeypatch.setattr(_products, "_apply", failing_at_the_second_product)
    seen = []
    a, b = _matrices((32, 19), (32, 18))

    def fn(a, b):
        p = lax.dot_general(a, b, (((0,), (0,)), ((), ())))
        jax.debug.callback(lambda total: seen.append(float(total)), p.sum())
        return p @ p.T

    got = jax.jit(with_plain_products(fn))(a, b)
    jax.effects_barrier()
    assert len(products) == 2  # It did fail part way, and fell back to fn.
    assert len(seen) == 1
    expected = np.asarray(a).T @ np.asarray(b)
    np.testing.assert_allclose(np.asarray(got), expected @ expected.T, rtol=1e-4)


@pytest.fixture(scope="module")
def data():
    prepared = prepare_data(generate_sherlock(4_000, seed=3))
    return prepared.x_train[:2_000], prepared.y_train[:2_000], prepared.x_val, prepared.y_val


def _baseline(n_features, *, dropout=False):
    keras.utils.set_random_seed(5)
    layers = [keras.Input((n_features,)), keras.layers.Dense(18, activation="relu")]
    if dropout:
        layers.append(keras.layers.Dropout(0.2))
    model = keras.Sequential([*layers, keras.layers.Dense(18, activation="softmax")])
    model.compile(
        optimizer=keras.optimizers.Adam(0.003),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


@pytest.mark.parametrize("dropout", [False, True], ids=["baseline", "dropout"])
def test_fused_training_gives_the_same_weights_with_plain_products(data, dropout, monkeypatch):
    x, y, xv, yv = data
    weights, histories = [], []
    for plain in (False, True):
        clear_fused_cache()
        monkeypatch.setattr(fused_module, "_PLAIN_PRODUCTS", plain)
        model = _baseline(x.shape[1], dropout=dropout)
        # 2,000 rows in batches of 32: 62 full batches and a partial one of 16.
        history = run_fused(model, x, y, epochs=3, batch_size=32, validation_data=(xv, yv))
        weights.append([np.asarray(w) for w in model.get_weights()])
        histories.append(history.history)
    for without, with_ in zip(*weights, strict=True):
        np.testing.assert_allclose(with_, without, rtol=1e-5, atol=1e-6)
    for key, values in histories[0].items():
        np.testing.assert_allclose(histories[1][key], values, rtol=1e-5, atol=1e-6)


def test_the_fused_training_program_has_only_plain_products_on_cpu(data, monkeypatch):
    x, y, _, _ = data
    compiled = []
    original = fused_module._compile

    def recording(lowered, option_sets):
        program = original(lowered, option_sets)
        compiled.append(program)
        return program

    monkeypatch.setattr(fused_module, "_compile", recording)
    for plain in (False, True):
        clear_fused_cache()
        compiled.clear()
        monkeypatch.setattr(fused_module, "_PLAIN_PRODUCTS", plain)
        run_fused(_baseline(x.shape[1]), x, y, epochs=1, batch_size=32)
        products = [_contractions(p) for p in compiled]
        training = [c for c in products if len(c) == 10]  # 5 per step, 2 steps: scan, last
        assert len(training) == 1
        if plain:
            assert set(training[0]) == {(1, 0)}
        else:  # JAX's gradient: both Dense layers' x^T @ g and one g @ W^T, per step
            assert sum(c != (1, 0) for c in training[0]) == 6


@pytest.mark.parametrize(("backend", "wrapped"), [("cpu", True), ("gpu", False), ("tpu", False)])
def test_only_a_cpu_makes_the_training_steps_products_plain(data, monkeypatch, backend, wrapped):
    """GPU libraries take transposed operands as they are: the step is traced as it is."""
    calls = []
    monkeypatch.setattr(fused_module, "with_plain_products", lambda fn: calls.append(fn) or fn)
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    fused_module._train_function(_baseline(data[0].shape[1]))
    assert bool(calls) is wrapped
