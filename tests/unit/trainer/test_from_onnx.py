"""trainer.from_onnx: the served vision graph read back into PyTorch, so stage 2 can be trained
again without the training run's checkpoint."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _served(local: str | None):
    from trainer.vision_model import CropClassifier, FieldDetector, TwoStageDetector

    torch.manual_seed(0)
    served = TwoStageDetector(FieldDetector(96, 128, pretrained=False), CropClassifier(pretrained=False, local=local))
    with torch.no_grad():  # batch norms far from identity, so folding them into the convolutions matters
        for m in served.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        # an untrained stage 1 scores every cell of a noise image alike, and the graph and PyTorch may
        # pick different cells among near-equal scores: make its class head decisive
        served.proposer.cls.weight.mul_(20)
    return served.eval()


def _image(seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (2, 96, 128, 3), dtype=np.uint8))


@pytest.mark.parametrize("local", ["imagenet", "scratch", None])  # every local net a graph may hold
def test_the_rebuilt_module_computes_what_the_graph_computes(tmp_path, local):
    from trainer.export import export_onnx
    from trainer.from_onnx import load_served

    served = _served(local)
    path = export_onnx(served, torch.zeros(2, 96, 128, 3, dtype=torch.uint8), tmp_path / "v.onnx", "image",
                       ["score", "boxes", "box_scores"])
    back = load_served(path, height=96, width=128)
    assert type(back.classifier.local) is type(served.classifier.local)
    image = _image(1)
    with torch.no_grad():
        for a, b in zip(served(image), back(image)):
            assert torch.allclose(a, b, atol=1e-4)
        # stage 1 alone too: its proposals are what stage 2 is trained on
        for a, b in zip(served.proposals(image), back.proposals(image)):
            assert torch.allclose(a, b, atol=1e-3)
    assert not any(p.requires_grad for p in back.parameters())


def test_a_graph_of_another_shape_is_refused(tmp_path):
    from trainer.export import export_onnx
    from trainer.from_onnx import load_served
    from trainer.vision_model import FieldDetector

    path = export_onnx(FieldDetector(96, 128, pretrained=False).eval(), torch.zeros(1, 96, 128, 3, dtype=torch.uint8),
                       tmp_path / "stage1.onnx", "image", ["score", "boxes", "box_scores"])
    with pytest.raises(ValueError, match="Conv/Gemm nodes"):
        load_served(path, height=96, width=128)
