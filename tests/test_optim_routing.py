"""build_optimizer: config checks, routing by role, composite state round trips."""

import copy
import io

import pytest
import torch
from torch import nn

from finrl_lab.errors import ConfigError
from finrl_lab.optim import (
    METHOD_DEFAULTS,
    CompositeOptimizer,
    DeVAMatrix,
    DeVAVector,
    RoutedOptimizer,
    ShrinkAdam,
    ShrinkMuon,
    build_optimizer,
    resolve_config,
    sb3_optimizer_kwargs,
)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Run this module's small-tensor tests on one torch thread, then restore.

    On a busy 2-core machine, two threads per op made these tests 10x slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


METHODS = list(METHOD_DEFAULTS)


class TinyTransformerBlock(nn.Module):
    """Embedding, attention-like matrices, a norm and an output head."""

    def __init__(self, vocab=11, width=16):
        super().__init__()
        self.embedding = nn.Embedding(vocab, width)
        self.query = nn.Linear(width, width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 2 * width), nn.Linear(2 * width, width)
        )
        self.norm = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.frozen = nn.Linear(width, width)
        self.frozen.requires_grad_(False)

    def forward(self, tokens):
        x = self.embedding(tokens)
        x = x + self.mlp(torch.relu(self.query(x)))
        return self.lm_head(self.norm(x))


def _children_params(optimizer):
    children = (
        optimizer.optimizers
        if isinstance(optimizer, CompositeOptimizer)
        else [optimizer]
    )
    return [
        {id(p) for group in child.param_groups for p in group["params"]}
        for child in children
    ]


def test_routes_hidden_matrices_to_matrix_rule():
    model = TinyTransformerBlock()
    optimizer = build_optimizer(model, {"name": "deva"})
    assert isinstance(optimizer, CompositeOptimizer)
    matrix_rule, vector_rule = optimizer.optimizers
    assert isinstance(matrix_rule, DeVAMatrix)
    assert isinstance(vector_rule, DeVAVector)
    matrix_ids, vector_ids = _children_params(optimizer)
    expected_matrices = {
        id(model.query.weight),
        id(model.mlp[0].weight),
        id(model.mlp[1].weight),
    }
    assert matrix_ids == expected_matrices
    assert id(model.embedding.weight) in vector_ids
    assert id(model.lm_head.weight) in vector_ids
    assert id(model.norm.weight) in vector_ids
    assert id(model.query.bias) in vector_ids


def test_frozen_parameters_are_left_out():
    model = TinyTransformerBlock()
    optimizer = build_optimizer(model, {"name": "muon"})
    all_ids = set().union(*_children_params(optimizer))
    assert id(model.frozen.weight) not in all_ids
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert all_ids == trainable


def test_routes_by_shape_for_plain_parameters():
    model = TinyTransformerBlock()
    optimizer = build_optimizer(model.parameters(), {"name": "shrink_muon"})
    matrix_ids, vector_ids = _children_params(optimizer)
    assert isinstance(optimizer.optimizers[0], ShrinkMuon)
    assert isinstance(optimizer.optimizers[1], ShrinkAdam)
    # Without module names the embedding and head count as matrices.
    assert id(model.embedding.weight) in matrix_ids
    assert id(model.lm_head.weight) in matrix_ids
    assert id(model.norm.weight) in vector_ids


def test_column_vector_matrix_goes_to_vector_rule():
    head = nn.Linear(8, 1)
    optimizer = build_optimizer(head, {"name": "muon"})
    assert isinstance(optimizer, CompositeOptimizer)
    assert len(optimizer.optimizers) == 1
    assert isinstance(optimizer.optimizers[0], torch.optim.AdamW)


def test_custom_head_names():
    model = nn.Sequential()
    model.add_module("body", nn.Linear(4, 4))
    model.add_module("policy", nn.Linear(4, 3))
    optimizer = build_optimizer(model, {"name": "muon", "head_names": ["policy"]})
    matrix_ids, vector_ids = _children_params(optimizer)
    assert matrix_ids == {id(model.body.weight)}
    assert id(model.policy.weight) in vector_ids


@pytest.mark.parametrize(
    "name, expected",
    [
        ("adamw", torch.optim.AdamW),
        ("adam", torch.optim.Adam),
        ("shrink_adam", ShrinkAdam),
    ],
)
def test_single_rule_methods_return_plain_optimizer(name, expected):
    optimizer = build_optimizer(TinyTransformerBlock(), {"name": name, "lr": 1e-3})
    assert type(optimizer) is expected
    assert optimizer.param_groups[0]["lr"] == 1e-3


def test_none_config_builds_adamw():
    optimizer = build_optimizer(nn.Linear(3, 3), None)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["lr"] == METHOD_DEFAULTS["adamw"]["lr"]


def test_alias_resolves():
    assert resolve_config({"name": "deva_efficient"})["name"] == "deva_factored"
    assert resolve_config({"name": "ShrinkAdam"})["name"] == "shrink_adam"


def test_unknown_name_raises_config_error():
    with pytest.raises(ConfigError) as error:
        build_optimizer(nn.Linear(2, 2), {"name": "lion"})
    assert "'lion'" in error.value.message
    assert "deva_factored" in error.value.hint


def test_unknown_key_raises_config_error():
    with pytest.raises(ConfigError) as error:
        build_optimizer(nn.Linear(2, 2), {"name": "adamw", "momentum": 0.9})
    assert "'momentum'" in error.value.message
    assert "betas" in error.value.hint


def test_numeric_strings_are_parsed():
    # YAML 1.1 reads 3e-4 without a dot as a string.
    resolved = resolve_config({"name": "deva", "lr": "3e-4", "ns_steps": "4"})
    assert resolved["lr"] == 3e-4
    assert resolved["ns_steps"] == 4


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "adamw", "lr": "fast"},
        {"name": "deva", "nesterov": "yes"},
        {"name": "deva", "precondition_frequency": 2.5},
        {"name": "muon", "momentum": True},
    ],
)
def test_wrongly_typed_value_raises_config_error(entry):
    key = next(k for k in entry if k != "name")
    with pytest.raises(ConfigError) as error:
        resolve_config(entry)
    assert key in error.value.message


def test_invalid_option_value_raises_config_error():
    with pytest.raises(ConfigError, match="invalid shrink 'median'"):
        build_optimizer(nn.Linear(2, 2), {"name": "shrink_adam", "shrink": "median"})


def test_unknown_vector_rule_raises_config_error():
    with pytest.raises(ConfigError, match="vector_rule"):
        build_optimizer(nn.Linear(2, 2), {"name": "deva", "vector_rule": "sgd"})


def test_model_without_trainable_parameters_raises():
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        build_optimizer(model, {"name": "adamw"})


def test_lr_written_to_param_groups_reaches_children():
    optimizer = build_optimizer(TinyTransformerBlock(), {"name": "muon"})
    for group in optimizer.param_groups:
        group["lr"] = 0.123
    for child in optimizer.optimizers:
        assert all(group["lr"] == 0.123 for group in child.param_groups)


def test_composite_rejects_new_groups():
    optimizer = build_optimizer(TinyTransformerBlock(), {"name": "deva"})
    with pytest.raises(NotImplementedError, match="cannot take new parameter"):
        optimizer.add_param_group({"params": [nn.Parameter(torch.zeros(2))]})


def _train(model, optimizer, steps, seed):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        tokens = torch.randint(0, 11, (4, 6), generator=generator)
        targets = torch.randint(0, 11, (4, 6), generator=generator)
        optimizer.zero_grad()
        logits = model(tokens)
        loss = nn.functional.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1))
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("name", METHODS)
def test_save_load_continue_matches_uninterrupted(name):
    config = {"name": name, "lr": 1e-2}
    if name.startswith("deva"):
        config["precondition_frequency"] = 2
    torch.manual_seed(0)
    model = TinyTransformerBlock()
    optimizer = build_optimizer(model, config)
    _train(model, optimizer, steps=3, seed=1)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": optimizer.state_dict()}, buffer)
    _train(model, optimizer, steps=4, seed=2)

    buffer.seek(0)
    saved = torch.load(buffer)
    resumed_model = TinyTransformerBlock()
    resumed_model.load_state_dict(saved["model"])
    resumed = build_optimizer(resumed_model, config)
    resumed.load_state_dict(saved["opt"])
    _train(resumed_model, resumed, steps=4, seed=2)
    for (key, value), resumed_value in zip(
        model.state_dict().items(), resumed_model.state_dict().values(), strict=True
    ):
        assert torch.equal(value, resumed_value), key


def test_composite_state_view_covers_all_parameters():
    model = TinyTransformerBlock()
    optimizer = build_optimizer(model, {"name": "deva"})
    _train(model, optimizer, steps=1, seed=0)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(optimizer.state) == len(trainable)
    assert "exp_avg" in optimizer.state[model.query.weight]


def test_composite_load_rejects_mismatched_children():
    optimizer = build_optimizer(TinyTransformerBlock(), {"name": "deva"})
    with pytest.raises(ValueError, match="contains 1 optimizers"):
        optimizer.load_state_dict({"optimizers": [{}]})


def test_routed_optimizer_accepts_lr_and_options():
    model = TinyTransformerBlock()
    optimizer = RoutedOptimizer(
        model.parameters(), lr=0.05, name="deva", nesterov=False
    )
    assert all(group["lr"] == 0.05 for group in optimizer.param_groups)
    assert optimizer.optimizers[0].param_groups[0]["nesterov"] is False


def test_sb3_kwargs_drop_lr_and_validate():
    kwargs = sb3_optimizer_kwargs({"name": "muon", "lr": 1e-3, "momentum": 0.9})
    assert kwargs["optimizer_class"] is RoutedOptimizer
    assert kwargs["optimizer_kwargs"] == {"name": "muon", "momentum": 0.9}
    with pytest.raises(ConfigError):
        sb3_optimizer_kwargs({"name": "muon", "betaz": 1})


def test_sb3_kwargs_are_deep_copyable():
    kwargs = sb3_optimizer_kwargs({"name": "deva"})
    assert copy.deepcopy(kwargs) == kwargs
