r"""A word- or character-level recurrent language model built from symrnn pieces.

Architecture (time-major, batch B, steps T)::

    ids (T, B) --embedding--> (T, B, D)
      for each layer l:  a = x @ W_x + b            (one product for all steps)
                         h = recurrence(cell, a, mask, W_h)   (only h @ W_h inside the loop)
                         x = dropout(h)             (training only, between layers)
    logits = x @ W_out + b_out                      (one product for all steps)
    loss   = sum over real tokens of -log softmax(logits)[target]

With ``cell="gru"``, ``num_layers=2``, ``gate="hard_sigmoid"`` and
``embedding_dim == hidden_dim`` this is exactly the WildML tutorial's GRUTheano
(see :mod:`models.gru` for the mapping of parameters).

Parameters are shared variables, named:

====================  ===============  ==========================================
name                  shape            initial values
====================  ===============  ==========================================
``embedding``         (V, D)           uniform(+-sqrt(1/V))
``layer<l>/W_x``      (D or H, k*H)    uniform(+-sqrt(1/H))
``layer<l>/W_h``      (H, k*H)         uniform(+-sqrt(1/H))
``layer<l>/b``        (k*H,)           zeros
``output/W``          (H, V)           uniform(+-sqrt(1/H))
``output/b``          (V,)             zeros
====================  ===============  ==========================================

with k = 3 gate blocks for the GRU, 4 for the LSTM, 1 for the vanilla RNN.

The model owns all training state: the parameters, one optimizer state per
update rule (created on first need and shared by every compiled function, so
the per-shape functions of the JAX backend update the same RMSprop caches or
Adam moments) and the dropout generator. :meth:`RNNLanguageModel.state` and
:meth:`RNNLanguageModel.load_state` read and set all of it; compiled functions
only read and update it.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Mapping

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytensor.tensor.random as ptr
from pytensor.tensor.special import softmax

from symrnn import losses, updates as update_rules
from symrnn.backend import compile_mode, uses_fused_ops
from symrnn.cells import CELLS, GATES
from symrnn.layers import embed, project
from symrnn.recurrence import recurrent_layer, step_layer

__all__ = ["RNNLanguageModel", "one_step", "parameter_shapes", "stacked_states"]


def stacked_states(params: Mapping, ids, mask, num_layers: int, cell: str, gate: str,
                   truncate_gradient: int = -1, implementation: str = "auto", dropout=None):
    """Top layer's states of a stacked recurrent network over a padded batch.

    Parameters
    ----------
    params : mapping name -> TensorVariable
        ``embedding`` (V, D) and ``layer<l>/W_x``, ``layer<l>/W_h``, ``layer<l>/b``
        (shared variables or expressions of them).
    ids : TensorVariable (T, B) int32
    mask : TensorVariable (T, B) float
    num_layers, cell, gate, truncate_gradient, implementation : see :class:`RNNLanguageModel`
    dropout : callable or None
        Applied to each layer's input above the first and to the top output.

    Returns
    -------
    TensorVariable (T, B, H)
    """
    drop = dropout or (lambda x: x)
    x = embed(params["embedding"], ids)
    for layer in range(num_layers):
        if layer > 0:
            x = drop(x)
        W_h = params[f"layer{layer}/W_h"]
        zeros = pt.zeros((ids.shape[1], W_h.shape[0]), dtype=W_h.dtype)
        projected = project(x, params[f"layer{layer}/W_x"], params[f"layer{layer}/b"])
        x = recurrent_layer(
            cell, projected, mask, [zeros] * CELLS[cell].states, W_h, gate=gate,
            truncate_gradient=truncate_gradient, implementation=implementation,
        )[0]
    return drop(x)


def one_step(params: Mapping, ids, states, num_layers: int, cell: str, gate: str, implementation: str = "scan"):
    """One time step of the whole network, for generation.

    Parameters
    ----------
    params : mapping name -> TensorVariable (as :func:`stacked_states`, plus
        ``output/W`` (H, V) and ``output/b`` (V,))
    ids : TensorVariable (B,) int32
    states : list of TensorVariable (B, H), ``num_layers * cell.states`` of them
    num_layers, cell, gate : see :class:`RNNLanguageModel`
    implementation : see :func:`symrnn.recurrence.step_layer`

    Returns
    -------
    logits : TensorVariable (B, V)
    new_states : list of TensorVariable (B, H)
    """
    n_states = CELLS[cell].states
    x = params["embedding"][ids]
    new_states = []
    for layer in range(num_layers):
        projected = pt.dot(x, params[f"layer{layer}/W_x"]) + params[f"layer{layer}/b"]
        layer_states = step_layer(cell, projected, states[layer * n_states : (layer + 1) * n_states],
                                  params[f"layer{layer}/W_h"], gate, implementation)
        new_states.extend(layer_states)
        x = layer_states[0]
    return pt.dot(x, params["output/W"]) + params["output/b"], new_states


def parameter_shapes(word_dim: int, embedding_dim: int, hidden_dim: int, num_layers: int, cell: str) -> "OrderedDict[str, tuple]":
    """Names and shapes of a model's parameters, in a fixed order.

    Returns
    -------
    OrderedDict name -> shape tuple
    """
    k = CELLS[cell].blocks
    shapes = OrderedDict(embedding=(word_dim, embedding_dim))
    for layer in range(num_layers):
        fan_in = embedding_dim if layer == 0 else hidden_dim
        shapes[f"layer{layer}/W_x"] = (fan_in, k * hidden_dim)
        shapes[f"layer{layer}/W_h"] = (hidden_dim, k * hidden_dim)
        shapes[f"layer{layer}/b"] = (k * hidden_dim,)
    shapes["output/W"] = (hidden_dim, word_dim)
    shapes["output/b"] = (word_dim,)
    return shapes


class _PerShape:
    """A batch function compiled once per input shape (static shapes for JAX).

    The first call with a new (T, B) shape compiles; later calls reuse it, so
    batches padded to a few fixed lengths (``BUCKET_WIDTH``) compile a few times.
    """

    def __init__(self, build):
        self.build = build
        self.functions: dict = {}

    def __call__(self, ids, *args):
        shape = tuple(np.shape(ids))
        if shape not in self.functions:
            self.functions[shape] = self.build(shape)
        return self.functions[shape](ids, *args)


class _DeviceStateStep:
    """The one-step function under JAX, with states left on the device between calls.

    PyTensor's input checks turn every argument into a NumPy array, which under
    JAX copies the states (B, H) back to the host and out again at each token.
    Here only the ids are checked (cast to int32) and the states, as returned
    by the previous call, go to JAX untouched.
    """

    def __init__(self, function):
        self.function = function
        function.trust_input = True

    def __call__(self, ids, *states):
        return self.function(np.asarray(ids, dtype=np.int32), *states)


class RNNLanguageModel:
    """Stacked recurrent language model with masked minibatch training.

    Parameters
    ----------
    word_dim : int
        Vocabulary size V.
    embedding_dim : int
        Word vector size D (really used, unlike the tutorial's EMBEDDING_DIM).
    hidden_dim : int
        State size H of every layer.
    num_layers : int
    cell : ``"gru"``, ``"lstm"`` or ``"rnn"``
    gate : ``"hard_sigmoid"`` (tutorial) or ``"sigmoid"``
    dtype : ``"float32"`` or ``"float64"``
    seed : int or None
        Seeds the initial parameter values and the dropout stream.
    truncate_gradient : int
        -1 for full backpropagation through time.
    dropout : float in [0, 1)
        Probability of dropping a unit between layers (and before the output
        layer) during training; never applied in evaluation or generation.
    backend : ``"cpu"``, ``"numba"`` or ``"jax"`` (see :mod:`symrnn.backend`)
    implementation : recurrence implementation, ``"auto"``, ``"scan"`` or ``"fused"``
    loss_implementation : ``"auto"``, ``"reference"`` or ``"fused"``
    initial_values : mapping name -> array, optional
        Parameter values to start from (shapes checked) instead of random ones.

    Raises
    ------
    ValueError
        For an unknown cell, gate or dtype, a dropout outside [0, 1), dropout
        under the JAX backend, or initial values of the wrong shape.
    """

    def __init__(
        self,
        word_dim: int,
        embedding_dim: int,
        hidden_dim: int,
        num_layers: int = 2,
        cell: str = "gru",
        gate: str = "hard_sigmoid",
        dtype: str = "float32",
        seed: int | None = None,
        truncate_gradient: int = -1,
        dropout: float = 0.0,
        backend: str = "cpu",
        implementation: str = "auto",
        loss_implementation: str = "auto",
        initial_values: Mapping[str, np.ndarray] | None = None,
    ):
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, not {cell!r}")
        if gate not in GATES:
            raise ValueError(f"gate must be one of {sorted(GATES)}, not {gate!r}")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, not {dtype!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {dropout!r}")
        if dropout and backend == "jax":
            # PyTensor's JAX backend has no binomial sampler (without NumPyro) and gives
            # each compiled function a private copy of a shared generator.
            raise ValueError("dropout needs the cpu or numba backend; the jax backend cannot draw its masks")
        self.word_dim, self.embedding_dim, self.hidden_dim = int(word_dim), int(embedding_dim), int(hidden_dim)
        self.num_layers, self.cell, self.gate, self.dtype = int(num_layers), cell, gate, dtype
        self.truncate_gradient, self.dropout, self.backend = int(truncate_gradient), float(dropout), backend
        if not uses_fused_ops(backend):
            implementation = "scan" if implementation == "auto" else implementation
            loss_implementation = "reference" if loss_implementation == "auto" else loss_implementation
        self.implementation, self.loss_implementation = implementation, loss_implementation
        self.mode = compile_mode(backend)
        self.seed = seed
        self.shapes = parameter_shapes(self.word_dim, self.embedding_dim, self.hidden_dim, self.num_layers, cell)
        values = dict(initial_values) if initial_values is not None else self._initial_values(np.random.default_rng(seed))
        self.params: "OrderedDict[str, pytensor.compile.SharedVariable]" = OrderedDict()
        for name, shape in self.shapes.items():
            value = np.asarray(values[name])
            if value.shape != shape:
                raise ValueError(f"parameter {name} has shape {value.shape}, expected {shape}")
            # Static shapes let every backend (JAX included) see H as a constant.
            self.params[name] = pytensor.shared(value.astype(dtype), name=name, shape=shape)
        self.dropout_rng = ptr.shared_rng(seed=seed, name="dropout/rng")
        self._rng_updates: dict = {}
        self._functions: dict = {}
        self.optimizer_states: "dict[str, OrderedDict[str, pytensor.compile.SharedVariable]]" = {}
        self._keep_values_on_device()

    # ------------------------------------------------------------------ values
    def _initial_values(self, rng: np.random.Generator) -> dict:
        values = {}
        for name, shape in self.shapes.items():
            if name.endswith("/b"):
                values[name] = np.zeros(shape)
            else:
                bound = np.sqrt(1.0 / (self.word_dim if name == "embedding" else self.hidden_dim))
                values[name] = rng.uniform(-bound, bound, shape)
        return values

    def get_values(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of the parameter values, by name, as NumPy arrays (on the host)."""
        return OrderedDict((name, np.array(p.get_value(borrow=True))) for name, p in self.params.items())

    def _keep_values_on_device(self) -> None:
        """Under JAX, hold the parameter and optimizer state values as device arrays.

        PyTensor keeps a shared variable's value as a NumPy array until a
        compiled update replaces it; under JAX each call of a function that
        reads NumPy values copies them to the device again (the 8000 x 128
        output matrix for every generated token). Training updates store
        device arrays themselves; this covers the values set from NumPy
        (initial, loaded, restored).
        """
        if self.backend != "jax":
            return
        import jax

        for variable in (*self.params.values(), *self.optimizer_state.values()):
            variable.container.storage[0] = jax.device_put(variable.container.storage[0])

    def set_values(self, values: Mapping[str, np.ndarray]) -> None:
        """Set parameter values (all names, exact shapes; cast to the model's dtype)."""
        missing = set(self.params) - set(values)
        if missing:
            raise ValueError(f"missing parameter values: {sorted(missing)}")
        for name, param in self.params.items():
            value = np.asarray(values[name])
            if value.shape != self.shapes[name]:
                raise ValueError(f"parameter {name} has shape {value.shape}, expected {self.shapes[name]}")
            param.set_value(value.astype(self.dtype))
        self._keep_values_on_device()

    @property
    def optimizer_state(self) -> "OrderedDict[str, pytensor.compile.SharedVariable]":
        """Every optimizer state variable the model holds, by name (``"<param>/rmsprop_cache"`` ...)."""
        return OrderedDict((name, v) for state in self.optimizer_states.values() for name, v in state.items())

    def optimizer_variables(self, optimizer: str) -> "OrderedDict[str, pytensor.compile.SharedVariable]":
        """The state of update rule ``optimizer``, created (zero) on first need, then always the same variables.

        Raises
        ------
        ValueError
            For an unknown optimizer name.
        """
        if optimizer not in update_rules.OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(update_rules.OPTIMIZERS)}, not {optimizer!r}")
        if optimizer not in self.optimizer_states:
            self.optimizer_states[optimizer] = update_rules.initial_state(optimizer, list(self.params.values()))
            self._keep_values_on_device()
        return self.optimizer_states[optimizer]

    def state(self) -> dict:
        """Copies of everything training changes, on the host.

        Returns
        -------
        dict with ``"params"`` (as :meth:`get_values`), ``"optimizer_state"``
        (name -> ndarray, every variable of :attr:`optimizer_state`) and
        ``"dropout_rng"`` (the dropout generator's ``bit_generator.state``, a
        JSON-serialisable dict).
        """
        return {
            "params": self.get_values(),
            "optimizer_state": OrderedDict(
                (name, np.array(v.get_value(borrow=True))) for name, v in self.optimizer_state.items()
            ),
            "dropout_rng": copy.deepcopy(self.dropout_rng.get_value(borrow=True).bit_generator.state),
        }

    def load_state(self, state: Mapping) -> None:
        """Set what :meth:`state` returned (all checked before anything is set).

        Parameters
        ----------
        state : mapping
            ``"params"`` (every parameter), ``"optimizer_state"`` (exactly the
            variables of :attr:`optimizer_state`, by name), and optionally
            ``"dropout_rng"`` (a ``bit_generator.state`` dict).

        Raises
        ------
        ValueError
            A parameter or optimizer state variable is missing, unknown, or of the wrong shape.
        """
        saved = state["optimizer_state"]
        unknown = sorted(set(saved) - set(self.optimizer_state))
        if unknown:
            raise ValueError(f"unknown optimizer state: {unknown}")
        for name, variable in self.optimizer_state.items():
            value = saved.get(name)
            expected = np.shape(variable.get_value(borrow=True))
            if value is None or np.shape(value) != expected:
                raise ValueError(f"optimizer state {name} is missing or has the wrong shape (expected {expected})")
        generator = None
        if state.get("dropout_rng") is not None:
            generator = np.random.default_rng()
            generator.bit_generator.state = copy.deepcopy(dict(state["dropout_rng"]))
        self.set_values(state["params"])
        for name, variable in self.optimizer_state.items():
            variable.set_value(np.asarray(saved[name]).astype(variable.dtype))
        if generator is not None:
            self.dropout_rng.set_value(generator)
        self._keep_values_on_device()

    def settings(self) -> dict:
        """The architecture, as saved in checkpoints."""
        return {
            "word_dim": self.word_dim,
            "embedding_dim": self.embedding_dim,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "cell": self.cell,
            "gate": self.gate,
        }

    # ------------------------------------------------------------------ graphs
    def _dropout(self, x, training: bool):
        if not training or self.dropout == 0.0:
            return x
        keep = np.asarray(1.0 - self.dropout, dtype=self.dtype)
        current = self._rng_updates.get(self.dropout_rng, self.dropout_rng)
        next_rng, kept = current.binomial(1, keep, size=x.shape)
        self._rng_updates[self.dropout_rng] = next_rng
        return x * kept.astype(self.dtype) / pt.constant(keep)

    def hidden_states(self, ids, mask, training: bool = False):
        """Top layer's states for a padded batch (see :func:`stacked_states`)."""
        return stacked_states(
            self.params, ids, mask, self.num_layers, self.cell, self.gate,
            truncate_gradient=self.truncate_gradient, implementation=self.implementation,
            dropout=lambda x: self._dropout(x, training),
        )

    def loss(self, ids, targets, mask, training: bool = False):
        """Summed masked loss and token count of a padded batch (see :func:`symrnn.losses.masked_nll`)."""
        hidden = self.hidden_states(ids, mask, training)
        return losses.masked_nll(
            hidden, self.params["output/W"], self.params["output/b"], targets, mask, self.loss_implementation
        )

    def _inputs(self, shape=(None, None)):
        return (
            pt.tensor("ids", dtype="int32", shape=shape),
            pt.tensor("targets", dtype="int32", shape=shape),
            pt.tensor("mask", dtype=self.dtype, shape=shape),
        )

    @property
    def static_shapes(self) -> bool:
        """Whether batch functions are compiled per (T, B) shape (the JAX backend needs it)."""
        return self.backend == "jax"

    # -------------------------------------------------------------- functions
    def compile_train(self, optimizer: str = "rmsprop", grad_clip: float | None = None, decay: float = 0.9):
        """Compile one training step.

        The step skips the update (keeps every parameter and optimizer state)
        when the loss or the gradient norm is not finite.

        Parameters
        ----------
        optimizer : ``"sgd"``, ``"rmsprop"`` or ``"adam"``
        grad_clip : float or None
            Maximum global gradient norm.
        decay : float
            RMSprop decay.

        Returns
        -------
        callable ``f(ids (T,B), targets (T,B), mask (T,B), learning_rate) ->
        (loss_sum, n_tokens, grad_norm, applied)``; ``applied`` is 0 when the
        step was skipped. Every function compiled for ``optimizer`` (one per
        batch shape under JAX) updates the model's one state of that rule,
        :meth:`optimizer_variables`; compiling creates none.
        """
        state = self.optimizer_variables(optimizer)
        if self.static_shapes:
            return _PerShape(lambda shape: self._compile_train(optimizer, state, grad_clip, decay, shape))
        return self._compile_train(optimizer, state, grad_clip, decay)

    def _compile_train(self, optimizer, state, grad_clip, decay, shape=(None, None)):
        ids, targets, mask = self._inputs(shape)
        learning_rate = pt.scalar("learning_rate", dtype=self.dtype)
        self._rng_updates = {}
        total, n_tokens = self.loss(ids, targets, mask, training=True)
        params = list(self.params.values())
        grads = pytensor.grad(total, params)
        if grad_clip:
            grads, norm = update_rules.clip_by_global_norm(grads, grad_clip)
        else:
            norm = pt.sqrt(sum(pt.sum(pt.sqr(g)) for g in grads))
        options = {"decay": decay} if optimizer == "rmsprop" else {}
        rule_updates = update_rules.OPTIMIZERS[optimizer](grads, params, learning_rate, state=state, **options)
        finite = pt.isfinite(total) & pt.isfinite(norm)
        guarded = OrderedDict((var, pt.switch(finite, new, var)) for var, new in rule_updates.items())
        guarded.update(self._rng_updates)
        return pytensor.function(
            [ids, targets, mask, learning_rate],
            [total, n_tokens, norm, pt.cast(finite, "int8")],
            updates=guarded,
            mode=self.mode,
        )

    def compile_loss(self):
        """Compile ``f(ids, targets, mask) -> (loss_sum, n_tokens)`` without dropout."""
        if self.static_shapes:
            return _PerShape(self._compile_loss)
        return self._compile_loss()

    def _compile_loss(self, shape=(None, None)):
        ids, targets, mask = self._inputs(shape)
        total, n_tokens = self.loss(ids, targets, mask, training=False)
        return pytensor.function([ids, targets, mask], [total, n_tokens], mode=self.mode)

    def compile_step(self):
        """Compile the one-step function used for generation.

        Returns
        -------
        callable ``f(ids (B,) int32, *states) -> (logits (B, V), *new_states)``
        with ``num_layers * cell.states`` states of shape (B, H). Built from
        the same step functions as the training graph, so generating a sentence
        of length n costs n calls (O(n)), not O(n^2) as in the tutorial.
        """
        ids = pt.ivector("ids")
        n_states = CELLS[self.cell].states
        states = [pt.matrix(f"state{i}", dtype=self.dtype) for i in range(self.num_layers * n_states)]
        logits, new_states = one_step(self.params, ids, states, self.num_layers, self.cell, self.gate, self.implementation)
        step = pytensor.function([ids, *states], [logits, *new_states], mode=self.mode)
        if self.backend == "jax":
            return _DeviceStateStep(step)
        return step

    def compile_probabilities(self):
        """Compile ``f(ids (T, B), mask (T, B)) -> probabilities (T, B, V)`` without dropout."""
        ids, _, mask = self._inputs()
        if self.static_shapes:
            raise NotImplementedError("compile_probabilities needs the cpu or numba backend")
        hidden = self.hidden_states(ids, mask, training=False)
        logits = project(hidden, self.params["output/W"], self.params["output/b"])
        return pytensor.function([ids, mask], softmax(logits, axis=-1), mode=self.mode)

    def function(self, name: str, *args, **kwargs):
        """Compile once, then reuse: ``function("train", optimizer="adam")``."""
        key = (name, args, tuple(sorted(kwargs.items())))
        if key not in self._functions:
            self._functions[key] = getattr(self, f"compile_{name}")(*args, **kwargs)
        return self._functions[key]

    def initial_state_values(self, batch: int) -> list:
        """Zero states for the one-step function, as NumPy arrays (B, H)."""
        n = self.num_layers * CELLS[self.cell].states
        return [np.zeros((batch, self.hidden_dim), dtype=self.dtype) for _ in range(n)]
