"""Distributed MCR² on CPU (gloo, 2 processes started by the test) equals one process on the whole batch."""
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mcr2 import MCR2Loss, rate_reduction

WORLD = 2


def global_batch():
    g = torch.Generator().manual_seed(0)
    Z = torch.nn.functional.normalize(torch.randn(90, 12, generator=g, dtype=torch.float64), dim=1)
    labels = torch.randint(0, 5, (90,), generator=g)
    labels[labels == 3] = 4  # an empty class
    weights = (torch.rand(90, generator=g) > 0.3).double()
    return Z, labels, weights


def shard(rank):
    # Uneven shards: rank 0 gets 40 rows, rank 1 gets 50.
    return slice(0, 40) if rank == 0 else slice(40, 90)


def worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        Z, labels, weights = global_batch()
        sl = shard(rank)
        z = Z[sl].clone().requires_grad_()
        out = rate_reduction(z, labels[sl], 5, weights=weights[sl], distributed=True)
        out.loss.backward()
        module_out = MCR2Loss(5, distributed=True)(Z[sl], labels[sl], weights[sl])
        torch.save({"terms": torch.stack(list(out)).detach(), "module": torch.stack(list(module_out)), "grad": z.grad},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available in this build")
def test_split_batch_equals_single_process():
    Z, labels, weights = global_batch()
    z = Z.clone().requires_grad_()
    single = rate_reduction(z, labels, 5, weights=weights)
    single.loss.backward()
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(worker, args=(os.path.join(tmp, "init"), tmp), nprocs=WORLD, join=True)
        results = [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=True) for r in range(WORLD)]
    expected = torch.stack(list(single)).detach()
    for rank, res in enumerate(results):
        torch.testing.assert_close(res["terms"], expected, rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(res["module"], expected, rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(res["grad"], z.grad[shard(rank)], rtol=1e-5, atol=1e-8)


def test_distributed_without_a_process_group_is_a_clear_error():
    Z, labels, _ = global_batch()
    with pytest.raises(RuntimeError, match="init_process_group"):
        rate_reduction(Z, labels, 5, distributed=True)


def ddp_worker(rank, init_file, runs_dir, data_root):
    os.environ["MCR2_DATA"] = data_root
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        from mcr2.engine import run
        from mcr2.experiments import experiment

        exp = experiment("seg_mnist_mcr2", "smoke", 0, **{"data.train_limit": 40, "data.val_limit": 10,
                                                           "optim.epochs": 2, "optim.batch_size": 20,
                                                           "eval.feature_samples": 200, "eval.feature_keep": 50})
        rec = run(exp, runs_dir, progress="off")
        assert rec.status == "complete" and rec.record["world_size"] == WORLD
    finally:
        dist.destroy_process_group()


def _data_root():
    from pathlib import Path

    root = os.environ.get("MCR2_DATA") or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    return root if (Path(root) / "MNIST").exists() else None


@pytest.mark.skipif(_data_root() is None, reason="needs MNIST: set MCR2_DATA (CI points it at ../shared/data)")
def test_ddp_training_writes_one_record_from_rank_zero(tmp_path):
    import json

    runs = tmp_path / "runs"
    mp.spawn(ddp_worker, args=(str(tmp_path / "init"), str(runs), _data_root()), nprocs=WORLD, join=True)
    records = list(runs.glob("*/*/record.json"))
    assert len(records) == 1, records
    record = json.loads(records[0].read_text())
    assert record["status"] == "complete" and record["world_size"] == WORLD
    assert not list(runs.glob("*/.tmp-*"))
