"""Model surgery: layer groups, a new top, freezing by block, cutting at a layer, heads back on.

Layer groups come from layer names: block1..block5 (VGG's conv blocks, keras-hub style names),
the stages of the keras.applications backbones (GROUP_PATTERNS), else the prefix before the first
"_"; everything of the top (flatten, fc1, fc2, predictions, a head) is "head". Changing
`trainable` takes effect at the next compile, which the trainer does at every call::

    model = replace_top(vgg16(weights="imagenet"), 2)
    set_trainable(model, "head")                       # the course's finetune()
    conv = cut_model(model, "block5_conv3")            # split_at the last conv layer (a layer name)
    conv = cut_model(model, "last_conv")               # the same, by the builder's named cut point
    full = attach_head(conv, head)                     # a head trained on features, back on
"""

from __future__ import annotations

import re
from typing import Iterator, Optional

import keras
from keras import layers

from fastcourse.errors import UsageError

HEAD = "head"
TOP_LAYERS = ("flatten", "fc", "predictions", "avg", "max", "head")

# layer-name pattern -> group, for the naming schemes of the builders (first match wins)
GROUP_PATTERNS = (
    (re.compile(r"^(block\d+)[a-z]?_"), r"\1"),  # VGG block3_conv2, EfficientNet block2a_expand_conv
    (re.compile(r"^(conv\d+)_"), r"\1"),  # ResNet50 conv3_block2_1_conv
    (re.compile(r"^block_(\d+)_"), r"block_\1"),  # MobileNetV2 block_5_expand
    (re.compile(r"^expanded_conv_"), "block_0"),  # MobileNetV2's first inverted-residual block
    (re.compile(r"^(bn_)?Conv1(_|$)|^stem_"), "stem"),  # MobileNetV2 Conv1, EfficientNet stem_conv
    (re.compile(r"^(top_|Conv_1(_|$))"), "top"),  # the last 1x1 conv: EfficientNet top_conv, MobileNetV2 Conv_1
)

# builder name -> {cut point name: layer name}; each builder's module fills in its own
CUT_POINTS: dict[str, dict[str, str]] = {}


def layer_group(name: str) -> str:
    """'block3_conv2' -> 'block3'; 'conv4_block2_out' -> 'conv4'; fc1, predictions, head layers ->
    'head'; others: the prefix before the first '_'."""
    if name.startswith(TOP_LAYERS):
        return HEAD
    for pattern, group in GROUP_PATTERNS:
        match = pattern.match(name)
        if match:
            return match.expand(group)
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
    return set_trainable(model, groups[groups.index(up_to) :])


def unfreeze(model: keras.Model) -> list[str]:
    """Make every layer trainable."""
    return set_trainable(model, "all")


def replace_top(model: keras.Model, num_classes: int, name: str = "predictions") -> keras.Model:
    """Drop the last layer and put a new softmax Dense(num_classes) in its place (course finetune)."""
    features = model.layers[-2].output
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name=name)(features)
    return keras.Model(model.inputs, outputs, name=model.name)


def cut_layer(model: keras.Model, cut: str) -> str:
    """The layer name `cut` stands for: a named cut point of the model's builder (CUT_POINTS; "last_conv"
    defaults to the last Conv2D layer), or a layer name. Anything else is a UsageError listing both."""
    names = [layer.name for layer in model.layers]
    named = CUT_POINTS.get(model.name, {})
    if cut in named and named[cut] in names:
        return named[cut]
    if cut in names:
        return cut
    if cut == "last_conv":
        convs = [layer.name for layer in model.layers if isinstance(layer, layers.Conv2D)]
        if convs:
            return convs[-1]
    points = f"cut points {', '.join(named)}; " if named else ""
    raise UsageError(f"cut={cut!r}: no such cut point or layer in {model.name}; {points}layers: {', '.join(names)}")


def cut_model(model: keras.Model, cut: str = "last_conv") -> keras.Model:
    """The model from its input up to the output of `cut` (a named cut point or a layer name; the
    course's split_at the last conv layer)."""
    layer = cut_layer(model, cut)
    return keras.Model(model.inputs, model.get_layer(layer).output, name=f"{model.name}_to_{layer}")


def attach_head(conv: keras.Model, head: keras.Model, name: str = "finetuned") -> keras.Model:
    """Put a head trained on features back on the conv part: raw images -> class probabilities."""
    return keras.Model(conv.inputs, head(conv.outputs[0]), name=name)
