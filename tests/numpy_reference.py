"""Independent float64 NumPy implementations used as references by the tests.

Written from the equations in ../shared/TUTORIAL.md and the cell docstrings,
sharing no code with symrnn.
"""

import numpy as np


def hard_sigmoid(v):
    return np.clip(0.2 * v + 0.5, 0.0, 1.0)


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def softmax(v):
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def tutorial_gru_forward(E, U, W, V, b, c, x, U_in=None, gate=hard_sigmoid, states=None, return_states=False):
    """The tutorial's GRUTheano forward pass, one word at a time: probabilities (T, word_dim).

    ``U_in`` (3, H, D), when given, holds the first layer's input weights (an
    embedding size different from the hidden size) and ``U`` (3, H, H) the
    second layer's; otherwise ``U`` is the tutorial's (6, H, H). ``gate`` is the
    gate nonlinearity (tests pass a recording wrapper to check the distance to
    hard_sigmoid's kinks). ``states`` = (s1, s2) starts from given states
    instead of zeros; with ``return_states`` the final (s1, s2) are returned too.
    """
    hidden = W.shape[1]
    first, second = (U_in, U[0:3]) if U_in is not None else (U[0:3], U[3:6])
    s1, s2 = (np.zeros(hidden), np.zeros(hidden)) if states is None else states
    outputs = []
    for word in x:
        e = E[:, word]
        z1 = gate(first[0] @ e + W[0] @ s1 + b[0])
        r1 = gate(first[1] @ e + W[1] @ s1 + b[1])
        h1 = np.tanh(first[2] @ e + W[2] @ (s1 * r1) + b[2])
        s1 = (1 - z1) * h1 + z1 * s1
        z2 = gate(second[0] @ s1 + W[3] @ s2 + b[3])
        r2 = gate(second[1] @ s1 + W[4] @ s2 + b[4])
        h2 = np.tanh(second[2] @ s1 + W[5] @ (s2 * r2) + b[5])
        s2 = (1 - z2) * h2 + z2 * s2
        outputs.append(softmax(V @ s2 + c))
    probs = np.array(outputs).reshape(len(outputs), V.shape[0])
    return (probs, (s1, s2)) if return_states else probs


def tutorial_gru_loss(params, x, y, U_in=None):
    probs = tutorial_gru_forward(*params, x, U_in=U_in)
    return -np.sum(np.log(probs[np.arange(len(y)), y]))


def tutorial_gru_window_loss(params, frozen_params, x, y, k):
    """Loss of the last ``k`` steps of a sentence, the states before them held constant.

    The states entering the window are computed with ``frozen_params``; the
    window itself runs with ``params``. Its gradient with respect to the
    parameters the recurrence uses (E, U, W, b) is what ``scan`` with
    ``truncate_gradient=k`` backpropagates: nothing flows to steps before the
    window.
    """
    start = max(len(x) - k, 0)
    _, states = tutorial_gru_forward(*frozen_params, x[:start], return_states=True)
    probs = tutorial_gru_forward(*params, x[start:], states=states)
    return -np.sum(np.log(probs[np.arange(len(y) - start), y[start:]]))


def tutorial_rnn_forward(U, V, W, x):
    """Part 2's RNNTheano forward pass: probabilities (T, word_dim)."""
    s = np.zeros(W.shape[0])
    outputs = []
    for word in x:
        s = np.tanh(U[:, word] + W @ s)
        outputs.append(softmax(V @ s))
    return np.array(outputs)


def rnn_cell(a, h, W_h, gate=None):
    return (np.tanh(a + h @ W_h),)


def gru_cell(a, h, W_h, gate=hard_sigmoid):
    H = h.shape[-1]
    z = gate(a[:, :H] + h @ W_h[:, :H])
    r = gate(a[:, H : 2 * H] + h @ W_h[:, H : 2 * H])
    cand = np.tanh(a[:, 2 * H :] + (r * h) @ W_h[:, 2 * H :])
    return ((1 - z) * cand + z * h,)


def lstm_cell(a, h, c, W_h, gate=sigmoid):
    H = h.shape[-1]
    pre = a + h @ W_h
    i, f, o = gate(pre[:, :H]), gate(pre[:, H : 2 * H]), gate(pre[:, 2 * H : 3 * H])
    g = np.tanh(pre[:, 3 * H :])
    c_new = f * c + i * g
    return o * np.tanh(c_new), c_new


NUMPY_CELLS = {"rnn": (rnn_cell, 1), "gru": (gru_cell, 1), "lstm": (lstm_cell, 2)}


def library_forward(values, ids, mask, cell="gru", gate=hard_sigmoid, num_layers=2):
    """Logits (T, B, V) of RNNLanguageModel, written with explicit loops."""
    step, n_states = NUMPY_CELLS[cell]
    T, B = ids.shape
    x = values["embedding"][ids]
    for layer in range(num_layers):
        W_x, W_h, bias = (values[f"layer{layer}/{n}"] for n in ("W_x", "W_h", "b"))
        H = W_h.shape[0]
        states = [np.zeros((B, H)) for _ in range(n_states)]
        outs = []
        for t in range(T):
            a = x[t] @ W_x + bias
            new = step(a, *states, W_h, gate=gate) if cell != "rnn" else step(a, *states, W_h)
            m = mask[t][:, None]
            states = [m * n + (1 - m) * o for n, o in zip(new, states)]
            outs.append(states[0])
        x = np.array(outs)
    return x @ values["output/W"] + values["output/b"]


def masked_nll(logits, targets, mask):
    logp = np.log(softmax(logits))
    T, B = targets.shape
    picked = logp[np.arange(T)[:, None], np.arange(B)[None, :], targets]
    return -np.sum(picked * mask)


def rmsprop_step(param, grad, cache, lr, decay=0.9, eps=1e-6):
    cache = decay * cache + (1 - decay) * grad**2
    return param - lr * grad / np.sqrt(cache + eps), cache


def numerical_gradient(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        grad[i] = (fp - fm) / (2 * eps)
    return grad


def sgd_step(param, grad, lr):
    return param - lr * grad


def adam_step(param, grad, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """Adam step ``t`` (1-based), bias correction folded into the step size (Kingma & Ba, section 2)."""
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    step = lr * np.sqrt(1 - beta2**t) / (1 - beta1**t)
    return param - step * m / (np.sqrt(v) + eps), m, v


def clip_by_global_norm(grads, max_norm):
    norm = np.sqrt(sum(np.sum(g**2) for g in grads))
    scale = min(1.0, max_norm / norm)
    return [g * scale for g in grads], norm
