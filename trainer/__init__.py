"""The offline trainer (DESIGN §7): datasets, synthetic data, PyTorch models, training,
evaluation, ONNX export, model cards, publishing.

Modules that run without torch (``skysentry eval`` works from a serving install):
:mod:`trainer.data`, :mod:`trainer.audio_io`, :mod:`trainer.metrics`, :mod:`trainer.evaluate`,
:mod:`trainer.publish`, :mod:`trainer.retrain` (its decision), :mod:`trainer.cli`.
Training code imports torch when it runs: :mod:`trainer.train_audio`,
:mod:`trainer.train_vision` (and the models, loop and export they use).

Nothing imports the trainer; it imports :mod:`detectors` and the kernel only.
"""
