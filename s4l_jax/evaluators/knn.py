"""Weighted k-nearest-neighbour classification on L2-normalised features.

The InstDisc (Wu et al. 2018) / DINO (Caron et al. 2021, `eval_knn.py`) protocol: cosine
similarity to every labeled feature, the k most similar vote for their class with weight
exp(similarity / temperature); DINO's k = 20, temperature = 0.07.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

CHUNK = 1024  # query rows per call: bounds the (chunk, N_train) similarity matrix


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def _votes(train_features, train_labels, queries, *, k: int, temperature, num_classes: int):
  similarity = queries @ train_features.T
  top, index = jax.lax.top_k(similarity, k)
  weights = jnp.exp(top / temperature)
  onehot = jax.nn.one_hot(train_labels[index], num_classes)
  return jnp.einsum("nk,nkc->nc", weights, onehot)


def normalize(features):
  return features / jnp.maximum(jnp.linalg.norm(features, axis=-1, keepdims=True), 1e-12)


def knn_predict(train_features, train_labels, features, *, k: int = 20,
                temperature: float = 0.07, num_classes: int) -> np.ndarray:
  """int (N,) predicted classes of `features` (N, D) from labeled (M, D), (M,); k <= M."""
  train = normalize(jnp.asarray(train_features, jnp.float32))
  labels = jnp.asarray(train_labels)
  k = min(k, train.shape[0])
  out = [np.asarray(jnp.argmax(_votes(train, labels, normalize(jnp.asarray(q, jnp.float32)),
                                      k=k, temperature=temperature, num_classes=num_classes),
                               axis=-1))
         for q in np.array_split(features, max(1, -(-len(features) // CHUNK)))]
  return np.concatenate(out)
