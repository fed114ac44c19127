"""symrnn: the WildML RNN language models on PyTensor."""
