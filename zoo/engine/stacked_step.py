"""Several runs of one shape updated as one computation, each exactly as if it were alone.

Why: where a step is mostly per-operation overhead (the superposition model: a 20 x 5 matrix,
batches of 1,024), K runs one after another cost nearly K times one; stacked, the K members'
weights lie along a leading dimension (`torch.func.stack_module_state`) and one forward and
backward pass (`torch.func.vmap` over `functional_call` of the model's own class) serves them all.
(A transformer step at the zoo's sizes on CPU is mostly arithmetic, which this does not shorten:
benchmarks/RESULTS.md.) What is per member stays per member: its batch, its loss, its gradient
clipping (its own global norm), its AdamW state and LR schedule, through `apply_update`, the tail
of one run's step.

Exactness: every member's loss, gradients and update are bit-identical to the same run's step
alone (tests/test_stacked_training.py checks whole runs). Three of vmap's batched kernels round or
split differently from one run's, and are replaced here by autograd.Functions with vmap rules:
LayerNorm's weight and bias gradients (vmap's rule sums by a decomposition; `_MemberLayerNorm`
runs the native kernel per member), a Linear's bias (vmap adds it after the product;
`_MemberLinear` adds it inside one `baddbmm`, as one run's `addmm` does), and the superposition
model's products (with 2 threads one batched GEMM splits a long contraction over the threads
otherwise; `_MemberMatmul` multiplies member by member). Which kernel runs depends on shapes and
the thread count, not values: `differs_from_alone` checks one step on copies, and the training
loop trains the runs one at a time where it finds a difference.

Members' parameters alias their slice of the stacked tensors, so each member's model, optimizer
and scheduler are the very objects one run would have: the training loop writes checkpoints and
keyframes from them unchanged, and a resumed or replayed member is an ordinary run.
"""
from __future__ import annotations

import copy
import functools
import warnings

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from zoo.engine.train_step import StepStats, apply_update, masked_inputs, masked_targets_loss
from zoo.engine.training_state import TrainingState
from zoo.models.superposition import ZooSuperpositionModel


class StackedStep:
    """Updates the members' TrainingStates together; the states stay usable one by one."""

    def __init__(self, states: list[TrainingState]) -> None:
        if len({s.step for s in states}) != 1:
            raise ValueError("stacked members must be at the same step")
        self.states = states
        models = [s.model for s in states]
        for model in models:
            model.train()
        params, buffers = stack_module_state(models)
        self.params = {name: tensor.detach().requires_grad_() for name, tensor in params.items()}
        self.buffers = buffers
        # every member's parameter becomes a view of its slice: the member's optimizer updates the
        # stacked tensor in place, and the member's state_dict reads it
        for name, stacked in self.params.items():
            for k, model in enumerate(models):
                model.get_parameter(name).data = stacked.detach()[k]
        self.template = _template(models[0])

    @property
    def step(self) -> int:
        return self.states[0].step

    @staticmethod
    def differs_from_alone(states: list[TrainingState], batches: list[torch.Tensor],
                           masks: list[torch.Tensor | None]) -> str | None:
        """Whether the next stacked update would differ from the first member's update alone, on
        copies of the states: None when bit-identical, else the first tensor that differs. The
        kernels a step runs depend on the shapes and the thread count, not on the values, so one
        step tells (the training loop asks before its first stacked step)."""
        stacked = StackedStep([copy.deepcopy(state) for state in states])
        alone = copy.deepcopy(states[0])
        with warnings.catch_warnings():  # a copied scheduler no longer sees its optimizer's
            warnings.filterwarnings("ignore", message=".*optimizer.step.*")  # step counted
            stacked.update(batches, masks)
            alone.update(batches[0], loss_mask=masks[0])
        ours, theirs = stacked.states[0], alone
        for name, param in theirs.model.named_parameters():
            if not torch.equal(param, ours.model.get_parameter(name)):
                return f"weights {name}"
        for (_, mine), (_, lone) in zip(ours.optimizer.state.items(), theirs.optimizer.state.items()):
            for key, value in lone.items():
                if torch.is_tensor(value) and not torch.equal(value, mine[key]):
                    return f"optimizer {key}"
        return None

    def update(self, batches: list[torch.Tensor],
               masks: list[torch.Tensor | None]) -> list[StepStats]:
        """Apply update `step + 1` to every member, member k on batches[k] (loss mask masks[k])."""
        for tensor in self.params.values():
            tensor.grad = None
        losses = self._losses(batches, masks)
        if losses is None:  # this step's shapes differ between members: each its own step, exactly
            return [state.update(batch, loss_mask=mask)
                    for state, batch, mask in zip(self.states, batches, masks)]
        torch.stack(losses).sum().backward()  # d(sum)/d(loss_k) = 1: each member's own gradients
        stats = []
        for k, state in enumerate(self.states):
            for name, param in state.model.named_parameters():
                param.grad = self.params[name].grad[k]
            stats.append(apply_update(state.model, state.optimizer, state.scheduler,
                                      loss=losses[k].detach(), clip=state.cfg.optimizer.clip))
            state.step += 1
        return stats

    def _losses(self, batches, masks) -> list[torch.Tensor] | None:
        """Each member's loss (autograd-connected to the stacked parameters), computed as one run's
        step computes it; None when the members' inputs cannot be stacked this step."""
        stacked = torch.stack(batches)
        if stacked.is_floating_point():  # drawn feature vectors: the superposition model
            reconstruction = vmap(self._call("reconstruction", return_loss=False))(
                self.params, self.buffers, stacked)
            return [self.template.reconstruction_loss(batch, member)
                    for batch, member in zip(batches, reconstruction.unbind())]
        if all(mask is None for mask in masks):
            # unbind, not indexing: each member's logits gradient then lands in its own slice
            # instead of a zero-filled copy of all the members' logits
            logits = vmap(self._call("logits"))(self.params, self.buffers, stacked).unbind()
            vocab = self.template.config.vocab_size
            return [self.template.loss_function(logits=member, labels=batch, vocab_size=vocab)
                    for batch, member in zip(batches, logits)]
        if any(mask is None for mask in masks):
            return None
        prepared = [masked_inputs(batch, mask) for batch, mask in zip(batches, masks)]
        positions = prepared[0][1]
        if any(not torch.equal(p, positions) for _, p in prepared):
            return None
        logits = vmap(self._call("logits", logits_to_keep=positions))(
            self.params, self.buffers, torch.stack([inputs for inputs, _ in prepared])).unbind()
        return [masked_targets_loss(member, batch, mask, positions)[0]
                for member, batch, mask in zip(logits, batches, masks)]

    def _call(self, field: str, **kwargs):
        """The model's forward for one member, as a function of (params, buffers, input)."""
        key = "features" if field == "reconstruction" else "input_ids"

        def member(params, buffers, inputs):
            outputs = functional_call(self.template, (params, buffers), (), {key: inputs, **kwargs})
            return getattr(outputs, field)
        return member


def _template(model: nn.Module) -> nn.Module:
    """A copy of `model` to run under vmap, its Linear and LayerNorm layers (and the superposition
    model's two products) on the exact paths."""
    template = copy.deepcopy(model)
    for module in template.modules():
        if isinstance(module, nn.LayerNorm):
            module.forward = functools.partial(_layer_norm, module)
        elif type(module) is nn.Linear:
            module.forward = functools.partial(_linear, module)
    if isinstance(template, ZooSuperpositionModel):  # h = W x, x' = ReLU(W^T h + b)
        template.encode = lambda features: _MemberMatmul.apply(features, template.W.T)
        template.decode = lambda hidden: torch.relu(_MemberMatmul.apply(hidden, template.W)
                                                    + template.b)
    template.train()
    return template


class _MemberMatmul(torch.autograd.Function):
    """a @ b, whose vmap rule multiplies member by member: a product with a long contraction and a
    small result (the superposition model's [5, 1024] x [1024, 20] weight gradient) is split over
    the threads differently in one batched GEMM than in one run's GEMM."""

    @staticmethod
    def forward(a, b):
        return a @ b

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        return _recomputed_gradients(torch.matmul, ctx.saved_tensors, grad)

    @staticmethod
    def vmap(info, in_dims, a, b):
        pairs = zip(_members(a, in_dims[0], info.batch_size), _members(b, in_dims[1], info.batch_size))
        return torch.stack([x @ y for x, y in pairs]), 0


def _linear(module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return _MemberLinear.apply(x, module.weight, module.bias)


class _MemberLinear(torch.autograd.Function):
    """F.linear, whose vmap rule is one batched GEMM that adds the bias as one run's addmm does:
    vmap's own rule adds it after the product, which rounds differently once the bias is not
    zero (from the second step on)."""

    @staticmethod
    def forward(x, weight, bias):
        return nn.functional.linear(x, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        return _recomputed_gradients(nn.functional.linear, ctx.saved_tensors, grad)

    @staticmethod
    def vmap(info, in_dims, x, weight, bias):
        size = info.batch_size
        x = _leading(x, in_dims[0], size)
        weight = _leading(weight, in_dims[1], size)
        flat = x.reshape(size, -1, x.shape[-1])
        if bias is None:
            out = torch.bmm(flat, weight.transpose(1, 2))
        else:
            out = torch.baddbmm(_leading(bias, in_dims[2], size).unsqueeze(1), flat,
                                weight.transpose(1, 2))
        return out.reshape(*x.shape[:-1], weight.shape[1]), 0


def _members(tensor: torch.Tensor | None, dim: int | None, size: int) -> list:
    """`tensor` split into its members (the same tensor for each when it has no member dim)."""
    if tensor is None or dim is None:
        return [tensor] * size
    return list(tensor.unbind(dim))


def _leading(tensor: torch.Tensor, dim: int | None, size: int) -> torch.Tensor:
    """`tensor` with its member dimension first (expanded when it has none)."""
    if dim is None:
        return tensor.unsqueeze(0).expand(size, *tensor.shape)
    return tensor.movedim(dim, 0)


def _layer_norm(module: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return _MemberLayerNorm.apply(x, module.weight, module.bias, tuple(module.normalized_shape),
                                  module.eps)


class _MemberLayerNorm(torch.autograd.Function):
    """F.layer_norm, whose vmap rule runs the native kernel once per member, so that each member's
    weight and bias gradients come from the native backward kernel, as in one run's step."""

    @staticmethod
    def forward(x, weight, bias, shape, eps):
        return nn.functional.layer_norm(x, shape, weight, bias, eps)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, shape, eps = inputs
        ctx.save_for_backward(x, weight, bias)
        ctx.shape, ctx.eps = shape, eps

    @staticmethod
    def backward(ctx, grad):
        def layer_norm(x, weight, bias):
            return nn.functional.layer_norm(x, ctx.shape, weight, bias, ctx.eps)
        return (*_recomputed_gradients(layer_norm, ctx.saved_tensors, grad), None, None)

    @staticmethod
    def vmap(info, in_dims, x, weight, bias, shape, eps):
        # unbind, not select: its backward stacks the members' gradients, where select's would
        # fill a zero tensor of all the members for each one
        xs, weights, biases = (_members(t, d, info.batch_size)
                               for t, d in zip((x, weight, bias), in_dims))
        outputs = [nn.functional.layer_norm(member_x, shape, member_weight, member_bias, eps)
                   for member_x, member_weight, member_bias in zip(xs, weights, biases)]
        return torch.stack(outputs), 0


def _recomputed_gradients(function, inputs, grad) -> tuple:
    """The gradients of `function(*inputs)` against `grad`, by recomputing it under autograd (the
    backward of the autograd.Functions above, called only outside vmap); None for None inputs."""
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_() if t is not None else None for t in inputs]
        out = function(*leaves)
        grads = iter(torch.autograd.grad(out, [t for t in leaves if t is not None], grad))
    return tuple(next(grads) if t is not None else None for t in leaves)
