"""ResNet50, EfficientNetB0 and MobileNetV2 from keras.applications, built like vgg16.

Each model takes raw RGB pixels (0-255) and starts with its own preprocessing, a registered
`ImageNetPreprocess` layer (no Lambda, so saved models reload with safe_mode=True), then the
keras.applications network, then a new top (global average pooling, optional dropout, a softmax
Dense named `predictions`)::

    model = resnet50((64, 64, 3), num_classes=2, weights="imagenet")   # from $KERAS_HOME/models
    conv = mobilenet_v2((96, 96, 3), include_top=False, weights=None) # the conv part only
    cut_model(model, "last_conv")                                      # a named cut point

`weights`: "imagenet" (the default, as keras.applications' and fastai's: keras.applications' file,
found in the Keras cache; offline without it, one line names the file and `weights: none`), none
(random: training from scratch), or a path: a keras.applications .h5 file (loaded by layer name)
or a .weights.h5 file saved from a model this builder made. The builder prints which it starts
from. `imagenet_top: true` keeps the 1000-class ImageNet top instead.
Layer groups (for freezing and per-group rates, fastcourse.models.surgery) are the stages:
conv1..conv5 (ResNet50), stem, block1..block7, top (EfficientNetB0), stem, block_0..block_16,
top (MobileNetV2), and `head` for the new top.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import keras
from keras import layers, ops

from fastcourse.errors import DataError, UsageError
from fastcourse.models.registry import MODELS
from fastcourse.models.surgery import CUT_POINTS
from fastcourse.models.weights import keras_cache_file, starts_from, weights_path

# keras.applications.imagenet_utils.preprocess_input's constants (keras/src/applications/imagenet_utils.py)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="fastcourse")
class ImageNetPreprocess(layers.Layer):
    """RGB 0-255 -> a backbone's input, as keras.applications.imagenet_utils.preprocess_input's modes:

    caffe: RGB->BGR minus the ImageNet mean (ResNet50, VGG16); tf: x/127.5 - 1 (MobileNetV2);
    torch: x/255 minus the mean, divided by the std (EfficientNet's own Rescaling + Normalization
    with its ImageNet constants)."""

    MODES = ("caffe", "tf", "torch")

    def __init__(self, mode: str = "caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"ImageNetPreprocess mode={mode!r}: use one of {self.MODES}")
        self.mode = mode

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(TORCH_MEAN_RGB, dtype=self.compute_dtype)
            std = ops.convert_to_tensor(TORCH_STD_RGB, dtype=self.compute_dtype)
            return (x / 255.0 - mean) / std
        return ops.flip(x, axis=-1) - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@dataclass(frozen=True)
class Backbone:
    """One keras.applications network: how to build it, its preprocessing, cut points and weight files."""

    name: str  # the registered builder, and the model's name
    title: str  # for messages
    application: str  # the keras.applications function
    mode: str  # ImageNetPreprocess mode
    cuts: dict[str, str]  # named cut points -> layer names ("last_conv" = the last conv block's output)
    files: dict[bool, tuple[str, str, str | None]]  # include_top -> (file name, url, md5)
    # the network's own input scaling, replaced by ImageNetPreprocess (EfficientNet's first layers)
    own_scaling: tuple[str, ...] = field(default=())


_RESNET = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
_EFFICIENTNET = "https://storage.googleapis.com/keras-applications/"
_MOBILENET = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
_MOBILENET_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224"

# file names and md5 sums as keras/src/applications/{resnet,efficientnet,mobilenet_v2}.py give them
BACKBONES = {
    "resnet50": Backbone(
        "resnet50",
        "ResNet50",
        "ResNet50",
        "caffe",
        {"last_conv": "conv5_block3_out", "conv4": "conv4_block6_out", "conv3": "conv3_block4_out"},
        {
            True: ("resnet50_weights_tf_dim_ordering_tf_kernels.h5", _RESNET, "2cb95161c43110f7111970584f804107"),
            False: (
                "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                _RESNET,
                "4d473c1dd8becc155b73f8504c6f6626",
            ),
        },
    ),
    "efficientnet_b0": Backbone(
        "efficientnet_b0",
        "EfficientNetB0",
        "EfficientNetB0",
        "torch",
        {"last_conv": "top_activation", "block6": "block6d_add", "block5": "block5c_add"},
        {
            True: ("efficientnetb0.h5", _EFFICIENTNET, "902e53a9f72be733fc0bcb005b3ebbac"),
            False: ("efficientnetb0_notop.h5", _EFFICIENTNET, "50bc09e76180e00e4465e1a485ddc09d"),
        },
        own_scaling=("Rescaling", "Normalization"),
    ),
    "mobilenet_v2": Backbone(
        "mobilenet_v2",
        "MobileNetV2",
        "MobileNetV2",
        "tf",
        {"last_conv": "out_relu", "block_16": "block_16_project_BN", "block_13": "block_13_expand_relu"},
        # keras.applications has no md5 for these files
        {True: (f"{_MOBILENET_FILE}.h5", _MOBILENET, None), False: (f"{_MOBILENET_FILE}_no_top.h5", _MOBILENET, None)},
    ),
}
for _b in BACKBONES.values():
    CUT_POINTS[_b.name] = dict(_b.cuts)


def _weights_file(spec: Backbone, weights: Optional[str], include_top: bool) -> Optional[str]:
    if weights == "imagenet":
        fname, base, md5 = spec.files[include_top]
        return keras_cache_file(fname, base + fname, md5, spec.title)
    return weights_path(weights, spec.title)


def _body(spec: Backbone, shape: tuple, app_top: bool) -> keras.Model:
    """image -> ImageNetPreprocess -> the application's layers (its own input scaling left out).

    The application is built on its own, then re-traced from a new input with Keras'
    clone_model, so the result is one flat model (cut points and layer groups by name)."""
    app = getattr(keras.applications, spec.application)(
        include_top=app_top, weights=None, input_shape=shape, classes=1000, classifier_activation="softmax"
    )
    image = keras.Input(shape, name="image")
    preprocessed = ImageNetPreprocess(spec.mode, name="preprocess")(image)

    def call(layer, *args, **kwargs):
        if type(layer).__name__ in spec.own_scaling:
            return args[0]  # replaced by ImageNetPreprocess
        if args and args[0] is image:
            args = (preprocessed, *args[1:])
        return layer(*args, **kwargs)

    body = keras.models.clone_model(app, input_tensors=image, call_function=call)
    return keras.Model(image, body.outputs[0], name=spec.name)


def load_h5_by_name(model: keras.Model, path: str, title: str) -> None:
    """A keras.applications .h5 file, by layer name; every weighted layer of `model` must be in it."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
            names = {n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]}
    except (OSError, KeyError) as exc:
        raise DataError(f"{path}: not a Keras .h5 weights file ({str(exc).splitlines()[0][:100]})") from None
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in names]
    if missing:
        raise DataError(
            f"{path}: has no weights for layer(s) {missing[:4]}; is it a {title} weights file "
            "(with the top for imagenet_top: true, without it otherwise)?"
        )
    try:
        model.load_weights(path, by_name=True)
    except ValueError as exc:
        raise DataError(f"{path}: weights do not fit this {title}: {str(exc).splitlines()[0]}") from None


def build_backbone(
    name: str,
    input_shape,
    num_classes: int,
    weights: Optional[str],
    include_top: bool,
    pooling: Optional[str],
    dropout: float,
    imagenet_top: bool,
) -> keras.Model:
    """The builders' shared body; see the module docstring."""
    spec = BACKBONES[name]
    if pooling not in (None, "avg", "max"):
        raise UsageError(f"pooling={pooling!r}: use none, avg or max")
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or shape[-1] != 3 or min(shape[:2]) < 32:
        raise UsageError(
            f"{name} takes RGB images of at least 32x32 (keras.applications' minimum); this data is "
            f"{shape}: use an image-folder dataset with image_size >= 32, or a builder made for it "
            "(cnn, cnn_bn, lenet)"
        )
    if imagenet_top and (weights in (None, "none") or not include_top):
        raise UsageError(
            f"{name}: imagenet_top: true keeps the pretrained 1000-class top; it needs weights "
            "(imagenet or a file with the top) and include_top: true"
        )
    path = _weights_file(spec, weights, include_top=bool(imagenet_top))
    body = _body(spec, shape, app_top=bool(imagenet_top))
    legacy = path is not None and not path.endswith(".weights.h5")
    if legacy:
        load_h5_by_name(body, path, spec.title)
    x = body.outputs[0]
    if imagenet_top:
        outputs = x
    elif include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name="head_dropout")(x)
        outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    elif pooling == "avg":
        outputs = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        outputs = layers.GlobalMaxPooling2D(name="max_pool")(x)
    else:
        outputs = x
    model = keras.Model(body.input, outputs, name=name)  # one tensor in, not a list of one
    if path is not None and not legacy:  # a Keras 3 weights file of this very model
        try:
            model.load_weights(path)
        except ValueError as exc:
            raise DataError(f"{path}: weights do not fit this {spec.title}: {str(exc).splitlines()[0]}") from None
    starts_from(name, weights, path)
    return model


@MODELS.register()
def resnet50(
    input_shape=(224, 224, 3),
    num_classes: int = 1000,
    weights: Optional[str] = "imagenet",
    include_top: bool = True,
    pooling: Optional[str] = None,
    dropout: float = 0.0,
    imagenet_top: bool = False,
) -> keras.Model:
    """ResNet50 (keras.applications), caffe preprocessing inside; weights: imagenet (the default),
    none or a file path."""
    return build_backbone("resnet50", input_shape, num_classes, weights, include_top, pooling, dropout, imagenet_top)


@MODELS.register()
def efficientnet_b0(
    input_shape=(224, 224, 3),
    num_classes: int = 1000,
    weights: Optional[str] = "imagenet",
    include_top: bool = True,
    pooling: Optional[str] = None,
    dropout: float = 0.2,
    imagenet_top: bool = False,
) -> keras.Model:
    """EfficientNetB0 (keras.applications), torch preprocessing inside; weights: imagenet (the
    default), none or a file path."""
    return build_backbone(
        "efficientnet_b0", input_shape, num_classes, weights, include_top, pooling, dropout, imagenet_top
    )


@MODELS.register()
def mobilenet_v2(
    input_shape=(224, 224, 3),
    num_classes: int = 1000,
    weights: Optional[str] = "imagenet",
    include_top: bool = True,
    pooling: Optional[str] = None,
    dropout: float = 0.0,
    imagenet_top: bool = False,
) -> keras.Model:
    """MobileNetV2 (keras.applications, alpha 1.0), [-1, 1] preprocessing inside; weights: imagenet
    (the default), none or a path."""
    return build_backbone(
        "mobilenet_v2", input_shape, num_classes, weights, include_top, pooling, dropout, imagenet_top
    )
