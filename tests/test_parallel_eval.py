import io

import pytest
import torch
from tqdm import tqdm

from avdd.errors import AvddError
from avdd.evaluate.recognition import evaluate_recognition
from avdd.training.inputs import load_training_set, network_inputs
from avdd.training.parallel import networks_together, spread_groups, train_fresh_networks
from avdd.training.protocol import EvalConfig, accuracy_on, train_fresh_network

CPU = torch.device("cpu")
# 36 training samples in batches of 16: every epoch ends on a batch of 4; the rate decays after epoch 2
TINY = {"width": 8, "grid": 2, "batch_size": 16, "epochs": 3, "lr_step": 2, "num_eval": 3}


@pytest.mark.parametrize("fusion", ["ensemble", "concat", "sum"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_networks_trained_together_are_the_sequential_ones(tiny_store, fusion, channels_last):
    config = EvalConfig(fusion=fusion, channels_last=channels_last, **TINY)
    inputs, labels = load_training_set(tiny_store, config.modalities, CPU, config.memory_format)
    bar = tqdm(file=io.StringIO())  # enabled, so that it counts
    sequential = [train_fresh_network(tiny_store, inputs, labels, config, run, CPU, bar) for run in range(3)]
    together = train_fresh_networks(tiny_store, inputs, labels, config, [0, 1, 2], CPU, bar)
    assert bar.n == 2 * 3 * config.epochs  # network-epochs, both ways

    test = tiny_store.split("test")
    batch = network_inputs(test, torch.arange(len(test)).numpy(), config.modalities, CPU)
    # Adam scales a gradient's rounding up where the gradient is small: parameters agree to a tenth of
    # one step (lr 1e-3), the functions closer. A convolution's bias before instance norm has no effect
    # and a gradient that is zero but for rounding, so Adam's steps there are of any sign: one step.
    unseen = {f"{name}.bias" for name, module in sequential[0].named_modules() if isinstance(module, torch.nn.Conv2d)}
    for one, other in zip(sequential, together, strict=True):
        for (name, p), q in zip(one.named_parameters(), other.parameters(), strict=True):
            torch.testing.assert_close(q, p, rtol=0, atol=1e-3 if name in unseen else 1e-4, msg=name)
        torch.testing.assert_close(other.predict_proba(batch), one.predict_proba(batch), rtol=0, atol=1e-5)
        assert (accuracy_on(other, test, config.modalities, CPU, 100, config.memory_format)
                == accuracy_on(one, test, config.modalities, CPU, 100, config.memory_format))
    # each network kept its own draws: the three differ from each other by far more than the tolerance
    first = [p for p in together[0].parameters()]
    assert all((a - b).abs().max() > 1e-2 for a, b in zip(first, together[1].parameters(), strict=True)
               if a.numel() > 64)


def test_an_evaluation_in_groups_reports_the_sequential_accuracies(tiny_store):
    sequential = evaluate_recognition(tiny_store, tiny_store, EvalConfig(networks_together=1, **TINY), progress=False)
    grouped = evaluate_recognition(tiny_store, tiny_store, EvalConfig(networks_together=2, **TINY), progress=False)
    assert grouped.runs == sequential.runs  # networks 0-1 together, network 2 alone
    assert len(grouped.seconds) == 3 and all(s > 0 for s in grouped.seconds)
    assert grouped.to_json()["config"]["networks_together"] == 2


def test_the_group_size_is_the_setting_or_the_devices_measured_choice():
    assert networks_together(EvalConfig(num_eval=5), CPU) == 1  # auto: sequential on CPU (RESULTS.md)
    assert networks_together(EvalConfig(num_eval=5, networks_together=3), CPU) == 3
    assert networks_together(EvalConfig(num_eval=2, networks_together=3), CPU) == 2
    assert networks_together(EvalConfig(norm="batch"), CPU) == 1
    with pytest.raises(AvddError, match="batch norm"):
        networks_together(EvalConfig(norm="batch", networks_together=2), CPU)
    with pytest.raises(AvddError, match="networks_together=-1"):
        EvalConfig(networks_together=-1)


def test_auto_is_left_out_of_the_json_so_earlier_result_keys_hold():
    assert "networks_together" not in EvalConfig().to_json()
    for config in (EvalConfig(), EvalConfig(networks_together=3)):
        assert EvalConfig.from_json(config.to_json()) == config


def test_spread_groups_hands_out_consecutive_groups_and_keeps_the_order():
    seen = []

    def compute(group):
        seen.append(list(group))
        return [10 * i for i in group]

    assert spread_groups(5, 2, compute) == [0, 10, 20, 30, 40]
    assert seen == [[0, 1], [2, 3], [4]]
