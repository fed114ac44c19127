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


def tutorial_gru_forward(E, U, W, V, b, c, x):
    """The tutorial's GRUTheano forward pass, one word at a time: probabilities (T, word_dim)."""
    hidden = U.shape[1]
    s1 = np.zeros(hidden)
    s2 = np.zeros(hidden)
    outputs = []
    for word in x:
        e = E[:, word]
        z1 = hard_sigmoid(U[0] @ e + W[0] @ s1 + b[0])
        r1 = hard_sigmoid(U[1] @ e + W[1] @ s1 + b[1])
        h1 = np.tanh(U[2] @ e + W[2] @ (s1 * r1) + b[2])
        s1 = (1 - z1) * h1 + z1 * s1
        z2 = hard_sigmoid(U[3] @ s1 + W[3] @ s2 + b[3])
        r2 = hard_sigmoid(U[4] @ s1 + W[4] @ s2 + b[4])
        h2 = np.tanh(U[5] @ s1 + W[5] @ (s2 * r2) + b[5])
        s2 = (1 - z2) * h2 + z2 * s2
        outputs.append(softmax(V @ s2 + c))
    return np.array(outputs)


def tutorial_gru_loss(params, x, y):
    probs = tutorial_gru_forward(*params, x)
    return -np.sum(np.log(probs[np.arange(len(y)), y]))


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
