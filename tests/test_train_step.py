"""The one training step: deterministic, schedule as documented, scheduler position round-trips."""
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from zoo.engine.train_step import (
    load_scheduler_state,
    lr_multiplier,
    make_optimizer,
    make_scheduler,
    scheduler_state,
    training_step,
)

OPT = SimpleNamespace(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, clip=1.0)
COSINE = SimpleNamespace(kind="cosine", warmup_steps=4, min_lr_ratio=0.1)


def _model(seed=0):
    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=16,
                        attn_implementation="eager")
    return GPTNeoXForCausalLM(cfg)


def _train(model, steps, seed=0):
    opt = make_optimizer(model, OPT)
    sched = make_scheduler(opt, COSINE, total_steps=20)
    gen = torch.Generator().manual_seed(seed)
    stats = []
    for _ in range(steps):
        batch = torch.randint(0, 64, (4, 16), generator=gen)
        stats.append(training_step(model, opt, sched, batch, clip=OPT.clip))
    return opt, sched, stats


def test_same_inputs_same_bits():
    a, b = _model(), _model()
    _train(a, 3)
    _train(b, 3)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_schedule_warms_up_then_decays_to_floor():
    values = [lr_multiplier(i, schedule_cfg=COSINE, total_steps=20) for i in range(20)]
    assert values[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(x >= y for x, y in zip(values[3:], values[4:]))
    assert math.isclose(lr_multiplier(20, schedule_cfg=COSINE, total_steps=20), 0.1)
    constant = SimpleNamespace(kind="constant", warmup_steps=0, min_lr_ratio=0.0)
    assert lr_multiplier(7, schedule_cfg=constant, total_steps=20) == 1.0


def test_step_reports_lr_it_used_and_unclipped_norm():
    model = _model()
    _, _, stats = _train(model, 2)
    assert stats[0].lr == OPT.lr * 0.25 and stats[1].lr == OPT.lr * 0.5
    assert stats[0].grad_norm > 0 and math.isfinite(stats[0].loss)


def test_scheduler_position_round_trips_as_json():
    model = _model()
    opt, sched, _ = _train(model, 5)
    state = json.loads(json.dumps(scheduler_state(sched)))
    fresh = make_scheduler(make_optimizer(_model(), OPT), COSINE, total_steps=20)
    load_scheduler_state(fresh, state)
    assert fresh.last_epoch == sched.last_epoch
    assert fresh.get_last_lr() == sched.get_last_lr()


def test_observer_sees_gradients_before_the_update():
    model = _model()
    seen = {}

    def observe(m, batch, outputs):
        seen["grad"] = m.get_output_embeddings().weight.grad.clone()
        seen["weight"] = m.get_output_embeddings().weight.detach().clone()

    opt = make_optimizer(model, OPT)
    sched = make_scheduler(opt, COSINE, total_steps=20)
    training_step(model, opt, sched, torch.randint(0, 64, (2, 16)), clip=1.0, observe=observe)
    assert seen["grad"].abs().sum() > 0
    assert not torch.equal(seen["weight"], model.get_output_embeddings().weight.detach())


def test_a_model_left_in_eval_mode_trains_in_training_mode():
    """A loaded model comes in eval mode (from_pretrained, replay): the step must switch all of it
    to training mode, or dropout and the like would silently differ from the run being replayed."""
    model = _model()
    model.eval()
    _train(model, 1)
    assert all(module.training for module in model.modules())


def test_a_distributed_wrapper_around_an_eval_mode_model_trains_all_of_it(tmp_path):
    """DistributedDataParallel starts in training mode whatever its module's mode: the step must
    look inside it. A one-process gloo group and the real wrapper, in a fresh process (a process
    group inside the test process once hung on state earlier tests left in it)."""
    script = tmp_path / "ddp_mode.py"
    script.write_text(f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
from types import SimpleNamespace
from zoo.engine.train_step import make_optimizer, make_scheduler, training_step

dist.init_process_group("gloo", init_method="file://{tmp_path / 'group'}", rank=0, world_size=1)
torch.manual_seed(0)
model = GPTNeoXForCausalLM(GPTNeoXConfig(
    vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
    intermediate_size=64, max_position_embeddings=16, attn_implementation="eager"))
model.eval()
wrapper = DistributedDataParallel(model)
assert wrapper.training and not model.training
opt = make_optimizer(model, SimpleNamespace(**{OPT.__dict__!r}))
sched = make_scheduler(opt, SimpleNamespace(**{COSINE.__dict__!r}), total_steps=20)
training_step(wrapper, opt, sched, torch.randint(0, 64, (4, 16)), clip=1.0)
print("modules in eval mode after a step:", sum(not m.training for m in model.modules()))
dist.destroy_process_group()
""")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "modules in eval mode after a step: 0" in done.stdout
