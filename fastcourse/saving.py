"""fastcourse's Keras classes for plain Keras: after `import fastcourse.saving`,
`keras.saving.load_model(path)` reads any model fastcourse wrote, in safe mode too.

    import fastcourse.saving
    import keras

    model = keras.saving.load_model("runs/mnist_sample-cnn-.../model.keras")

Importing it registers every class fastcourse defines (`CUSTOM_OBJECTS`, by registered name:
"fastcourse>BatchNorm", ...), as importing keras_hub registers keras-hub's; it imports
TensorFlow. `import fastcourse` alone imports no TensorFlow and so registers nothing, and
fastcourse's own loaders (fastcourse.run.artifacts.load_model, fastcourse.load_learner) need no
import: they pass the classes to Keras themselves.
"""

from fastcourse import tf_logs

tf_logs.import_tensorflow()  # its start-up lines quieted, before any module below imports it

from fastcourse.run.artifacts import custom_objects  # noqa: E402

CUSTOM_OBJECTS = custom_objects()

__all__ = ["CUSTOM_OBJECTS"]
