"""BatchNorm re-estimation, the layer -> BatchNorm map, output scales and Hessian scores."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from rcprune.torch import extract
from rcprune.torch.batchnorm import following_batchnorm, output_scales, reestimate_batchnorm
from rcprune.torch.hessian_scores import hessian_scores
from rcprune.torch.retention import layer_hessians
from rcprune.validation import InvalidInstanceError

from tests.torch.cases import calibrated_resnet


def test_reestimate_is_the_calibration_statistics_and_restores_modes():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Dropout(0.5), nn.ReLU())
    net[1].momentum = 0.3
    net.train()
    net[2].eval()
    xs = [torch.randn(5, 2, 6, 6) for _ in range(3)]
    assert reestimate_batchnorm(net, xs) == 1
    with torch.no_grad():
        y = torch.cat([net[0](x) for x in xs]).transpose(0, 1).reshape(3, -1)
    per_batch_var = torch.stack([net[0](x).detach().transpose(0, 1).reshape(3, -1).var(1) for x in xs])
    torch.testing.assert_close(net[1].running_mean, y.mean(1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net[1].running_var, per_batch_var.mean(0), rtol=1e-5, atol=1e-6)  # cumulative average
    assert net.training and net[1].training and not net[2].training and net[1].momentum == 0.3
    with pytest.raises(InvalidInstanceError, match="no batch"):
        reestimate_batchnorm(net, [])


def test_following_batchnorm_and_scales():
    model, x, _ = calibrated_resnet()
    ext = extract(model, x[:1])
    after = following_batchnorm(ext)
    assert after["conv1"] == "bn1" and after["layer1.0.conv2"] == "layer1.0.bn2" and "fc" not in after
    scales = output_scales(model, ext)
    bn = model.bn1
    np.testing.assert_allclose(scales["conv1"], (bn.weight.detach().double() ** 2 /
                                                 (bn.running_var.double() + bn.eps)).numpy())
    assert (scales["fc"] == 1).all()


def test_hessian_scores_are_weight_squared_times_diag_h_times_scale():
    model, x, _ = calibrated_resnet()
    ext = extract(model, x[:1])
    calib = [x[:20], x[20:]]
    scores = hessian_scores(model, ext, calib)
    hess, _ = layer_hessians(model, calib, list(ext.layers))
    scales = output_scales(model, ext)
    mods = dict(model.named_modules())
    for name in ext.layers:
        w = mods[name].weight.detach().double().reshape(mods[name].weight.shape[0], -1).numpy()
        np.testing.assert_allclose(scores[name], w * w * np.diag(hess[name])[None, :] * scales[name][:, None],
                                   rtol=1e-9, atol=1e-12)
    with pytest.raises(InvalidInstanceError, match="not finite"):
        hessian_scores(model, ext, [torch.full_like(x[:2], float("nan"))])
