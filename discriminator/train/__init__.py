"""Training and calibration on local data: `kit train image|video` and `kit calibrate`.

`train_detector(TrainRequest(...))` fits a detector (fine-tune or linear probe) on
pixels prepared exactly as the validator prepares them, keeps the epoch with the
best validation sn34, fits a temperature, and writes a checkpoint folder that
`kit build --model DIR` turns into the submission ONNX. `calibrate_checkpoint`
refits the temperature of an existing checkpoint. See docs/training.md.
"""

from discriminator.train.calibration import CalibrationReport, ScoreCard, fit_temperature, score_logits
from discriminator.train.trainer import (
    CheckpointCalibration,
    EpochRecord,
    TrainRequest,
    TrainResult,
    calibrate_checkpoint,
    train_detector,
)

__all__ = [
    "CalibrationReport", "CheckpointCalibration", "EpochRecord", "ScoreCard", "TrainRequest", "TrainResult",
    "calibrate_checkpoint", "fit_temperature", "score_logits", "train_detector",
]
