"""Keras' random preprocessing layers driven by a stateless seed (LayerChain), for the
augmentation pipelines (fastcourse.data.augment) and the batch mixes (fastcourse.data.mix)."""

from __future__ import annotations

import keras
import tensorflow as tf


class LayerChain:
    """Keras preprocessing layers applied in order to a batch (created once, outside tf.data).

    Their random draws come from `seed`, the pipeline's stateless seed: each layer's seed
    generator state is replaced, for this call only, by a seed split from it (Keras'
    `StatelessScope`, the way its JAX backend runs layers statelessly), so the same seed gives
    the same batch and a resumed run continues the same draws. The layers' own states never move.
    Without a seed the layers draw from their own generators."""

    def __init__(self, layers: list[keras.layers.Layer]):
        self.layers = layers
        # every seed generator of the chain, sub-layers' included (Layer.variables lists their states)
        self.states = [v for layer in layers for v in layer.variables if v.name == "seed_generator_state"]

    def __call__(self, images, seed=None):
        if seed is None:
            return self._apply(images)
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), max(len(self.states), 1))
        mapping = [(state, tf.cast(seeds[i], state.dtype)) for i, state in enumerate(self.states)]
        with keras.StatelessScope(state_mapping=mapping):
            return self._apply(images)

    def _apply(self, images):
        for layer in self.layers:
            images = layer(images, training=True)
        return images
