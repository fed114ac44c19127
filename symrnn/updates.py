r"""Update rules: plain functions from gradients to an update dictionary.

Each rule returns ``{shared_variable: new_value_expression}`` for the parameters
and for its own state: shared variables named after their parameter
(``"<param>/rmsprop_cache"``, ``"<param>/adam_m"``, ...), which :func:`initial_state`
creates and a rule takes as ``state=`` (it creates fresh ones only without it),
so several compiled functions can update one state. :func:`optimizer_state`
collects a rule's state from its updates, by name, for checkpoints.

Rules (g: gradient, p: parameter, lr: learning rate):

* ``sgd``:     :math:`p \leftarrow p - lr\, g`
* ``rmsprop``: :math:`m \leftarrow \rho m + (1-\rho) g^2,\ p \leftarrow p - lr\, g / \sqrt{m + \epsilon}`
  (the tutorial's form: :math:`\epsilon = 10^{-6}` inside the square root)
* ``adam``:    :math:`m \leftarrow \beta_1 m + (1-\beta_1) g,\ v \leftarrow \beta_2 v + (1-\beta_2) g^2,`
  :math:`p \leftarrow p - lr \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t} \frac{m}{\sqrt v + \epsilon}`
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping, Sequence

import numpy as np
import pytensor
import pytensor.tensor as pt

from symrnn.ops.update_steps import rmsprop_step, squared_norm

__all__ = ["OPTIMIZERS", "adam", "clip_by_global_norm", "global_norm", "initial_state", "optimizer_state", "rmsprop", "sgd"]


def _scalar(value, dtype):
    """A scalar expression of ``dtype`` (constants and symbolic scalars alike)."""
    if isinstance(value, pytensor.graph.basic.Variable):
        return pt.cast(value, dtype)
    return pt.constant(np.asarray(value, dtype=dtype))


def _zeros_like(param, suffix: str):
    value = param.get_value(borrow=True)
    return pytensor.shared(np.zeros_like(value), name=f"{param.name}/{suffix}")


def _per_parameter_state(params: Sequence, suffixes: Sequence[str]) -> OrderedDict:
    return OrderedDict(
        (f"{param.name}/{suffix}", _zeros_like(param, suffix)) for param in params for suffix in suffixes
    )


def _adam_state(params: Sequence) -> OrderedDict:
    state = _per_parameter_state(params, ("adam_m", "adam_v"))
    state["adam/step"] = pytensor.shared(np.asarray(0, dtype=params[0].dtype), name="adam/step")
    return state


_STATE_BUILDERS = {
    "sgd": lambda params: OrderedDict(),
    "rmsprop": lambda params: _per_parameter_state(params, ("rmsprop_cache",)),
    "adam": _adam_state,
}


def initial_state(optimizer: str, params: Sequence) -> OrderedDict:
    """Fresh (zero) state of an update rule, to pass to it as ``state=``.

    Parameters
    ----------
    optimizer : ``"sgd"``, ``"rmsprop"`` or ``"adam"``
    params : sequence of named shared variables

    Returns
    -------
    OrderedDict name -> shared variable: ``"<param>/rmsprop_cache"`` for RMSprop;
    ``"<param>/adam_m"``, ``"<param>/adam_v"`` and ``"adam/step"`` for Adam;
    nothing for SGD.
    """
    if optimizer not in _STATE_BUILDERS:
        raise ValueError(f"optimizer must be one of {sorted(_STATE_BUILDERS)}, not {optimizer!r}")
    return _STATE_BUILDERS[optimizer](params)


def _state_variable(state: Mapping, name: str):
    if name not in state:
        raise ValueError(f"optimizer state has no variable {name!r}")
    return state[name]


def _guarded(updates: OrderedDict, apply_if) -> OrderedDict:
    """``updates`` with every new value replaced by the old one where ``apply_if`` is false."""
    if apply_if is None:
        return updates
    return OrderedDict((var, pt.switch(apply_if, new, var)) for var, new in updates.items())


def sgd(grads: Sequence, params: Sequence, learning_rate, state: Mapping | None = None, apply_if=None) -> OrderedDict:
    """Plain stochastic gradient descent.

    Parameters
    ----------
    grads : sequence of TensorVariable, each the shape of its parameter
    params : sequence of shared variables
    learning_rate : float or scalar TensorVariable
    state : mapping, optional
        The rule's state variables (:func:`initial_state`); SGD has none.
    apply_if : scalar TensorVariable (bool), optional
        Where false, the step changes no parameter and no state (the training
        step's guard against a non-finite loss or gradient). Every rule takes it.

    Returns
    -------
    OrderedDict mapping each parameter to its updated value.
    """
    updates = OrderedDict()
    for param, grad in zip(params, grads):
        updates[param] = param - _scalar(learning_rate, param.dtype) * grad
    return _guarded(updates, apply_if)


def rmsprop(grads: Sequence, params: Sequence, learning_rate, decay=0.9, epsilon=1e-6,
            state: Mapping | None = None, apply_if=None, fused: bool = False) -> OrderedDict:
    """RMSprop exactly as the tutorial's ``sgd_step``.

    Parameters
    ----------
    grads, params, learning_rate : as :func:`sgd`
    decay : float or scalar TensorVariable
        :math:`\\rho`, the cache's decay.
    epsilon : float
        Added inside the square root.
    state : mapping name -> shared variable, optional
        The caches to update (``initial_state("rmsprop", params)``); new zero
        caches when omitted.
    apply_if : scalar TensorVariable (bool), optional
        As for :func:`sgd`.
    fused : bool
        One :class:`symrnn.ops.update_steps.RMSpropStep` (a Numba pass into new arrays) per
        parameter instead of the elementwise graph (same arithmetic; CPU
        backends only, not JAX).

    Returns
    -------
    OrderedDict with the parameters and their caches ``"<name>/rmsprop_cache"``.
    """
    state = initial_state("rmsprop", params) if state is None else state
    updates = OrderedDict()
    for param, grad in zip(params, grads):
        dtype = param.dtype
        cache = _state_variable(state, f"{param.name}/rmsprop_cache")
        rho = _scalar(decay, dtype)
        lr, eps = _scalar(learning_rate, dtype), _scalar(epsilon, dtype)
        if fused:
            new_param, new_cache = rmsprop_step(param, cache, grad, lr, rho, eps, 1 if apply_if is None else apply_if)
            updates[cache], updates[param] = new_cache, new_param
            continue
        new_cache = rho * cache + (_scalar(1, dtype) - rho) * pt.sqr(grad)
        updates[cache] = new_cache
        updates[param] = param - lr * grad / pt.sqrt(new_cache + eps)
    return updates if fused else _guarded(updates, apply_if)


def adam(grads: Sequence, params: Sequence, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8,
         state: Mapping | None = None, apply_if=None) -> OrderedDict:
    """Adam (Kingma & Ba, 2015) with bias correction folded into the step size.

    Parameters
    ----------
    grads, params, learning_rate : as :func:`sgd`
    beta1, beta2, epsilon : float
    state : mapping name -> shared variable, optional
        The moments and step counter to update (``initial_state("adam", params)``);
        new zero ones when omitted.
    apply_if : scalar TensorVariable (bool), optional
        As for :func:`sgd` (the step counter too stays where it is).

    Returns
    -------
    OrderedDict with the parameters, their moments ``"<name>/adam_m"``,
    ``"<name>/adam_v"`` and the shared step counter ``"adam/step"``.
    """
    state = initial_state("adam", params) if state is None else state
    updates = OrderedDict()
    dtype = params[0].dtype
    step = _state_variable(state, "adam/step")
    t = step + _scalar(1, dtype)
    one = _scalar(1, dtype)
    b1, b2 = _scalar(beta1, dtype), _scalar(beta2, dtype)
    step_size = _scalar(learning_rate, dtype) * pt.sqrt(one - b2**t) / (one - b1**t)
    for param, grad in zip(params, grads):
        m = _state_variable(state, f"{param.name}/adam_m")
        v = _state_variable(state, f"{param.name}/adam_v")
        new_m = b1 * m + (one - b1) * grad
        new_v = b2 * v + (one - b2) * pt.sqr(grad)
        updates[m] = new_m
        updates[v] = new_v
        updates[param] = param - pt.cast(step_size, param.dtype) * new_m / (pt.sqrt(new_v) + _scalar(epsilon, param.dtype))
    updates[step] = t
    return _guarded(updates, apply_if)


#: Update rules by name, as chosen by the ``OPTIMIZER`` setting.
OPTIMIZERS = {"sgd": sgd, "rmsprop": rmsprop, "adam": adam}


def global_norm(grads: Sequence, fused: bool = False):
    """The joint L2 norm of all gradients, a scalar of their dtype.

    ``fused``: each array's sum of squares in one :class:`symrnn.ops.update_steps.SquaredNorm`
    (accumulated in float64; CPU backends only) instead of the ``sum(sqr(g))`` graph.
    """
    dtype = grads[0].dtype
    if fused:
        return pt.cast(pt.sqrt(sum(squared_norm(g) for g in grads)), dtype)
    return pt.sqrt(sum(pt.sum(pt.sqr(g)) for g in grads))


def clip_by_global_norm(grads: Sequence, max_norm, fused: bool = False):
    """Scale all gradients together so their joint L2 norm is at most ``max_norm``.

    Parameters
    ----------
    grads : sequence of TensorVariable
    max_norm : float (> 0)
    fused : bool
        As for :func:`global_norm`.

    Returns
    -------
    clipped : list of TensorVariable, same shapes and dtypes
    norm : scalar TensorVariable, the norm before clipping
    """
    dtype = grads[0].dtype
    norm = global_norm(grads, fused)
    limit = _scalar(max_norm, dtype)
    scale = pt.minimum(_scalar(1, dtype), limit / pt.maximum(norm, _scalar(1e-12, dtype)))
    return [g * pt.cast(scale, g.dtype) for g in grads], norm


def optimizer_state(updates: Mapping, params: Sequence) -> dict:
    """The optimizer's state variables in ``updates``, by name.

    Parameters
    ----------
    updates : mapping from an update rule
    params : the parameters (excluded from the result)

    Returns
    -------
    dict name -> shared variable
    """
    param_set = set(params)
    return {var.name: var for var in updates if var not in param_set}
