"""Fine-tuning checkpoints: written atomically after every epoch, read with weights_only, refused when
damaged or pickled, and a run resumed from one is the uninterrupted run."""
import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader, WeightedRandomSampler  # noqa: E402

from rcprune import InvalidInstanceError  # noqa: E402
from rcprune.torch import finetune  # noqa: E402
from rcprune.torch.checkpoint import load_checkpoint  # noqa: E402
from tests.torch import ddp_worker  # noqa: E402


class _Interrupted(Exception):
    pass


def _loss_failing_at(call: int):
    """Cross-entropy that raises at its ``call``-th call (a run killed in the middle of an epoch)."""
    calls = [0]

    def loss(out, y):
        calls[0] += 1
        if calls[0] == call:
            raise _Interrupted
        return torch.nn.functional.cross_entropy(out, y)
    return loss


def test_a_resumed_run_is_the_uninterrupted_run(tmp_path):
    loader = DataLoader(ddp_worker.data(), batch_size=ddp_worker.BATCH)   # 5 steps per epoch
    whole = ddp_worker.masked()
    expected = finetune(whole, loader, 3, lr=0.05, progress=False)
    model, path = ddp_worker.masked(), tmp_path / "run" / "ft.pt"
    with pytest.raises(_Interrupted):   # killed in the third step of the second epoch
        finetune(model, loader, 3, lr=0.05, progress=False, checkpoint=path, resume=True, loss_fn=_loss_failing_at(8))
    saved = load_checkpoint(path)
    assert saved["epoch"] == 1 and saved["epochs"] == 3 and saved["history"] == expected[:1]
    assert not list(path.parent.glob(".*.tmp"))   # no temporary file left behind
    restarted = ddp_worker.masked()   # a new process: the masked model, then the checkpoint
    hist = finetune(restarted, loader, 3, lr=0.05, progress=False, checkpoint=path, resume=True)
    assert hist == expected and load_checkpoint(path)["epoch"] == 3
    for (key, a), b in zip(restarted.state_dict().items(), whole.state_dict().values()):
        assert torch.equal(a, b), key
    assert finetune(restarted, loader, 3, progress=False, checkpoint=path, resume=True) == expected   # all done
    with pytest.raises(InvalidInstanceError, match="run of 3 epochs: resume it with epochs=3, not 4"):
        finetune(restarted, loader, 4, progress=False, checkpoint=path, resume=True)
    with pytest.raises(InvalidInstanceError, match="same schedule="):
        finetune(restarted, loader, 3, schedule=None, progress=False, checkpoint=path, resume=True)
    with pytest.raises(InvalidInstanceError, match="does not fit this model"):
        finetune(ddp_worker.net(), loader, 3, progress=False, checkpoint=path, resume=True)


def test_resume_needs_a_checkpoint_and_fixed_masks(tmp_path):
    loader = DataLoader(ddp_worker.data(), batch_size=8)
    with pytest.raises(InvalidInstanceError, match="resume=True goes on from checkpoint="):
        finetune(ddp_worker.net(), loader, 1, resume=True)
    with pytest.raises(InvalidInstanceError, match="resume must be"):
        finetune(ddp_worker.net(), loader, 1, resume="yes", checkpoint=tmp_path / "a.pt")
    with pytest.raises(InvalidInstanceError, match="not supported with sparse_training"):
        finetune(ddp_worker.net(), loader, 1, resume=True, checkpoint=tmp_path / "a.pt", sparse_training="feather",
                 sparsity=0.5)
    assert not (tmp_path / "a.pt").exists()


def test_checkpoint_files_are_checked(tmp_path):
    with pytest.raises(InvalidInstanceError, match="checkpoint must be a file path"):
        finetune(ddp_worker.net(), DataLoader(ddp_worker.data(), batch_size=8), 1, checkpoint=3)
    with pytest.raises(InvalidInstanceError, match="is a folder"):
        finetune(ddp_worker.net(), DataLoader(ddp_worker.data(), batch_size=8), 1, checkpoint=tmp_path)
    with pytest.raises(InvalidInstanceError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidInstanceError, match="corrupt checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"format": "rcprune-finetune-checkpoint", "model": WeightedRandomSampler([1.0], 1)},
               tmp_path / "pickled.pt")
    with pytest.raises(InvalidInstanceError, match="refusing checkpoint"):
        load_checkpoint(tmp_path / "pickled.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(InvalidInstanceError, match="not an rcprune fine-tuning checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    assert not list(tmp_path.glob(".*.tmp"))   # no temporary file left behind
