r"""A word- or character-level recurrent language model built from symrnn pieces.

The network (its graph and parameter table) is :mod:`symrnn.network`; the
backends (linkers, per-shape compilation, device-resident values) are
:mod:`symrnn.backend`. The loss is the sum over real tokens of
``-log softmax(logits)[target]`` (:func:`symrnn.losses.masked_nll`).

With ``cell="gru"``, ``num_layers=2``, ``gate="hard_sigmoid"`` and
``embedding_dim == hidden_dim`` this is exactly the WildML tutorial's GRUTheano
(see :mod:`models.gru` for the mapping of parameters).

The model owns all training state: the parameters (shared variables named as
in :mod:`symrnn.network`), one optimizer state per update rule (created on
first need and shared by every compiled function, so the per-shape functions
of the JAX backend update the same RMSprop caches or Adam moments) and the
dropout generator. :meth:`RNNLanguageModel.state` and
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

from symrnn import backend as backends, losses, network, updates as update_rules
from symrnn.cells import CELLS, GATES

__all__ = ["RNNLanguageModel"]


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
    backend : ``"c"``, ``"numba"`` or ``"jax"`` (see :mod:`symrnn.backend`)
    recurrence : ``"auto"``, ``"scan"`` or ``"fused"``
        How the recurrent layers loop over time (:func:`symrnn.recurrence.recurrent_layer`);
        ``"auto"`` is ``"scan"`` where the fused Ops cannot run (JAX).
    output_layer : ``"auto"``, ``"reference"`` or ``"fused"``
        How the output layer's softmax loss is computed (:func:`symrnn.losses.masked_nll`);
        ``"auto"`` is ``"reference"`` where the fused Ops cannot run (JAX).
    initial_values : mapping name -> array, optional
        Parameter values to start from (shapes checked) instead of random ones.
    tie_weights : bool
        The output matrix is the embedding's transpose (one parameter,
        ``embedding``; no ``output/W``); needs ``embedding_dim == hidden_dim``.

    Raises
    ------
    ValueError
        For an unknown cell, gate, dtype or backend, a dropout outside [0, 1),
        dropout under the JAX backend, initial values of the wrong shape, or
        tied weights with ``embedding_dim != hidden_dim``.
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
        backend: str = "c",
        recurrence: str = "auto",
        output_layer: str = "auto",
        initial_values: Mapping[str, np.ndarray] | None = None,
        tie_weights: bool = False,
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
            raise ValueError("dropout needs the c or numba backend; the jax backend cannot draw its masks")
        self.mode = backends.compile_mode(backend)
        self.word_dim, self.embedding_dim, self.hidden_dim = int(word_dim), int(embedding_dim), int(hidden_dim)
        self.num_layers, self.cell, self.gate, self.dtype = int(num_layers), cell, gate, dtype
        self.truncate_gradient, self.dropout, self.backend = int(truncate_gradient), float(dropout), backend
        if not backends.uses_fused_ops(backend):
            recurrence = "scan" if recurrence == "auto" else recurrence
            output_layer = "reference" if output_layer == "auto" else output_layer
        self.recurrence, self.output_layer = recurrence, output_layer
        self.tie_weights = bool(tie_weights)
        self.shapes = network.parameter_shapes(
            self.word_dim, self.embedding_dim, self.hidden_dim, self.num_layers, cell, tie_weights=self.tie_weights
        )
        if initial_values is None:
            initial_values = network.initial_values(self.shapes, np.random.default_rng(seed))
        self.params: "OrderedDict[str, pytensor.compile.SharedVariable]" = OrderedDict()
        for name, shape in self.shapes.items():
            value = np.asarray(initial_values[name])
            if value.shape != shape:
                raise ValueError(f"parameter {name} has shape {value.shape}, expected {shape}")
            # Static shapes let every backend (JAX included) see H as a constant.
            self.params[name] = pytensor.shared(value.astype(dtype), name=name, shape=shape)
        self.dropout_rng = ptr.shared_rng(seed=seed, name="dropout/rng")
        self.optimizer_states: "dict[str, OrderedDict[str, pytensor.compile.SharedVariable]]" = {}
        self._values_to_device()

    # ------------------------------------------------------------------ state
    def _values_to_device(self) -> None:
        backends.keep_values_on_device(self.backend, (*self.params.values(), *self.optimizer_state.values()))

    def get_values(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of the parameter values, by name, as NumPy arrays (on the host)."""
        return OrderedDict((name, np.array(p.get_value(borrow=True))) for name, p in self.params.items())

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
        self._values_to_device()

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
            self._values_to_device()
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
        self._values_to_device()

    def architecture(self) -> dict:
        """The architecture (sizes, cell, gate, weight tying) by setting name, as saved in checkpoints."""
        return {
            "word_dim": self.word_dim,
            "embedding_dim": self.embedding_dim,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "cell": self.cell,
            "gate": self.gate,
            "tie_weights": int(self.tie_weights),
        }

    # ------------------------------------------------------------------ graphs
    def input_variables(self, shape=(None, None)):
        """Symbolic ``ids``, ``targets`` (int32) and ``mask`` (model dtype) of a (T, B) batch.

        Parameters
        ----------
        shape : (T, B), ints or None (static shapes for JAX)
        """
        return (
            pt.tensor("ids", dtype="int32", shape=shape),
            pt.tensor("targets", dtype="int32", shape=shape),
            pt.tensor("mask", dtype=self.dtype, shape=shape),
        )

    def state_variables(self, batch: int | None = None) -> list:
        """Symbolic (B, H) states of the model's dtype, in the order of :meth:`initial_state_values`."""
        return [
            pt.tensor(f"state{i}", dtype=self.dtype, shape=(batch, self.hidden_dim))
            for i in range(network.state_count(self.num_layers, self.cell))
        ]

    def _sequence_loss(self, ids, targets, mask, dropout_rate: float, initial_states=None):
        options = dict(truncate_gradient=self.truncate_gradient, recurrence=self.recurrence,
                       dropout_rate=dropout_rate, rng=self.dropout_rng)
        if initial_states is None:
            hidden, rng_updates = network.stacked_states(
                self.params, ids, mask, self.num_layers, self.cell, self.gate, **options
            )
            final_states = []
        else:
            hidden, final_states, rng_updates = network.stacked_layers(
                self.params, ids, mask, initial_states, self.num_layers, self.cell, self.gate, **options
            )
        total, n_tokens = losses.masked_nll(
            hidden, network.output_weights(self.params), self.params["output/b"], targets, mask, self.output_layer
        )
        return total, n_tokens, final_states, rng_updates

    def loss(self, ids, targets, mask):
        """Summed masked loss and token count of a padded batch, without dropout.

        Parameters
        ----------
        ids, targets : TensorVariable (T, B) int32
        mask : TensorVariable (T, B) of the model's dtype

        Returns
        -------
        total, n_tokens : scalar TensorVariables of the model's dtype
        """
        total, n_tokens, _, _ = self._sequence_loss(ids, targets, mask, 0.0)
        return total, n_tokens

    def training_loss(self, ids, targets, mask):
        """As :meth:`loss`, with the model's dropout.

        Returns
        -------
        total, n_tokens : scalar TensorVariables
        rng_updates : dict, the dropout generator's update (empty without dropout)
        """
        total, n_tokens, _, rng_updates = self._sequence_loss(ids, targets, mask, self.dropout)
        return total, n_tokens, rng_updates

    @property
    def static_shapes(self) -> bool:
        """Whether batch functions are compiled per (T, B) shape (the JAX backend needs it)."""
        return backends.needs_static_shapes(self.backend)

    # -------------------------------------------------------------- functions
    def compile_train(self, optimizer: str = "rmsprop", grad_clip: float | None = None, carry_state: bool = False,
                      **rule_options):
        """Compile one training step.

        The step skips the update (keeps every parameter and optimizer state)
        when the loss or the gradient norm is not finite.

        Parameters
        ----------
        optimizer : ``"sgd"``, ``"rmsprop"`` or ``"adam"``
        grad_clip : float or None
            Maximum global gradient norm.
        carry_state : bool
            Take the initial states as inputs and return the final ones (stream
            training); the gradient stops at the given states (truncated BPTT
            at window edges).
        **rule_options
            Passed to the update rule (:mod:`symrnn.updates`), e.g. ``decay`` for RMSprop.

        Returns
        -------
        callable ``f(ids (T,B), targets (T,B), mask (T,B), learning_rate) ->
        (loss_sum, n_tokens, grad_norm, applied)``; ``applied`` is 0 when the
        step was skipped. With ``carry_state``: ``f(ids, targets, mask,
        learning_rate, *states) -> (loss_sum, n_tokens, grad_norm, applied,
        *final_states)``, states (B, H) in the order of
        :meth:`initial_state_values`. Every function compiled for
        ``optimizer`` (one per batch shape under JAX) updates the model's one
        state of that rule, :meth:`optimizer_variables`; compiling creates none.
        """
        state = self.optimizer_variables(optimizer)
        rule = update_rules.OPTIMIZERS[optimizer]
        params = list(self.params.values())
        # The fused update Ops run where the other fused Ops do (not under JAX).
        fused = backends.uses_fused_ops(self.backend)
        if optimizer == "rmsprop":
            rule_options = {"fused": fused, **rule_options}

        def build(shape):
            ids, targets, mask = self.input_variables(shape)
            learning_rate = pt.scalar("learning_rate", dtype=self.dtype)
            states = self.state_variables(shape[1]) if carry_state else []
            total, n_tokens, final_states, rng_updates = self._sequence_loss(ids, targets, mask, self.dropout, states or None)
            grads = pytensor.grad(total, params)
            if grad_clip:
                grads, norm = update_rules.clip_by_global_norm(grads, grad_clip, fused=fused)
            else:
                norm = update_rules.global_norm(grads, fused=fused)
            finite = pt.isfinite(total) & pt.isfinite(norm)
            guarded = rule(grads, params, learning_rate, state=state, apply_if=finite, **rule_options)
            guarded.update(rng_updates)
            return pytensor.function(
                [ids, targets, mask, learning_rate, *states],
                [total, n_tokens, norm, pt.cast(finite, "int8"), *final_states],
                updates=guarded,
                mode=self.mode,
            )

        return backends.compile_per_shape(self.backend, build)

    def compile_loss(self, carry_state: bool = False):
        """Compile the loss without dropout.

        Returns
        -------
        callable ``f(ids (T,B), targets (T,B), mask (T,B)) -> (loss_sum, n_tokens)``;
        with ``carry_state``, ``f(ids, targets, mask, *states) -> (loss_sum,
        n_tokens, *final_states)`` (states as in :meth:`compile_train`).
        """

        def build(shape):
            ids, targets, mask = self.input_variables(shape)
            states = self.state_variables(shape[1]) if carry_state else []
            total, n_tokens, final_states, _ = self._sequence_loss(ids, targets, mask, 0.0, states or None)
            return pytensor.function([ids, targets, mask, *states], [total, n_tokens, *final_states], mode=self.mode)

        return backends.compile_per_shape(self.backend, build)

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
        states = self.state_variables()
        logits, new_states = network.one_step(self.params, ids, states, self.num_layers, self.cell, self.gate, self.recurrence)
        step = pytensor.function([ids, *states], [logits, *new_states], mode=self.mode)
        return backends.with_states_on_device(self.backend, step)

    def initial_state_values(self, batch: int) -> list:
        """Zero states for the one-step function and carried-state batch functions, as NumPy arrays (B, H).

        Layer by layer, each layer's output state first (an LSTM layer: h, then c).
        """
        n = network.state_count(self.num_layers, self.cell)
        return [np.zeros((batch, self.hidden_dim), dtype=self.dtype) for _ in range(n)]
