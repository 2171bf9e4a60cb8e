"""The ensemble as one Keras model: one shared input, every member's probabilities averaged.

Built from trained members (not registered in MODELS: it has no config section of its own;
`fastcourse.run.ensemble` trains the members and calls this). Only stock layers are used (nested
functional models and `Average`, no Lambda), so the saved model reloads with safe_mode=True::

    model = average_members([fastcourse.run.artifacts.load_model(p) for p in paths])  # safe mode
    probs = model.predict(images)   # == the mean of the members' predictions
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers


def average_members(members: Sequence[keras.Model], name: str = "ensemble") -> keras.Model:
    """Shared input -> each member -> Average. Members must agree on input and output shapes."""
    if not members:
        raise ValueError("an ensemble needs at least one member model")
    shapes = {(tuple(m.input_shape[1:]), tuple(m.output_shape[1:])) for m in members}
    if len(shapes) > 1:
        raise ValueError(f"members disagree on (input, output) shapes: {sorted(shapes)}")
    inputs = keras.Input(members[0].input_shape[1:], name="image")
    # Re-wrap each member under a unique name: members built by one builder share a model name,
    # and nested models must be named apart to be saved side by side.
    outputs = [keras.Model(m.input, m.output, name=f"member_{i}")(inputs) for i, m in enumerate(members)]
    averaged = layers.Average(name="average")(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(inputs, averaged, name=name)
