"""A small real-data check: a narrow frame network learns avdigits well above chance in one epoch.

Needs the shared data (``AVDD_DATA``), and fails rather than skips without it.
"""

from avdd.data.sources.registry import DATASETS
from avdd.evaluate.recognition import evaluate_recognition
from avdd.training.protocol import EvalConfig


def test_frame_network_learns_avdigits_above_chance(tmp_path_factory):
    store = DATASETS.get("avdigits").build(tmp_path_factory.mktemp("avdigits") / "store", progress=False)
    config = EvalConfig(modalities=("frame",), num_eval=1, epochs=1, width=16, lr_encoder={"frame": 1e-3})
    result = evaluate_recognition(store, store, config, progress=False)
    assert result.train_samples == 2700
    assert result.runs[0] > 0.5  # chance is 0.1
