"""Guards that turn unsupported JAX transformations of `lc.value` into clear errors.

`ContinuousAdjoint` is a `custom_vjp` and `CheckpointAdjoint` differentiates
through diffrax's `RecursiveCheckpointAdjoint`: neither supports forward mode
(`jax.jvp`, `jax.jacfwd`, and so `jax.hessian = jacfwd(jacrev)`), and JAX's own
error ("can't apply forward-mode autodiff (jvp) to a custom_vjp function")
does not say which call is at fault or what to do instead.

`forward_mode_guard(tree, message)` is the identity on the floating-point
leaves of `tree`. Its JVP pushes each tangent through `_forward_only_p`, a
linear identity primitive that transposes to the identity (so `jax.grad`,
`jax.vjp`, `jax.jacrev` and nested reverse mode are unaffected) but raises
`message` when evaluated, batched or compiled, which happens only when a
tangent is pushed forward (forward mode), and before JAX's own error from the
custom_vjp further on in the same program.

`second_order_guard(tree, message)` is the identity whose JVP raises
`message` at once: put it on the inputs of a backward pass that must not be
differentiated again.

`reverse_mode_guard(tree, message)` is the identity, linear, whose transpose
raises `message`: put it on the output tangent of a custom JVP rule that
cannot be transposed (`ForwardSensitivity`, whose rule is a `while_loop`), so
that reverse mode (`jax.grad`, `jax.vjp`, `jax.jacrev`) fails there, at the
first step of the transposition, rather than with JAX's error from the loop.
"""

from __future__ import annotations

import equinox as eqx
import jax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir


class TransformNotSupportedError(TypeError):
    """A JAX transformation of `lc.value` that the gradient strategy cannot do."""


def _identity_primitive(name: str) -> Primitive:
    """A primitive that is the identity when evaluated, batched or compiled; its
    JVP rule is set below."""
    p = Primitive(name)
    p.def_impl(lambda x, *, message: x)
    p.def_abstract_eval(lambda x, *, message: x)
    batching.primitive_batchers[p] = lambda args, dims, *, message: (
        p.bind(args[0], message=message),
        dims[0],
    )
    mlir.register_lowering(
        p, mlir.lower_fun(lambda x, *, message: x, multiple_results=False)
    )
    return p


_forward_only_p = Primitive("lecontrol_forward_mode_guard")
_guard_p = _identity_primitive("lecontrol_transform_guard")


def _raise(message):
    raise TransformNotSupportedError(message)


def _raising(*args, message, **kwargs):
    _raise(message)


# The tangent primitive: linear (its JVP is itself on the tangent), transposes
# to the identity, and raises wherever it is evaluated, batched or compiled,
# which happens only to a tangent pushed forward. (jax.jacfwd is vmap of jvp;
# reverse mode, vmapped or not, never batches the untransposed tangent
# program, since `_guard_p` below is a primitive whose JVP rule JAX applies
# only when differentiating, never ahead of time as it does for custom_jvp.)
_forward_only_p.def_impl(_raising)
_forward_only_p.def_abstract_eval(lambda x, *, message: x)
ad.deflinear2(_forward_only_p, lambda ct, x, *, message: [ct])
batching.primitive_batchers[_forward_only_p] = _raising
mlir.register_lowering(_forward_only_p, _raising)

# The primal primitive: the identity, whose JVP sends the tangent through
# `_forward_only_p` and the primal through itself again, so that an outer
# level of forward mode (jax.hessian = jacfwd(jacrev)) is caught as well.


def _guard_jvp(primals, tangents, *, message):
    (x,), (t,) = primals, tangents
    if type(t) is ad.Zero:
        return _guard_p.bind(x, message=message), t
    return _guard_p.bind(x, message=message), _forward_only_p.bind(t, message=message)


ad.primitive_jvps[_guard_p] = _guard_jvp


def forward_mode_guard(tree, message: str):
    """`tree`, whose floating-point leaves raise `message` under forward mode."""
    return jax.tree.map(
        lambda x: _guard_p.bind(x, message=message) if eqx.is_inexact_array(x) else x,
        tree,
    )


_no_diff_p = _identity_primitive("lecontrol_second_order_guard")


def _no_diff_jvp(primals, tangents, *, message):
    # JAX calls this only for a non-zero tangent: the value is differentiated.
    _raise(message)


ad.primitive_jvps[_no_diff_p] = _no_diff_jvp


def second_order_guard(tree, message: str):
    """`tree`, whose floating-point leaves raise `message` when differentiated."""
    return jax.tree.map(
        lambda x: _no_diff_p.bind(x, message=message) if eqx.is_inexact_array(x) else x,
        tree,
    )


_reverse_guard_p = _identity_primitive("lecontrol_reverse_mode_guard")
ad.deflinear2(_reverse_guard_p, lambda ct, x, *, message: _raise(message))


def reverse_mode_guard(tree, message: str):
    """`tree`, whose floating-point leaves raise `message` when transposed."""
    return jax.tree.map(
        lambda x: (
            _reverse_guard_p.bind(x, message=message) if eqx.is_inexact_array(x) else x
        ),
        tree,
    )
