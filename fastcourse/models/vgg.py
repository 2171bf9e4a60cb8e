"""VGG16 as lesson 3 built it (vgg16.py / vgg16bn.py), channels-last, from ConvBlocks and FCBlocks.

The architecture is data (`VGG16_BLOCKS`); layer names equal keras.applications.VGG16's, so its
ImageNet weight files load by name. Input is raw 0-255 RGB; the first layer is `VGGPreprocess`
(= keras.applications.vgg16.preprocess_input: RGB->BGR, minus the ImageNet mean), a real
registered layer, so saved models reload with safe_mode=True::

    model = vgg16(num_classes=2, weights="imagenet")          # the course's finetune(): new 2-class top
    conv = vgg16((96, 96, 3), include_top=False, weights=None) # conv part at any size

With pretrained weights and another class count the 1000-way top is replaced by a new softmax
(as the course's finetune()); `imagenet_top: true` keeps it (features = ImageNet probabilities).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import keras
from keras import layers, ops

from fastcourse.errors import DataError, UsageError
from fastcourse.models.blocks import conv_block, fc_block
from fastcourse.models.registry import MODELS
from fastcourse.models.surgery import CUT_POINTS
from fastcourse.models.weights import keras_cache_file, starts_from

# (convs per block, filters): the course's ConvBlock calls
VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
# named cut points (fastcourse.models.surgery.cut_model): the lesson splits at the last conv layer
VGG_CUTS = {"last_conv": "block5_conv3", "last_pool": "block5_pool", "block4": "block4_conv3"}
CUT_POINTS.update(vgg16=VGG_CUTS, vgg16_bn=VGG_CUTS)

# keras.applications' files, md5-checked; cached under $KERAS_HOME/models
WEIGHT_FILES = {
    True: (
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        "64373286793e3c8b2b4e3219cbf3544b",
    ),
    False: (
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "6d6bbae143d832006294945121d1f1fc",
    ),
}


@keras.saving.register_keras_serializable(package="fastcourse")
class VGGPreprocess(layers.Layer):
    """RGB 0-255 -> BGR minus the ImageNet mean ("caffe" mode), never divided by 255."""

    def call(self, images):
        bgr = ops.flip(ops.cast(images, self.compute_dtype), axis=-1)
        return bgr - ops.convert_to_tensor(IMAGENET_MEAN_BGR, dtype=self.compute_dtype)


def vgg_conv(inputs, blocks=VGG16_BLOCKS, preprocess: bool = True):
    """The conv part: VGGPreprocess then one ConvBlock per (repeats, filters)."""
    x = VGGPreprocess(name="preprocess")(inputs) if preprocess else inputs
    for i, (repeats, filters) in enumerate(blocks, start=1):
        x = conv_block(x, i, repeats, filters)
    return x


def _vgg(
    name, input_shape, num_classes, weights, include_top, dropout, pooling, batchnorm, imagenet_top=False, fc_units=4096
):
    if weights not in (None, "none", "imagenet") and not Path(str(weights)).expanduser().is_file():
        raise DataError(f"weights={weights!r}: no such file; give 'imagenet', none, or a path to a weights file")
    if pooling not in (None, "avg", "max"):
        raise UsageError(f"pooling={pooling!r}: use none, avg or max")
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or shape[-1] != 3 or min(shape[:2]) < 32:
        raise UsageError(
            f"{name} takes RGB images of at least 32x32 (it pools 5 times and its preprocessing is "
            f"per colour channel); this data is {shape}: use an image-folder dataset, or a builder "
            "made for it (cnn, cnn_bn, lenet)"
        )
    inputs = keras.Input(tuple(input_shape), name="image")
    x = vgg_conv(inputs)
    if not include_top:
        if pooling == "avg":
            x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        elif pooling == "max":
            x = layers.GlobalMaxPooling2D(name="max_pool")(x)
        model = keras.Model(inputs, x, name=name)
        load_weights(model, weights, include_top=False)
        return _said(model, weights, include_top=False)
    pretrained_top = weights not in (None, "none")
    if pretrained_top and tuple(input_shape[:2]) != (224, 224):
        raise UsageError(
            f"input {tuple(input_shape)}: pretrained dense layers need 224x224 input; "
            "use include_top: false for other sizes"
        )
    x = layers.Flatten(name="flatten")(x)
    for i in (1, 2):
        x = fc_block(x, i, fc_units, dropout, batchnorm)
    # the weight file's top has 1000 ImageNet classes; another count gets a new top (course finetune())
    top = 1000 if pretrained_top else num_classes
    outputs = layers.Dense(top, activation="softmax", dtype="float32", name="predictions")(x)
    model = keras.Model(inputs, outputs, name=name)
    load_weights(model, weights, include_top=True)
    if top != num_classes and not imagenet_top:
        from fastcourse.models.surgery import replace_top

        model = replace_top(model, num_classes)
    return _said(model, weights, include_top=True)


def _said(model: keras.Model, weights: Optional[str], include_top: bool) -> keras.Model:
    """The model, after the line saying which weights it starts from (weights.starts_from)."""
    path = None if weights in (None, "none") else WEIGHT_FILES[include_top][0] if weights == "imagenet" else weights
    starts_from(model.name, weights, path)
    return model


@MODELS.register()
def vgg16(
    input_shape=(224, 224, 3),
    num_classes: int = 1000,
    weights: Optional[str] = None,
    include_top: bool = True,
    dropout: float = 0.5,
    pooling: Optional[str] = None,
    imagenet_top: bool = False,
) -> keras.Model:
    """VGG16 (138,357,544 params with the top); weights: imagenet, none or a file path."""
    return _vgg(
        "vgg16",
        input_shape,
        num_classes,
        weights,
        include_top,
        dropout,
        pooling,
        batchnorm=False,
        imagenet_top=imagenet_top,
    )


@MODELS.register()
def vgg16_bn(
    input_shape=(224, 224, 3),
    num_classes: int = 1000,
    weights: Optional[str] = None,
    include_top: bool = True,
    dropout: float = 0.5,
    pooling: Optional[str] = None,
    imagenet_top: bool = False,
) -> keras.Model:
    """VGG16 with BatchNorm after fc1 and fc2 (the course's vgg16bn); weights load by name."""
    return _vgg(
        "vgg16_bn",
        input_shape,
        num_classes,
        weights,
        include_top,
        dropout,
        pooling,
        batchnorm=True,
        imagenet_top=imagenet_top,
    )


# --- weights ---------------------------------------------------------------------------------


def imagenet_weights_path(include_top: bool = True) -> str:
    """The keras.applications VGG16 file: from the Keras cache, else downloaded (md5-checked)."""
    fname, origin, md5 = WEIGHT_FILES[include_top]
    return keras_cache_file(fname, origin, md5, "VGG16")


def load_weights(model: keras.Model, weights: Optional[str], include_top: bool = True) -> None:
    """Load 'imagenet', a legacy .h5 file (by layer name) or a Keras weights file; None: nothing."""
    if weights in (None, "none"):
        return
    path = imagenet_weights_path(include_top) if weights == "imagenet" else str(Path(weights).expanduser())
    if path.endswith((".h5", ".hdf5")) and not path.endswith(".weights.h5"):
        import h5py

        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
            names = {n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]}
        wanted = [layer.name for layer in model.layers if layer.weights and not layer.name.endswith("_bn")]
        missing = [n for n in wanted if n not in names]
        if missing:
            raise DataError(f"{path}: has no weights for layer(s) {missing[:4]}; is it a VGG16 weight file?")
        try:
            model.load_weights(path, by_name=True)
        except ValueError as exc:
            raise DataError(f"{path}: weights do not fit this model: {str(exc).splitlines()[0]}") from None
    else:
        try:
            model.load_weights(path)
        except ValueError as exc:
            raise DataError(f"{path}: weights do not fit this model: {str(exc).splitlines()[0]}") from None
