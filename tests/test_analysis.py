"""BN gamma and ReLU-sparsity analysis on hand-built networks whose answers are known."""

import pytest
import torch
from torch import nn

from trainables import analysis


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.relu(self.bn(self.conv(x)))
        return self.fc(x.mean(dim=(2, 3)))


def test_bn_gammas_lists_every_bn_layer_by_name():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.5, -1.0]))
    gammas = analysis.bn_gammas(model)
    assert list(gammas) == ["1", "3"]
    assert gammas["1"] == [0.5, -1.0]
    assert gammas["3"] == [1.0, 1.0, 1.0]


def test_gamma_near_zero_frac_counts_channels_over_all_layers_at_each_threshold():
    model = nn.Sequential(nn.BatchNorm2d(4), nn.BatchNorm2d(4))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([0.005, -0.005, 0.03, 0.07]))
        model[1].weight.copy_(torch.tensor([1.0, -0.2, float("nan"), 0.0]))
    assert analysis.gamma_near_zero_frac(model, 0.01) == 3 / 8  # 0.005, -0.005, 0.0; NaN is not near 0
    metrics = analysis.gamma_metrics(model)
    assert metrics == {"gamma_near_zero_frac": 3 / 8, "gamma_near_zero_frac_0.05": 4 / 8,
                       "gamma_near_zero_frac_0.1": 5 / 8}


def test_relu_zero_frac_is_the_share_of_exact_zeros_in_eval_mode_and_restores_the_mode():
    model = TwoLayer()
    with torch.no_grad():
        model.conv.weight.fill_(1.0)
        model.bn.weight.copy_(torch.tensor([1.0, 1.0, -1.0, -1.0]))  # channels 2, 3 flip the sign
    model.train()
    positive = torch.rand(8, 1, 3, 3) + 0.1
    # eval-mode BN with fresh running stats is the identity times gamma: channels 0, 1 stay
    # positive, channels 2, 3 become negative and are zeroed by the ReLU
    frac = analysis.relu_zero_frac(model, [(positive, None), (positive[:3], None)])
    assert frac == pytest.approx(0.5)
    assert model.training, "the model's mode is given back"


def test_relu_zero_frac_counts_a_shared_relu_at_every_call():
    class SharedRelu(nn.Module):
        def __init__(self):
            super().__init__()
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.relu(x) - 1.0)  # second call: everything <= 0 except x > 1

    x = torch.tensor([[-1.0, 0.5, 2.0, 3.0]])
    # call 1 zeros 1 of 4; call 2 sees [-1, -0.5, 1, 2] and zeros 2 of 4
    assert analysis.relu_zero_frac(SharedRelu(), [(x, None)]) == pytest.approx(3 / 8)


def test_relu_zero_frac_refuses_a_model_without_relu_modules():
    with pytest.raises(ValueError, match="nn.ReLU"):
        analysis.relu_zero_frac(nn.Linear(2, 2), [(torch.zeros(1, 2), None)])
