"""Layer 3, train: THE trainer (trainer.py) for arrays, image folders and cached features alike,
optimizers and schedules, checkpoints and resume, the NaN stop, precision and tf.distribute,
batchnorm recalibration and the learning-rate finder. Importing this package imports nothing."""
