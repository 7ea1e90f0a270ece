"""Data-parallel fine-tuning: two gloo processes under torchrun take the same steps as one process with the
same global batch (weights and history within float tolerance, identical on both processes, pruned weights
exactly zero), the loader split, a one-process group in this process, checkpoints, progress output and
bad input."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402

if not (dist.is_available() and dist.is_gloo_available()):
    pytest.skip("this PyTorch build has no torch.distributed gloo backend", allow_module_level=True)
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler  # noqa: E402
from torch.utils.data.distributed import DistributedSampler  # noqa: E402

from rcprune import InvalidInstanceError  # noqa: E402
from rcprune.torch import distributed as ddp  # noqa: E402
from rcprune.torch import feather, finetune  # noqa: E402
from rcprune.torch.checkpoint import load_checkpoint  # noqa: E402
from rcprune.torch.rcmask import rc_mask  # noqa: E402
from tests.torch import ddp_worker  # noqa: E402

WORKER = Path(__file__).with_name("ddp_worker.py")


def _assert_same_run(a, b, exact: bool):
    (hist_a, state_a, *_), (hist_b, state_b, *_) = a, b
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        if exact or not state_a[key].is_floating_point():
            assert torch.equal(state_a[key], state_b[key]), key
        else:
            torch.testing.assert_close(state_a[key], state_b[key], rtol=1e-5, atol=1e-6, msg=key)
    assert len(hist_a) == len(hist_b) == ddp_worker.EPOCHS
    for ra, rb in zip(hist_a, hist_b):
        assert ra.keys() == rb.keys()
        for key in ra:
            if exact or not isinstance(ra[key], float):
                assert ra[key] == rb[key], key
            else:
                assert ra[key] == pytest.approx(rb[key], rel=1e-5), key


def _pruned_exactly_zero(weights: dict):
    """Every masked module's weight is exactly zero where its mask prunes (and something is pruned)."""
    assert weights and sum(int((~keep).sum()) for _, keep in weights.values()) > 0
    for name, (w, keep) in weights.items():
        assert torch.all(w[~keep] == 0), name


@pytest.fixture(scope="module")
def torchrun(tmp_path_factory):
    """The worker launched on 2 CPU processes; its per-rank results and its stderr."""
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(WORKER), str(out)],   # --standalone: a free port of torchrun's own choosing
                          capture_output=True, text=True, timeout=120, env=env, cwd=WORKER.parents[2])
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    return ranks, proc.stderr, out


def test_two_processes_take_the_steps_of_one(torchrun):
    ranks, _, _ = torchrun
    assert [r["world"] for r in ranks] == [2, 2] and [r["device"] for r in ranks] == ["cpu", "cpu"]
    single = ddp_worker.runs()
    for name in ("masked", "feather", "feather-rc", "batchnorm"):
        _assert_same_run(ranks[0]["runs"][name], ranks[1]["runs"][name], exact=True)   # every rank the same
        for rank in ranks:
            _pruned_exactly_zero(rank["runs"][name][2])
    for name in ("masked", "feather", "feather-rc"):   # no BatchNorm: the same steps as one process, to float tolerance
        _assert_same_run(ranks[0]["runs"][name], single[name], exact=False)
    hist = ranks[0]["runs"]["feather"][0]
    assert hist[-1]["mask_frozen"] and hist[-1]["sparsity"] == 0.5
    assert hist[0]["threshold"] == pytest.approx(single["feather"][0][0]["threshold"], rel=1e-5)
    assert ranks[0]["runs"]["masked"][0][-1]["val_accuracy"] == single["masked"][0][-1]["val_accuracy"]
    assert ranks[0]["runs"]["feather-rc"][0][-1]["solves"] == single["feather-rc"][0][-1]["solves"] > 1
    # BatchNorm normalizes per process, so that run differs from one process; its running statistics are
    # averaged, hence equal on both ranks (checked above)
    state = ranks[0]["runs"]["batchnorm"][1]
    assert not torch.equal(state["1.running_mean"], single["batchnorm"][1]["1.running_mean"])


def test_rank_zero_alone_shows_progress_and_writes_the_checkpoint(torchrun):
    _, stderr, out = torchrun
    assert "rank0-finetune 2/2" in stderr and "rank1-finetune" not in stderr
    assert not (out / "checkpoint-rank1.pt").exists()
    for r in (0, 1):   # resuming from a checkpoint rank 1 cannot see is refused on both
        assert "exists on 1 of the 2 processes" in torch.load(out / f"rank{r}.pt", weights_only=True)["resume"]
    state = load_checkpoint(out / "checkpoint-rank0.pt")
    assert state["epoch"] == 2
    rank0 = torch.load(out / "rank0.pt", weights_only=True)["runs"]["masked"]
    assert state["history"] == rank0[0] and state["history"][-1]["val_accuracy"] is not None
    assert all(torch.equal(state["model"][k], v) for k, v in rank0[1].items())


@pytest.fixture
def one_process_group(tmp_path):
    """A gloo process group of one process (this one), destroyed after the test."""
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


class _EpochPermutations:
    """The order a shuffling DistributedSampler of one process gives: epoch e permuted by a generator seeded
    ``seed + e``."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def __len__(self):
        return self.n

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        self.epoch += 1
        return iter(order)


def test_one_process_group_is_the_plain_run(tmp_path):
    plain = ddp_worker.masked()
    val = DataLoader(ddp_worker.data(), batch_size=16)
    order = DataLoader(ddp_worker.data(), batch_size=ddp_worker.BATCH, sampler=_EpochPermutations(ddp_worker.N, 7))
    reference = finetune(plain, order, 2, lr=0.05, val_loader=val, seed=7, progress=False)
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        assert ddp.is_distributed() and ddp.rank_and_world() == (0, 1)
        assert ddp.init_distributed() == "cpu"   # an initialized group is kept
        model = ddp_worker.masked()
        loader = DataLoader(ddp_worker.data(), batch_size=ddp_worker.BATCH, shuffle=True,
                            generator=torch.Generator().manual_seed(5))
        hist = finetune(model, loader, 2, lr=0.05, val_loader=val, seed=7, progress=False,
                        checkpoint=tmp_path / "ft.pt", resume=True)   # no file yet: from the start
        assert finetune(model, loader, 2, progress=False, checkpoint=tmp_path / "ft.pt", resume=True) == hist
    finally:
        dist.destroy_process_group()
    assert type(model) is torch.nn.Sequential and rc_mask(model[0], "weight") is not None
    _pruned_exactly_zero(ddp_worker.result(hist, model)[2])
    _assert_same_run((hist, model.state_dict()), (reference, plain.state_dict()), exact=False)
    saved = load_checkpoint(tmp_path / "ft.pt")
    assert saved["history"] == hist and saved["scheduler"]["last_epoch"] == 2
    fresh = ddp_worker.masked()
    fresh.load_state_dict(saved["model"])
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))


def test_bad_input_under_a_process_group(one_process_group):
    model = ddp_worker.masked()
    x, y = ddp_worker.data().tensors
    with pytest.raises(InvalidInstanceError, match="must be a torch.utils.data.DataLoader.*DistributedSampler"):
        finetune(model, [(x, y)], 1, progress=False)
    weighted = DataLoader(ddp_worker.data(), batch_size=8, sampler=WeightedRandomSampler(torch.ones(40), 40))
    with pytest.raises(InvalidInstanceError, match="WeightedRandomSampler.*cannot be split"):
        finetune(model, weighted, 1, progress=False)
    batches = DataLoader(ddp_worker.data(), batch_sampler=[[0, 1], [2, 3]])
    with pytest.raises(InvalidInstanceError, match="batch_sampler"):
        finetune(model, batches, 1, progress=False)
    loader = DataLoader(ddp_worker.data(), batch_size=8)
    with pytest.raises(InvalidInstanceError, match="not a DistributedDataParallel"):
        finetune(torch.nn.parallel.DistributedDataParallel(ddp_worker.net()), loader, 1, progress=False)
    with pytest.raises(InvalidInstanceError, match="allocation='learned' is not supported under torch.distributed"):
        feather(ddp_worker.net(), loader, 0.5, 1, allocation="learned", progress=False)


class _Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        return iter([(torch.zeros(3), torch.tensor(0))] * 4)


def test_batch_not_divisible_by_the_world_size_and_iterable_data(monkeypatch):
    monkeypatch.setattr(ddp, "rank_and_world", lambda: (0, 3))
    with pytest.raises(InvalidInstanceError, match="global batch, split evenly over the 3 processes: 8 is not "
                       "divisible by 3"):
        ddp.train_loader_for(DataLoader(ddp_worker.data(), batch_size=8), seed=0)
    assert ddp.train_loader_for(DataLoader(ddp_worker.data(), batch_size=9), seed=0).batch_size == 3
    with pytest.raises(InvalidInstanceError, match="IterableDataset cannot be split"):
        ddp.train_loader_for(DataLoader(_Stream(), batch_size=3), seed=0)


@pytest.mark.parametrize("shuffle, drop_last", [(False, False), (False, True), (True, False)])
def test_the_processes_batches_make_up_the_global_batches(monkeypatch, shuffle, drop_last):
    n, batch, world = 22, 8, 2
    data = TensorDataset(torch.arange(n), torch.zeros(n))
    loader = DataLoader(data, batch_size=batch, shuffle=shuffle, drop_last=drop_last, collate_fn=lambda b: b)
    per_rank = []
    for rank in range(world):
        monkeypatch.setattr(ddp, "rank_and_world", lambda rank=rank: (rank, world))
        split = ddp.train_loader_for(loader, seed=3)
        assert isinstance(split.sampler, DistributedSampler) and split.batch_size == batch // world
        assert split.collate_fn is loader.collate_fn and split.drop_last == drop_last
        split.sampler.set_epoch(1)
        per_rank.append([[int(s[0]) for s in b] for b in split])
    assert len(per_rank[0]) == len(per_rank[1]) == (n // batch if drop_last else -(-n // batch))
    steps = [sorted(a + b) for a, b in zip(*per_rank)]
    if not shuffle:
        expected = [list(range(i, min(i + batch, n))) for i in range(0, n, batch)]
        expected = expected[:n // batch] if drop_last else expected
        # without drop_last the sampler repeats samples up to a multiple of the world size (n = 22 is one)
        assert steps == expected
    else:
        assert sorted(i for step in steps for i in step) == list(range(n))
        assert steps != [list(range(i, min(i + batch, n))) for i in range(0, n, batch)]
    already = DataLoader(data, batch_size=4, sampler=DistributedSampler(data, num_replicas=2, rank=0))
    assert ddp.train_loader_for(already, seed=0) is already


def test_evaluation_split_counts_every_sample_once(monkeypatch):
    data = TensorDataset(torch.arange(7), torch.zeros(7))
    loader = DataLoader(data, batch_size=3, collate_fn=lambda b: b)
    seen = []
    for rank in range(2):
        monkeypatch.setattr(ddp, "rank_and_world", lambda rank=rank: (rank, 2))
        seen += [int(s[0]) for b in ddp.eval_loader_for(loader) for s in b]
    assert sorted(seen) == list(range(7))
    batches = [(torch.zeros(2, 3), torch.zeros(2))]
    assert ddp.eval_loader_for(batches) is batches


def test_progress_bar_or_silence(capfd):
    loader = DataLoader(ddp_worker.data(), batch_size=8)
    finetune(ddp_worker.net(), loader, 1, progress=False)
    assert capfd.readouterr() == ("", "")
    finetune(ddp_worker.net(), loader, 1, desc="tuning", progress=True)
    err = capfd.readouterr().err
    assert "tuning 1/1" in err and "loss=" in err and "acc=" in err


def test_init_distributed_outside_torchrun(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(InvalidInstanceError, match="launch the script with torchrun"):
        ddp.init_distributed()
    with pytest.raises(InvalidInstanceError, match="backend must be one of"):
        ddp.init_distributed("mpi")


class _SkipsABranch(torch.nn.Module):
    """A branch whose parameters never get a gradient: DDP needs find_unused_parameters for it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.used, self.unused = torch.nn.Linear(36, 3), torch.nn.Linear(36, 3)

    def forward(self, x):
        return self.used(x.flatten(1))


def test_distributed_false_trains_alone_inside_a_process_group(tmp_path):
    x, y = ddp_worker.data().tensors
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, len(x), 8)]   # a list: refused under DDP
    inside = ddp_worker.masked()
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        hist = finetune(inside, batches, 2, lr=0.05, seed=3, progress=False, distributed=False)
        with pytest.raises(InvalidInstanceError, match="must be a torch.utils.data.DataLoader"):
            finetune(ddp_worker.masked(), batches, 1, progress=False)   # the default: data-parallel
    finally:
        dist.destroy_process_group()
    alone = ddp_worker.masked()
    assert finetune(alone, batches, 2, lr=0.05, seed=3, progress=False) == hist
    assert all(torch.equal(a, b) for a, b in zip(inside.state_dict().values(), alone.state_dict().values()))
    with pytest.raises(InvalidInstanceError, match="distributed=True needs an initialized"):
        finetune(alone, batches, 1, progress=False, distributed=True)
    with pytest.raises(InvalidInstanceError, match="distributed must be"):
        finetune(alone, batches, 1, progress=False, distributed="yes")


def test_unused_parameters_are_named_and_find_unused_parameters_trains(one_process_group):
    loader = DataLoader(ddp_worker.data(), batch_size=8)
    with pytest.raises(InvalidInstanceError, match="find_unused_parameters=True"):
        finetune(_SkipsABranch(), loader, 2, progress=False)
    model = _SkipsABranch()
    before = model.used.weight.detach().clone()
    hist = finetune(model, loader, 2, progress=False, find_unused_parameters=True, distributed=True)
    assert len(hist) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in hist)
    assert not torch.equal(model.used.weight, before)
