"""Model surgery: layer groups, a new top, freezing by block, cutting at a layer, heads back on.

Layer groups are the prefix before the first "_" of a layer name: block1..block5 (the conv
blocks, keras-hub style names), then everything of the top (flatten, fc1, fc2, predictions, a
head) as "head". Changing `trainable` takes effect at the next compile, which the trainer does
at every call::

    model = replace_top(vgg16(weights="imagenet"), 2)
    set_trainable(model, "head")                       # the course's finetune()
    conv = cut_model(model, "block5_conv3")            # split_at the last conv layer
    full = attach_head(conv, head)                     # a head trained on features, back on
"""
from __future__ import annotations

from typing import Iterator, Optional

import keras
from keras import layers

from fastcourse.errors import UsageError
from fastcourse.models.blocks import BatchNorm

HEAD = "head"
TOP_LAYERS = ("flatten", "fc", "predictions", "avg", "max", "head")


def layer_group(name: str) -> str:
    """'block3_conv2' -> 'block3'; fc1, predictions, head layers -> 'head'; others unchanged."""
    if name.startswith("block") and "_" in name:
        return name.split("_", 1)[0]
    if name.startswith(TOP_LAYERS):
        return HEAD
    return name.split("_", 1)[0]


def flat_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Every layer, nested models (a head, a conv part) opened up."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from flat_layers(layer)
        else:
            yield layer


def layer_groups(model: keras.Model) -> list[str]:
    """Groups with weights, in model order (block1 .. block5, head)."""
    out: list[str] = []
    for layer in flat_layers(model):
        g = layer_group(layer.name)
        if layer.weights and g not in out:
            out.append(g)
    return out


def set_trainable(model: keras.Model, trainable: list[str] | str, bn_trainable: Optional[bool] = None) -> list[str]:
    """Make only the given groups (or layer names) trainable; "all" unfreezes everything.

    Returns the trainable groups. Names that match nothing raise UsageError with the known groups.
    """
    groups = layer_groups(model)
    wanted = groups if trainable == "all" else [trainable] if isinstance(trainable, str) else list(trainable)
    names = {layer.name for layer in flat_layers(model)}
    unknown = [w for w in wanted if w not in groups and w not in names]
    if unknown:
        raise UsageError(f"cannot freeze/unfreeze {unknown}: known groups {groups}")
    model.trainable = True
    for layer in flat_layers(model):
        on = layer_group(layer.name) in wanted or layer.name in wanted
        if bn_trainable is not None and isinstance(layer, layers.BatchNormalization):
            on = bn_trainable
        layer.trainable = on
    return [g for g in groups if g in wanted]


def freeze(model: keras.Model, up_to: str = HEAD) -> list[str]:
    """Freeze every group before `up_to` (a group name); the rest trains. Returns the trainable groups."""
    groups = layer_groups(model)
    if up_to not in groups:
        raise UsageError(f"freeze up_to={up_to!r}: known groups {groups}")
    return set_trainable(model, groups[groups.index(up_to):])


def unfreeze(model: keras.Model) -> list[str]:
    """Make every layer trainable."""
    return set_trainable(model, "all")


def replace_top(model: keras.Model, num_classes: int, name: str = "predictions") -> keras.Model:
    """Drop the last layer and put a new softmax Dense(num_classes) in its place (course finetune)."""
    features = model.layers[-2].output
    outputs = layers.Dense(num_classes, activation="softmax", name=name)(features)
    return keras.Model(model.inputs, outputs, name=model.name)


def cut_model(model: keras.Model, cut: str = "block5_conv3") -> keras.Model:
    """The model from its input up to layer `cut`'s output (the course's split_at last conv)."""
    names = [layer.name for layer in model.layers]
    if cut not in names:
        raise UsageError(f"cut={cut!r}: no such layer; layers: {', '.join(names)}")
    return keras.Model(model.inputs, model.get_layer(cut).output, name=f"{model.name}_to_{cut}")


def attach_head(conv: keras.Model, head: keras.Model, name: str = "finetuned") -> keras.Model:
    """Put a head trained on features back on the conv part: raw images -> class probabilities."""
    return keras.Model(conv.inputs, head(conv.outputs[0]), name=name)


def insert_batchnorm(model: keras.Model, after: tuple[str, ...] = ("Dense",)) -> keras.Model:
    """A copy of a sequential-style model with BatchNormalization after every layer of the given
    classes except the last (VGG16-BN's dense blocks); the weights of existing layers are kept."""
    x = inputs = keras.Input(model.input_shape[1:])
    last = model.layers[-1]
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        x = layer(x)
        if type(layer).__name__ in after and layer is not last:
            x = BatchNorm(name=f"{layer.name}_bn")(x)
    return keras.Model(inputs, x, name=f"{model.name}_bn")
